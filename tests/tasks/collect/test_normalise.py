"""Per image: validation by decoding, normalisation to an RGB JPEG, opt-out headers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.tasks.collect.images import CASES, encode
from tv100.sandbox.imagegen import make_photo
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.normalise import (
    encode_jpeg,
    fitted_size,
    normalise,
    opted_out,
    resize_rgb,
    shrink,
)

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


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 6000), st.integers(1, 6000), st.sampled_from([1, 64, 224, 256, 1000]))
def test_fitted_size_is_pillows_thumbnail_size(w, h, side):
    im = Image.new("1", (w, h))  # 1-bit: cheap to make at any size
    im.thumbnail((side, side))
    assert fitted_size((w, h), side) == im.size


@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1600, 1200), (257, 1000)])
def test_resize_is_close_to_pillows_bicubic(size):
    """OpenCV's resize (bicubic under 2x, area averaging from 2x) against Pillow's bicubic
    thumbnail on a photo: the same size, and pixels within a few levels on average."""
    photo = make_photo(7).resize(size, Image.Resampling.BICUBIC)
    target = fitted_size(photo.size, 256)
    ours = resize_rgb(photo, target)
    pillows = photo.copy()
    pillows.thumbnail((256, 256), Image.Resampling.BICUBIC)
    assert ours.mode == "RGB" and ours.size == pillows.size == target
    diff = np.abs(np.asarray(ours, np.int16) - np.asarray(pillows, np.int16))
    assert diff.mean() < 2.0, diff.mean()  # 0.2-0.9 over photos 0-4


@pytest.mark.parametrize(
    "header,expected",
    [("noai", "noai"), ("googlebot: noimageai", "noimageai"), ("noindex, nofollow", "noindex"),
     ("nofollow", None), ("", None), ("otherbot: noai;", "noai")],
)
def test_opt_out_header(header, expected):
    assert opted_out({"x-robots-tag": header} if header else {}, CFG.opt_out_directives) == expected
