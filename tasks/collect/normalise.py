"""One downloaded body → a stored image: validated by decoding, never by extension.

`normalise` decodes, refuses decompression bombs, applies the EXIF orientation, converts to
RGB (transparency on white) and shrinks to `DownloadConfig.max_side`, then re-encodes as
JPEG; `opted_out` reads the X-Robots-Tag opt-out directives.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tv100.tasks.collect.config import DownloadConfig

# One thread per resize: the downloader runs its own decode threads in each of its processes.
cv2.setNumThreads(1)


@dataclass(frozen=True)
class Normalised:
    """The outcome of decoding one downloaded body.

    Attributes:
        status: ``ok``, ``not_image`` or ``decode_error`` (see `config.STATUSES`).
        error_message: why it is not ok.
        data: the stored JPEG's bytes (empty unless ok).
        width: the stored image's width.
        height: the stored image's height.
        format: the source format Pillow recognised (JPEG, PNG, …), if any.
    """

    status: str
    error_message: str | None = None
    data: bytes = b""
    width: int | None = None
    height: int | None = None
    format: str | None = None


#: Leading bytes of the formats Pillow decodes; bytes that start so but fail to decode are
#: a broken image (`decode_error`), anything else is `not_image`.
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF
    b"MM\x00*",
)


def _looks_like_image(content: bytes) -> bool:
    return content.startswith(_IMAGE_MAGIC) or (content[:4] == b"RIFF" and content[8:12] == b"WEBP")


def _looks_like_markup(content: bytes) -> bool:
    head = content[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"["))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB on white for anything with transparency; 16-bit and CMYK converted properly."""
    if im.mode in ("I;16", "I;16B", "I;16L"):
        im = im.point(lambda v: v / 256).convert("L")
    elif im.mode == "I":  # 32-bit ints: Pillow's mode for 16-bit PGM/PNM and some TIFFs
        high = im.getextrema()[1]
        if isinstance(high, int | float) and high > 255:  # 16-bit (or wider) tones
            scale = 1 / 256 if high <= 65535 else 255 / high
            im = im.point(lambda v: v * scale)
        im = im.convert("L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB") if im.mode != "RGB" else im


def normalise(content: bytes, config: DownloadConfig) -> Normalised:
    """Decode, refuse bombs, EXIF-transpose, convert to RGB, shrink, re-encode as JPEG.

    JPEGs are decoded at reduced scale (`Image.draft`), the cheapest way to shrink them.

    Args:
        content: the downloaded body.
        config: `max_side`, `max_pixels` and `jpeg_quality` are used.

    Returns:
        The stored JPEG and its size, or the status and reason it cannot be stored.
    """
    if not content:
        return Normalised("not_image", "empty body")
    try:
        im = Image.open(io.BytesIO(content))
    except UnidentifiedImageError:
        if _looks_like_image(content):
            return Normalised("decode_error", "corrupt image: header recognised, data not")
        what = "markup/text" if _looks_like_markup(content) else "unrecognised bytes"
        return Normalised("not_image", f"not an image ({what}, {len(content)} bytes)")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Normalised("decode_error", f"decompression bomb refused: {err}")
    except Exception as err:  # Pillow raises many types on hostile headers
        return Normalised("decode_error", f"cannot open image: {type(err).__name__}: {err}")
    fmt = im.format
    w, h = im.size
    if w <= 0 or h <= 0:
        return Normalised("decode_error", f"invalid dimensions {w}x{h}", format=fmt)
    if w * h > config.max_pixels:
        return Normalised(
            "decode_error",
            f"decompression bomb refused: {w}x{h} = {w * h} pixels > max_pixels="
            f"{config.max_pixels}",
            format=fmt,
        )
    try:
        scale = config.max_side / max(w, h)
        if fmt == "JPEG" and scale < 1:
            # draft picks the largest DCT scale keeping both sides >= the requested size.
            im.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
        im.load()
        rgb = shrink(im, config)
        data = encode_jpeg(rgb, config)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Normalised("decode_error", f"decompression bomb refused: {err}", format=fmt)
    except Exception as err:  # truncated or corrupt data surfaces here
        return Normalised("decode_error", f"cannot decode {fmt} image: {err}", format=fmt)
    return Normalised("ok", None, data, rgb.size[0], rgb.size[1], fmt)


def shrink(im: Image.Image, config: DownloadConfig) -> Image.Image:
    """A decoded image upright (EXIF orientation), in RGB and within `config.max_side`.

    Its own step (as `encode_jpeg`) so that a profile can tell its cost from decoding's
    (`bench/download.py`).
    """
    rgb = _to_rgb(ImageOps.exif_transpose(im) or im)
    size = fitted_size(rgb.size, config.max_side)
    return rgb if size == rgb.size else resize_rgb(rgb, size)


def fitted_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` shrunk to fit a `max_side` square, aspect kept (as Pillow's `thumbnail`)."""
    w, h = size
    if w <= max_side and h <= max_side:
        return size
    aspect = w / h
    if aspect <= 1:  # not wider than tall: the height is max_side
        x = min(math.floor(max_side * aspect), math.ceil(max_side * aspect),
                key=lambda n: abs(aspect - n / max_side))
        return max(x, 1), max_side
    y = min(math.floor(max_side / aspect), math.ceil(max_side / aspect),
            key=lambda n: 0 if n == 0 else abs(aspect - max_side / n))
    return max_side, max(y, 1)


def resize_rgb(rgb: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An RGB image shrunk to `size` with OpenCV: area averaging from 2× down (as
    img2dataset), bicubic above (a drafted JPEG is always there: less than 2× to go).

    About 7× cheaper than Pillow's bicubic `thumbnail` for 320×240 → 256×192 on this
    machine (0.2 ms against 1.4, conversions included), the downloader's largest part
    after decoding (`bench/download.py`'s ``resize``).
    """
    w, h = rgb.size
    factor = max(w / size[0], h / size[1])
    method = cv2.INTER_AREA if factor >= 2 else cv2.INTER_CUBIC
    return Image.fromarray(cv2.resize(np.asarray(rgb), size, interpolation=method))


def encode_jpeg(rgb: Image.Image, config: DownloadConfig) -> bytes:
    """The stored JPEG's bytes (`config.jpeg_quality`; the same pixels give the same bytes)."""
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=config.jpeg_quality, optimize=False)
    return out.getvalue()


def opted_out(headers: Mapping[str, str], directives: Iterable[str]) -> str | None:
    """The opt-out directive found in X-Robots-Tag (``noai``, ``bot: noimageai`` ...).

    Args:
        headers: the response headers (lower-case names).
        directives: the directives that count as opting out (lower case).

    Returns:
        The first directive found, or None.
    """
    value = headers.get("x-robots-tag", "")
    wanted = set(directives)
    for part in value.lower().replace(";", ",").split(","):
        token = part.strip().rsplit(":", 1)[-1].strip()
        if token in wanted:
            return token
    return None
