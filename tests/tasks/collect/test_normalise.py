"""Per image: validation by decoding, normalisation to an RGB JPEG, opt-out headers."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.tasks.collect.images import CASES, encode
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.normalise import encode_jpeg, normalise, opted_out, shrink

CFG = DownloadConfig(max_side=256)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_normalise(case):
    content, status, size, fmt = CASES[case]
    out = normalise(content, CFG)
    assert out.status == status, out.error_message
    assert out.format == fmt
    if status == "ok":
        im = Image.open(io.BytesIO(out.data))
        assert im.format == "JPEG" and im.mode == "RGB"
        assert im.size == size == (out.width, out.height)
    else:
        assert out.error_message and not out.data
    if case.startswith("bomb"):
        assert "decompression bomb" in out.error_message


def test_alpha_is_composited_on_white():
    im = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    out = normalise(encode(im, "PNG"), CFG)
    assert Image.open(io.BytesIO(out.data)).getpixel((5, 5)) >= (250, 250, 250)


def test_steps_make_the_stored_bytes_and_the_same_each_time():
    """`normalise` is `shrink` then `encode_jpeg` on the decoded image (the bench times
    them apart), and the same body always gives the same stored bytes."""
    im = Image.new("RGB", (640, 480), (30, 120, 200))
    im.paste((250, 200, 10), (100, 80, 400, 300))
    body = encode(im, "PNG")
    out = normalise(body, CFG)
    rgb = shrink(Image.open(io.BytesIO(body)), CFG)
    assert rgb.size == (256, 192) == (out.width, out.height)
    assert encode_jpeg(rgb, CFG) == out.data == normalise(body, CFG).data


@pytest.mark.parametrize(
    "header,expected",
    [("noai", "noai"), ("googlebot: noimageai", "noimageai"), ("noindex, nofollow", "noindex"),
     ("nofollow", None), ("", None), ("otherbot: noai;", "noai")],
)
def test_opt_out_header(header, expected):
    assert opted_out({"x-robots-tag": header} if header else {}, CFG.opt_out_directives) == expected
