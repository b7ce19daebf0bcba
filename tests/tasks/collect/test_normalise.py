"""Per image: validation by decoding, normalisation to an RGB JPEG, opt-out headers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from tests.tasks.collect.images import CASES, encode
from tv100.sandbox.imagegen import make_photo
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.normalise import (
    decode_jpeg,
    encode_jpeg,
    fitted_size,
    normalise,
    opted_out,
    shrink,
    upright_rgb,
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
    rgb = shrink(upright_rgb(Image.open(io.BytesIO(body))), CFG)
    assert rgb.shape == (192, 256, 3) and (out.width, out.height) == (256, 192)
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
    ours = shrink(np.asarray(photo), CFG)
    pillows = photo.copy()
    pillows.thumbnail((256, 256), Image.Resampling.BICUBIC)
    assert ours.shape == (target[1], target[0], 3) and pillows.size == target
    diff = np.abs(ours.astype(np.int16) - np.asarray(pillows, np.int16))
    assert diff.mean() < 2.0, diff.mean()  # 0.2-0.9 over photos 0-4


def _jpeg(im: Image.Image, orientation: int = 1) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    im.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_libjpeg_turbos_decode_turns_as_pillows(orientation):
    """`decode_jpeg` applies the EXIF orientation as Pillow's `exif_transpose` does: the
    stored image has the size and (within JPEG noise) the pixels of Pillow's path."""
    body = _jpeg(make_photo(3).resize((500, 300)), orientation)
    opened = Image.open(io.BytesIO(body))
    fast = decode_jpeg(body, opened, (256, 154))
    assert fast is not None and fast.dtype == np.uint8 and fast.shape[2] == 3
    slow = Image.open(io.BytesIO(body))
    slow.draft("RGB", (256, 154))
    slow.load()
    pillows = np.asarray(ImageOps.exif_transpose(slow).convert("RGB"))
    ours, pillows = shrink(fast, CFG), shrink(pillows, CFG)
    assert ours.shape == pillows.shape == ((154, 256, 3) if orientation < 5 else (256, 154, 3))
    diff = np.abs(ours.astype(np.int16) - pillows.astype(np.int16))
    # 1.1-3.1 over photos 0-3: Pillow's draft decodes with the fastest DCT and upsampling
    assert diff.mean() < 6.0, diff.mean()
    assert normalise(body, CFG).width == ours.shape[1]


def test_greyscale_jpegs_decode_to_rgb_and_cmyk_ones_go_to_pillow():
    grey = _jpeg(make_photo(4).convert("L"))
    rgb = decode_jpeg(grey, Image.open(io.BytesIO(grey)), (640, 480))
    assert rgb is not None and rgb.shape == (480, 640, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all()  # grey in three channels
    cmyk = io.BytesIO()
    make_photo(4).convert("CMYK").save(cmyk, "JPEG")
    body = cmyk.getvalue()
    assert decode_jpeg(body, Image.open(io.BytesIO(body)), (256, 192)) is None
    out = normalise(body, CFG)
    assert out.status == "ok" and (out.width, out.height) == (256, 192)


def test_a_truncated_jpeg_is_pillows_decode_error():
    body = _jpeg(make_photo(5))[:-4000]
    assert decode_jpeg(body, Image.open(io.BytesIO(body)), (256, 192)) is None
    out = normalise(body, CFG)
    assert out.status == "decode_error" and "JPEG" in out.error_message


@pytest.mark.parametrize(
    "header,expected",
    [("noai", "noai"), ("googlebot: noimageai", "noimageai"), ("noindex, nofollow", "noindex"),
     ("nofollow", None), ("", None), ("otherbot: noai;", "noai")],
)
def test_opt_out_header(header, expected):
    assert opted_out({"x-robots-tag": header} if header else {}, CFG.opt_out_directives) == expected
