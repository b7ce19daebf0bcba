"""Image bodies for the downloader tests: every format, and every way to be broken."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def photo(w: int = 640, h: int = 480, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h))], -1)
    noise = rng.integers(0, 40, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype("uint8"), "RGB")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def bomb_png(w: int = 30000, h: int = 30000) -> bytes:
    """A tiny-on-the-wire PNG claiming w×h pixels (never allocated here)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * (w // 8 + 1) * 16, 9)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    im = photo(400, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    return encode(im, "JPEG", exif=exif.tobytes())


CASES = {
    "jpeg": (encode(photo(), "JPEG", quality=85), "ok", (256, 192), "JPEG"),
    "png-alpha": (encode(photo(300, 300).convert("RGBA"), "PNG"), "ok", (256, 256), "PNG"),
    "cmyk-jpeg": (encode(photo(320, 240).convert("CMYK"), "JPEG"), "ok", (256, 192), "JPEG"),
    "webp": (encode(photo(200, 100), "WEBP"), "ok", (200, 100), "WEBP"),
    "gif-palette": (encode(photo(120, 90).convert("P"), "GIF"), "ok", (120, 90), "GIF"),
    "png-16bit": (encode(Image.fromarray(
        np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16), "PNG"),
        "ok", (64, 64), "PNG"),
    "exif-orientation": (exif_rotated_jpeg(), "ok", (128, 256), "JPEG"),
    "html-as-jpeg": (b"<!DOCTYPE html><html><body>nope</body></html>", "not_image", None, None),
    "corrupt": (b"\xff\xd8\xff\xe0" + b"\x13garbage" * 100, "decode_error", None, None),
    "garbage": (b"\x13garbage" * 100, "not_image", None, None),
    "truncated": (encode(photo(), "JPEG")[:3000], "decode_error", None, "JPEG"),
    "bomb": (bomb_png(), "decode_error", None, None),  # Pillow refuses it at open
    "bomb-under-pillow-limit": (bomb_png(9000, 9000), "decode_error", None, "PNG"),
    "empty": (b"", "not_image", None, None),
}
