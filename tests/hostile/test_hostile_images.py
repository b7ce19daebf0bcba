"""`tv100.tasks.collect.normalise.normalise` on hostile images: stored correctly, or refused
with a status.

Decompression bombs (huge declared sizes in tiny PNG, GIF, JPEG, TIFF, WebP and BMP files;
real pixel floods just over `max_pixels`), truncated and bit-flipped files, every colour
mode (palette, alpha, CMYK, 1-bit, 16-bit gray and RGB(A)), animated GIF/WebP/APNG, all
eight EXIF orientations, and non-images. "Stored correctly" means an RGB JPEG no larger
than `max_side`, with the aspect ratio, orientation and colours of the source.
End to end, every such body served over HTTP becomes exactly one `images` row.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.support.reliability import record
from tv100.sandbox.imagegen import encode
from tv100.tasks.collect.config import STATUSES, DownloadConfig
from tv100.tasks.collect.normalise import Normalised, normalise

CONFIG = DownloadConfig(max_side=256, max_pixels=4_000_000, processes=1)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, raw: bytes = b"", depth: int = 8, color: int = 0) -> bytes:
    """A PNG with any header: the IDAT holds `raw` compressed (tiny for bombs)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def zero_png(width: int, height: int) -> bytes:
    """A real, fully decodable gray PNG of zeros (streamed: a few KiB for millions of px)."""
    obj = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(obj.compress(row) for _ in range(height)) + obj.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


def gif_screen(width: int, height: int) -> bytes:
    """A GIF whose logical screen is huge and whose one frame is 1x1."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00\x3b")


def jpeg_sof(width: int, height: int) -> bytes:
    """A JPEG header claiming a huge frame, with no scan data."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    dqt = b"\xff\xdb\x00\x43\x00" + bytes(range(1, 65))
    return b"\xff\xd8" + dqt + sof + b"\xff\xd9"


def bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + b"\x00" * 16


def webp_canvas(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + \
        (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_header(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, typ, n, val) if typ == 4 else
        struct.pack("<HHIHH", tag, typ, n, val, 0) for tag, typ, n, val in entries
    ) + b"\x00\x00\x00\x00"
    return b"II*\x00" + struct.pack("<I", 8 + 16) + b"\x78\x9c" + b"\x00" * 14 + ifd


def check_stored(n: Normalised, size: tuple[int, int] | None = None) -> Image.Image:
    """`n` is ok and holds an RGB JPEG within max_side, with the source's aspect ratio."""
    assert n.status == "ok", n.error_message
    out = Image.open(io.BytesIO(n.data))
    assert out.format == "JPEG" and out.mode == "RGB"
    assert (n.width, n.height) == out.size and max(out.size) <= CONFIG.max_side
    if size is not None:
        w, h = size
        scale = min(1.0, CONFIG.max_side / max(w, h))
        assert abs(out.size[0] - w * scale) <= 1.5 and abs(out.size[1] - h * scale) <= 1.5
    return out


def mean_rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)


# -- decompression bombs and huge declared sizes ------------------------------------------------

BOMBS: dict[str, Callable[[], bytes]] = {
    "PNG header 100000x100000": lambda: png(100_000, 100_000),
    "PNG header 2^31-1 wide": lambda: png(2**31 - 1, 1),
    "PNG 2001x2000 of real zeros (just over max_pixels)": lambda: zero_png(2001, 2000),
    "PNG 6000x6000 of real zeros (36 Mpx in 40 KB)": lambda: zero_png(6000, 6000),
    "GIF logical screen 65535x65535": lambda: gif_screen(65535, 65535),
    "JPEG frame 65500x65500": lambda: jpeg_sof(65500, 65500),
    "JPEG frame 3000x3000": lambda: jpeg_sof(3000, 3000),
    "BMP header 30000x30000": lambda: bmp_header(30000, 30000),
    "BMP header negative height": lambda: bmp_header(5000, -5000),
    "WebP canvas 16383x16383": lambda: webp_canvas(16383, 16383),
    "TIFF header 50000x50000": lambda: tiff_header(50000, 50000),
    "PNG zero width": lambda: png(0, 10),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_and_huge_dimensions_are_refused(name: str):
    data = BOMBS[name]()
    n = normalise(data, CONFIG)
    record("images", f"bomb / huge declared size: {name} ({len(data)} B)", n.status)
    assert n.status == "decode_error", (n.status, n.error_message)
    assert n.data == b"" and n.error_message


def test_max_pixels_is_the_bound():
    at = normalise(zero_png(2000, 2000), CONFIG)  # exactly max_pixels
    over = normalise(zero_png(2001, 2000), CONFIG)
    record("images", "exactly max_pixels vs one row more", at.status)
    record("images", "exactly max_pixels vs one row more", over.status)
    check_stored(at, (2000, 2000))
    assert over.status == "decode_error" and "max_pixels=4000000" in (over.error_message or "")


# -- colour modes -------------------------------------------------------------------------------


def _gradient16() -> np.ndarray:
    return np.tile(np.linspace(0, 65535, 300), (200, 1)).astype(np.uint16)


def _png16(color: int, channels: int, value: int) -> bytes:
    w, h = 30, 20
    row = b"\x00" + np.full((w, channels), value, ">u2").tobytes()
    return png(w, h, row * h, depth=16, color=color)


MODES: dict[str, tuple[Callable[[], bytes], tuple[int, int], tuple[float, float, float]]] = {
    # name: (make bytes, source size, expected mean RGB of the stored image)
    "RGB JPEG": (lambda: encode(Image.new("RGB", (320, 200), (10, 200, 30)), "JPEG"),
                 (320, 200), (10, 200, 30)),
    "L (gray) PNG": (lambda: encode(Image.new("L", (50, 40), 100), "PNG"), (50, 40),
                     (100, 100, 100)),
    "1-bit PNG": (lambda: encode(Image.new("1", (40, 40), 1), "PNG"), (40, 40),
                  (255, 255, 255)),
    "P (palette) GIF": (lambda: encode(Image.new("RGB", (60, 30), (0, 0, 255)).convert("P"),
                                       "GIF"), (60, 30), (0, 0, 255)),
    "P with transparent index": (
        lambda: encode(Image.new("P", (50, 50), 0), "PNG", transparency=0), (50, 50),
        (255, 255, 255)),
    "RGBA half transparent": (
        lambda: encode(Image.new("RGBA", (64, 64), (0, 0, 0, 128)), "PNG"), (64, 64),
        (127, 127, 127)),
    "LA transparent": (lambda: encode(Image.new("LA", (50, 50), (0, 0)), "PNG"), (50, 50),
                       (255, 255, 255)),
    "CMYK JPEG (red)": (lambda: encode(Image.new("CMYK", (100, 80), (0, 255, 255, 0)), "JPEG"),
                        (100, 80), (255, 0, 0)),
    "CMYK TIFF (red)": (lambda: encode(Image.new("CMYK", (100, 80), (0, 255, 255, 0)), "TIFF"),
                        (100, 80), (255, 0, 0)),
    "16-bit gray PNG (I;16) gradient": (
        lambda: encode(Image.fromarray(_gradient16()), "PNG"), (300, 200), (127.5, 127.5, 127.5)),
    "16-bit gray TIFF gradient": (
        lambda: encode(Image.fromarray(_gradient16()), "TIFF"), (300, 200),
        (127.5, 127.5, 127.5)),
    "48-bit RGB PNG": (lambda: _png16(2, 3, 32768), (30, 20), (128, 128, 128)),
    "64-bit RGBA PNG half transparent": (lambda: _png16(6, 4, 32768), (30, 20),
                                         (191.5, 191.5, 191.5)),
    "32-bit LA PNG": (lambda: _png16(4, 2, 32768), (30, 20), (191.5, 191.5, 191.5)),
    "WebP lossless with alpha": (
        lambda: encode(Image.new("RGBA", (40, 30), (0, 255, 0, 255)), "WEBP", lossless=True),
        (40, 30), (0, 255, 0)),
    "BMP": (lambda: encode(Image.new("RGB", (33, 17), (9, 9, 200)), "BMP"), (33, 17),
            (9, 9, 200)),
    "TIFF LZW": (lambda: encode(Image.new("RGB", (70, 50), (250, 120, 0)), "TIFF",
                                compression="tiff_lzw"), (70, 50), (250, 120, 0)),
    "ICO": (lambda: encode(Image.new("RGB", (32, 32), (200, 0, 200)), "ICO"), (32, 32),
            (200, 0, 200)),
    "1x1 pixel": (lambda: encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), (1, 1),
                  (1, 2, 3)),
    "2000x1 strip": (lambda: encode(Image.new("RGB", (2000, 1), (90, 90, 90)), "PNG"),
                     (2000, 1), (90, 90, 90)),
    "large JPEG (draft path)": (lambda: encode(Image.new("RGB", (1900, 1200), (30, 60, 90)),
                                               "JPEG"), (1900, 1200), (30, 60, 90)),
}


@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_is_stored_as_rgb_with_its_colours(name: str):
    make, size, expected = MODES[name]
    n = normalise(make(), CONFIG)
    record("images", f"colour mode / format: {name}", n.status)
    out = check_stored(n, size)
    assert np.allclose(mean_rgb(out), expected, atol=8), (mean_rgb(out), expected)


def test_16bit_pgm_keeps_its_tones():
    # Pillow opens 16-bit PGM as mode 'I' (32-bit ints): scaled to 8 bits like 'I;16'.
    arr = _gradient16()
    data = b"P5\n300 200\n65535\n" + arr.astype(">u2").tobytes()
    n = normalise(data, CONFIG)
    out = check_stored(n, (300, 200))
    record("images", "16-bit PGM (mode I) gradient", n.status)
    assert abs(mean_rgb(out).mean() - 127.5) < 8


# -- animation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_images_store_their_first_frame(fmt: str):
    frames = [Image.new("RGB", (64, 48), (255, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 255)),
              Image.new("RGB", (64, 48), (0, 255, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    n = normalise(data, CONFIG)
    record("images", f"animated {'APNG' if fmt == 'PNG' else fmt} (3 frames)", n.status)
    out = check_stored(n, (64, 48))
    assert np.allclose(mean_rgb(out), (255, 0, 0), atol=10)


# -- EXIF orientation ---------------------------------------------------------------------------

# Orientation tag -> the transpose that undoes it (what the stored pixels got, inverted).
_STORE_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _canonical(w: int, h: int) -> Image.Image:
    """Gray, with a red top-left quadrant and a blue bottom-right one."""
    im = Image.new("RGB", (w, h), (128, 128, 128))
    im.paste((255, 0, 0), (0, 0, w // 2, h // 2))
    im.paste((0, 0, 255), (w // 2, h // 2, w, h))
    return im


@pytest.mark.parametrize("size", [(120, 80), (1200, 800)], ids=["small", "draft-scaled"])
@pytest.mark.parametrize("orientation", list(_STORE_AS))
def test_exif_orientation_is_applied(orientation: int, size: tuple[int, int]):
    canonical = _canonical(*size)
    transform = _STORE_AS[orientation]
    stored = canonical.transpose(transform) if transform is not None else canonical
    exif = Image.Exif()
    exif[0x0112] = orientation
    n = normalise(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), CONFIG)
    record("images", "EXIF orientation 1-8", n.status)
    out = check_stored(n, size)
    a = np.asarray(out, dtype=float)
    h, w = a.shape[:2]
    top_left = a[: h // 4, : w // 4].reshape(-1, 3).mean(axis=0)
    bottom_right = a[-h // 4 :, -w // 4 :].reshape(-1, 3).mean(axis=0)
    assert np.allclose(top_left, (255, 0, 0), atol=40), top_left
    assert np.allclose(bottom_right, (0, 0, 255), atol=40), bottom_right


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_invalid_exif_orientation_is_ignored(value: Any):
    exif = Image.Exif()
    exif[0x0112] = value
    try:
        data = encode(_canonical(90, 60), "JPEG", exif=exif.tobytes())
    except (TypeError, ValueError, struct.error):
        pytest.skip("Pillow will not write this EXIF value")
    n = normalise(data, CONFIG)
    record("images", "invalid EXIF orientation value", n.status)
    check_stored(n, (90, 60))


def test_garbage_exif_block_is_survived():
    data = encode(_canonical(90, 60), "JPEG")
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + 40) + b"Exif\x00\x00" + b"MM\x00*" + b"\xff" * 36
    n = normalise(data[:2] + app1 + data[2:], CONFIG)
    record("images", "garbage EXIF block", n.status)
    assert n.status in ("ok", "decode_error")
    if n.status == "ok":
        check_stored(n, (90, 60))


# -- not images ---------------------------------------------------------------------------------

NOT_IMAGES = {
    "empty body": b"",
    "HTML page": b"<!DOCTYPE html><html><body>Access denied</body></html>",
    "SVG": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script/></svg>',
    "JSON error": b'{"error": "rate limited"}',
    "PDF": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    "zip": b"PK\x03\x04" + b"\x00" * 60,
    "plain text": "ceci n'est pas une image \u00e9".encode(),
    "invalid UTF-8 bytes": b"\xff\xfe\xfd\x00\x01",
}


@pytest.mark.parametrize("name", list(NOT_IMAGES))
def test_non_images_are_not_image(name: str):
    n = normalise(NOT_IMAGES[name], CONFIG)
    record("images", f"not an image: {name}", n.status)
    assert n.status == "not_image" and n.error_message


def test_png_with_a_bad_crc_and_gif_header_with_html_are_refused():
    good = encode(Image.new("RGB", (20, 20), (1, 2, 3)), "PNG")
    bad_crc = good[:29] + bytes([good[29] ^ 0xFF]) + good[30:]
    polyglot = b"GIF89a" + b"<html><script>alert(1)</script></html>"
    for name, data in (("PNG with a bad IHDR CRC", bad_crc), ("GIF magic then HTML", polyglot)):
        n = normalise(data, CONFIG)
        record("images", name, n.status)
        assert n.status == "decode_error", (name, n.status, n.error_message)


# -- truncated and bit-flipped files (property-based) -------------------------------------------


def _samples() -> list[bytes]:
    base = _canonical(200, 150)
    return [
        encode(base, "JPEG", quality=90),
        encode(base, "JPEG", quality=90, progressive=True),
        encode(base, "PNG"),
        encode(base.convert("P"), "GIF"),
        encode(base, "WEBP", quality=80),
        encode(base, "TIFF"),
        encode(base, "BMP"),
        encode(Image.fromarray(_gradient16()[:50, :60]), "PNG"),
    ]


SAMPLES = _samples()


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(SAMPLES) - 1),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 7)), max_size=12),
)
def test_truncated_and_corrupted_images_never_raise(
    index: int, cut: float, flips: list[tuple[float, int]]
):
    data = bytearray(SAMPLES[index][: max(1, int(len(SAMPLES[index]) * cut))])
    for where, bit in flips:
        data[min(len(data) - 1, int(len(data) * where))] ^= 1 << bit
    n = normalise(bytes(data), CONFIG)  # must not raise
    kind = "truncated" if cut < 1 else "bit-flipped"
    record("images", f"{kind} / bit-flipped image (8 formats)", n.status)
    assert n.status in ("ok", "decode_error", "not_image"), n
    if n.status == "ok":
        check_stored(n)
    else:
        assert n.data == b"" and n.error_message


# -- end to end: every body becomes exactly one row ---------------------------------------------


def test_every_hostile_body_becomes_one_images_row(sandbox, tmp_path):
    import os

    import pyarrow as pa

    from tv100.sandbox.server import Response
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import read_table
    from tv100.tasks.collect.download import download_hits
    from tv100.tasks.web.config import HttpConfig

    bodies: dict[str, bytes] = {}
    bodies.update({f"bomb-{i}": make() for i, make in enumerate(BOMBS.values())})
    bodies.update({f"mode-{i}": make() for i, (make, _, _) in enumerate(MODES.values())})
    bodies.update({f"not-{i}": data for i, data in enumerate(NOT_IMAGES.values())})
    bodies.update({f"cut-{i}": s[: len(s) // 2] for i, s in enumerate(SAMPLES)})
    sandbox.register("/_hostile_img/", lambda req: Response(
        200, {"Content-Type": "image/jpeg"}, bodies[req.path.rsplit("/", 1)[1]]))
    urls = [f"{sandbox.base_url}/_hostile_img/{k}" for k in bodies]
    hits = pa.table({
        "series_id": ["tt0000001"] * len(urls),
        "engine": ["bing"] * len(urls),
        "rank": list(range(1, len(urls) + 1)),
        "image_url": urls,
    })
    root = DataRoot(str(tmp_path / "data")).ensure()
    config = DownloadConfig(max_side=256, max_pixels=4_000_000, processes=1, shard_size=16,
                            http=HttpConfig(allow_hosts=(sandbox.base_url.split("://")[1],),
                                            retries=0))
    download_hits(hits, root, config)
    rows = read_table(root, "images").to_pylist()
    assert sorted(r["url"] for r in rows) == sorted(urls)  # exactly one row each
    for r in rows:
        record("images", "hostile body served over HTTP → images row", r["status"])
        assert r["status"] in STATUSES
        assert (r["path"] is not None) == (r["status"] == "ok")
    stored = {os.path.relpath(os.path.join(d, f), root.base)
              for d, _, fs in os.walk(root.path("images")) for f in fs}
    assert stored == {r["path"] for r in rows if r["status"] == "ok"}
