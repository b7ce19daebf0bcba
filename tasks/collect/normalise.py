"""One downloaded body → a stored image: validated by decoding, never by extension.

`normalise` decodes (JPEGs with libjpeg-turbo's own API at a reduced DCT scale,
`decode_jpeg`; anything else, or anything it refuses, with Pillow), refuses decompression
bombs, applies the EXIF orientation, converts to RGB (transparency on white), shrinks to
`DownloadConfig.max_side` (OpenCV, `shrink`) and re-encodes as JPEG (`encode_jpeg`), the
pixels an array from decode to encode; `opted_out` reads the X-Robots-Tag opt-out directives.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg
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
        wanted = (max(1, math.ceil(w * min(scale, 1))), max(1, math.ceil(h * min(scale, 1))))
        pixels = decode_jpeg(content, im, wanted) if fmt == "JPEG" else None
        if pixels is None:
            if fmt == "JPEG" and scale < 1:
                # draft picks the largest DCT scale keeping both sides >= the wanted size.
                im.draft("RGB", wanted)
            im.load()
            pixels = upright_rgb(im)
        pixels = shrink(pixels, config)
        data = encode_jpeg(pixels, config)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Normalised("decode_error", f"decompression bomb refused: {err}", format=fmt)
    except Exception as err:  # truncated or corrupt data surfaces here
        return Normalised("decode_error", f"cannot decode {fmt} image: {err}", format=fmt)
    height, width = pixels.shape[:2]
    return Normalised("ok", None, data, width, height, fmt)


#: EXIF orientation → the OpenCV operation that makes the pixels upright (Pillow's
#: `ImageOps.exif_transpose` turns an image by the same tag the same way).
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1),  # mirrored left-right
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),  # mirrored top-bottom
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}
_ORIENTATION = 0x0112


def decode_jpeg(content: bytes, im: Image.Image, wanted: tuple[int, int]) -> np.ndarray | None:
    """An RGB or greyscale JPEG decoded by libjpeg-turbo's own API at the smallest DCT scale
    giving at least `wanted`: upright RGB pixels (height × width × 3); None for Pillow to
    decode instead.

    About half of Pillow's CPU for the same drafted decode (1.0 ms against 1.8 for the
    bench's 640×480 photos, with Pillow's copy to an array). Anything it refuses (CMYK,
    12-bit, corrupt or truncated data: ``strict``) goes to Pillow, whose verdict and
    wording stand.

    Args:
        content: the body.
        im: the same body opened by Pillow (its header read, not decoded).
        wanted: the least size to decode to (width, height, before orientation).
    """
    if im.mode not in ("RGB", "L"):
        return None
    try:
        pixels = simplejpeg.decode_jpeg(
            content, colorspace="RGB", min_width=wanted[0], min_height=wanted[1], strict=True
        )
        orientation = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - Pillow decides, and words, what is wrong with it
        return None
    turn = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return turn(pixels) if turn is not None else pixels


def upright_rgb(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image as upright (EXIF orientation) RGB pixels."""
    ImageOps.exif_transpose(im, in_place=True)
    return np.asarray(_to_rgb(im))


def shrink(pixels: np.ndarray, config: DownloadConfig) -> np.ndarray:
    """RGB pixels within `config.max_side`, aspect kept (Pillow's `thumbnail` sizes).

    OpenCV: bicubic under 2× (a drafted JPEG is always there: less than 2× to go), area
    averaging from 2× down (as img2dataset). About 7× less CPU than Pillow's bicubic
    `thumbnail` for 320×240 → 256×192 here (0.2 ms against 1.4), which was the
    downloader's largest part after decoding. Its own step (as `encode_jpeg`) so that a
    profile can tell its cost from decoding's (`bench/download.py`).
    """
    height, width = pixels.shape[:2]
    size = fitted_size((width, height), config.max_side)
    if size == (width, height):
        return pixels
    factor = max(width / size[0], height / size[1])
    method = cv2.INTER_AREA if factor >= 2 else cv2.INTER_CUBIC
    return cv2.resize(pixels, size, interpolation=method)


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


def encode_jpeg(pixels: np.ndarray, config: DownloadConfig) -> bytes:
    """The stored JPEG's bytes: libjpeg-turbo, `config.jpeg_quality`, 4:2:0 chroma (as
    Pillow's default); the same pixels give the same bytes."""
    data: bytes = simplejpeg.encode_jpeg(
        np.ascontiguousarray(pixels),
        quality=config.jpeg_quality,
        colorspace="RGB",
        colorsubsampling="420",
    )
    return data


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
