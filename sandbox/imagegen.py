"""Drawing code for the sandbox image host: series signatures, scenes, variants and junk.

Pure functions of their arguments (a `numpy.random.Generator` carries the randomness), no
I/O and no state except one read-only noise tile built on first use. `tv100.sandbox.imagehost`
decides *what* to draw; this module only knows *how*.

`make_photo` is the generic photo-like test image (no series, no signature) that the tests
and benchmarks of hashing, quality, near duplicates and downloads share; `encode` turns any
of these images into file bytes.

A series' visual signature (`Signature`) is what a small image model can learn at 64×64 px:
a background colour pair with a gradient direction, a striped panel (stripe angle, period and
two colours) and a recurring shape (kind and colour). Every image of a series then gets its
own layout: a random lighting field of large soft blobs, the panel and the shapes at random
places, sizes and rotations, random clutter and sensor-like noise. The lighting field and the
placements decide the low spatial frequencies that perceptual hashes look at, so distinct
images of one series hash as far apart as unrelated images (pHash distance ~31 of 64 on
average, ≥ 12 in practice) while the colours and motifs stay the series'.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont

RGB = tuple[int, int, int]

#: Shape kinds a series may use as its recurring motif.
SHAPE_KINDS: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "star",
    "ring",
    "cross",
    "hexagon",
)

#: Sizes (width, height) an ordinary image is rendered at.
SIZES: tuple[tuple[int, int], ...] = (
    (480, 360),
    (512, 384),
    (560, 420),
    (600, 450),
    (640, 360),
    (640, 480),
    (720, 540),
    (768, 432),
    (800, 450),
    (800, 600),
)

JPEG_QUALITY = 85
_GOLDEN = 0.618033988749895


@dataclass(frozen=True)
class Signature:
    """The visual identity shared by every image of one series."""

    sig_id: int
    bg_top: RGB
    bg_bottom: RGB
    gradient_angle: float  # radians
    stripe_angle: float  # radians
    stripe_period: float  # fraction of the image width
    stripe_colors: tuple[RGB, RGB]
    shape_kind: str
    shape_color: RGB
    shape_outline: RGB


def _hsv(h: float, s: float, v: float) -> RGB:
    """HSV in [0, 1] to an RGB byte triple."""
    h = h % 1.0
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (round(r * 255), round(g * 255), round(b * 255))


def make_signature(sig_id: int, rng: np.random.Generator) -> Signature:
    """Draw a series signature.

    Hues are spread by the golden ratio over `sig_id` (so consecutive ids differ a lot) and
    jittered by `rng`; the shape kind cycles with `sig_id` so that series sharing a hue
    region still differ in motif.

    Args:
        sig_id: the series' signature id (its index among the candidate series).
        rng: the series' own random stream.
    """
    base = (sig_id * _GOLDEN + float(rng.uniform(0, 0.04))) % 1.0
    hue2 = base + float(rng.choice([0.08, 0.17, 0.5, -0.12]))
    v1, v2 = float(rng.uniform(0.55, 0.9)), float(rng.uniform(0.45, 0.85))
    stripe_hue = base + float(rng.uniform(0.3, 0.7))
    return Signature(
        sig_id=sig_id,
        bg_top=_hsv(base, float(rng.uniform(0.45, 0.85)), v1),
        bg_bottom=_hsv(hue2, float(rng.uniform(0.4, 0.8)), v2),
        gradient_angle=float(rng.uniform(0, 2 * math.pi)),
        stripe_angle=float((sig_id * 37 % 180) * math.pi / 180 + rng.uniform(-0.05, 0.05)),
        stripe_period=float(rng.uniform(0.025, 0.07)),
        stripe_colors=(
            _hsv(stripe_hue, 0.8, 0.95),
            _hsv(stripe_hue + float(rng.uniform(0.1, 0.5)), 0.7, 0.3),
        ),
        shape_kind=SHAPE_KINDS[(sig_id + sig_id // len(SHAPE_KINDS)) % len(SHAPE_KINDS)],
        shape_color=_hsv(base + 0.5 + float(rng.uniform(-0.08, 0.08)), 0.85, 0.9),
        shape_outline=_hsv(base + 0.25, 0.6, 0.2),
    )


@lru_cache(maxsize=1)
def _noise_tile() -> Image.Image:
    """A fixed 1024×1024 RGB tile of uniform noise in [0, 12] (cropped at random offsets)."""
    arr = np.random.default_rng(20240418).integers(0, 13, size=(1024, 1024, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _jitter(c: RGB, rng: np.random.Generator, amount: int) -> RGB:
    d = rng.integers(-amount, amount + 1, size=3)
    return (
        int(min(255, max(0, c[0] + d[0]))),
        int(min(255, max(0, c[1] + d[1]))),
        int(min(255, max(0, c[2] + d[2]))),
    )


def _polygon(
    cx: float, cy: float, r: float, n: int, rot: float, inner: float = 1.0
) -> list[tuple[float, float]]:
    """Vertices of a regular n-gon (or a star when `inner` < 1) around (cx, cy)."""
    pts = []
    steps = n * 2 if inner < 1.0 else n
    for k in range(steps):
        rad = r if (inner >= 1.0 or k % 2 == 0) else r * inner
        a = rot + 2 * math.pi * k / steps
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    kind: str,
    cx: float,
    cy: float,
    r: float,
    rot: float,
    fill: RGB,
    outline: RGB,
) -> None:
    width = max(1, int(r / 8))
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r / 3)))
    elif kind == "square":
        draw.polygon(_polygon(cx, cy, r, 4, rot), fill=fill, outline=outline, width=width)
    elif kind == "diamond":
        pts = [(cx, cy - r), (cx + r * 0.6, cy), (cx, cy + r), (cx - r * 0.6, cy)]
        draw.polygon(pts, fill=fill, outline=outline, width=width)
    elif kind == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, rot), fill=fill, outline=outline, width=width)
    elif kind == "star":
        draw.polygon(_polygon(cx, cy, r, 5, rot, inner=0.45), fill=fill, outline=outline)
    elif kind == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, rot), fill=fill, outline=outline, width=width)
    elif kind == "cross":
        t = r * 0.35
        c, s = math.cos(rot), math.sin(rot)
        for dx, dy in ((1.0, 0.0), (0.0, 1.0)):
            ux, uy = dx * c - dy * s, dx * s + dy * c
            draw.line(
                (cx - ux * r, cy - uy * r, cx + ux * r, cy + uy * r), fill=fill, width=int(2 * t)
            )
    else:  # pragma: no cover - SHAPE_KINDS is closed
        raise ValueError(f"unknown shape kind {kind!r}")


def _lit_background(
    sig: Signature, rng: np.random.Generator, w: int, h: int
) -> tuple[Image.Image, np.ndarray]:
    """The series gradient under a random lighting field, and that field.

    Both are smooth, so they are computed at 1/8 of the size and upscaled once. The lighting
    field (factors in 0.3..1.05) is made of soft light and dark blobs placed at random for
    every image; it dominates the low spatial frequencies that a perceptual hash thresholds
    (pHash looks at the lowest 8×8 DCT coefficients of a 32×32 thumbnail), which is what
    keeps two images of the same series far apart in pHash distance.

    Returns:
        The full-size RGB background and the small lighting field (shape ``(sh, sw)``).
    """
    sw, sh = max(8, w // 8), max(8, h // 8)
    ys, xs = np.mgrid[0:sh, 0:sw].astype(np.float32)
    xs /= sw
    ys /= sh
    ang = sig.gradient_angle + float(rng.uniform(-0.25, 0.25))
    t = np.clip((xs - 0.5) * math.cos(ang) + (ys - 0.5) * math.sin(ang) + 0.5, 0.0, 1.0)
    a = np.asarray(sig.bg_top, dtype=np.float32)
    b = np.asarray(sig.bg_bottom, dtype=np.float32)
    grad = a * (1 - t[..., None]) + b * t[..., None]
    light = _light_field(rng, xs, ys)
    small = np.clip(grad * light[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BILINEAR), light


def _light_field(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A random lighting field (factors in 0.3..1.05) of soft light and dark blobs and a
    tilt, over the unit grid `xs`, `ys` (see `_lit_background`)."""
    field = np.zeros(xs.shape, dtype=np.float32)
    for _ in range(int(rng.integers(5, 9))):
        cx, cy = rng.uniform(-0.1, 1.1, size=2)
        sx, sy = rng.uniform(0.08, 0.3, size=2)
        amp = float(rng.uniform(0.5, 1.0)) * float(rng.choice([-1.0, 1.0]))
        field += amp * np.exp(-(((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2) / 2)
    gx, gy = rng.uniform(-0.6, 0.6, size=2)
    field += gx * (xs - 0.5) + gy * (ys - 0.5)
    lo, hi = float(field.min()), float(field.max())
    light: np.ndarray = 0.3 + 0.75 * (field - lo) / max(hi - lo, 1e-6)
    return light


def _shade(c: RGB, light: np.ndarray, x: float, y: float, w: int, h: int) -> RGB:
    """Colour `c` under the lighting field at image position (x, y)."""
    sh, sw = light.shape
    f = float(light[min(sh - 1, max(0, int(y * sh / h))), min(sw - 1, max(0, int(x * sw / w)))])
    return (min(255, round(c[0] * f)), min(255, round(c[1] * f)), min(255, round(c[2] * f)))


def _stripe_panel(
    img: Image.Image,
    sig: Signature,
    rng: np.random.Generator,
    light: np.ndarray,
) -> None:
    """Paste the series' striped panel at a random place, size and outline."""
    w, h = img.size
    pw = int(w * rng.uniform(0.22, 0.45))
    ph = int(h * rng.uniform(0.22, 0.5))
    x0 = int(rng.integers(-pw // 4, w - pw * 3 // 4))
    y0 = int(rng.integers(-ph // 4, h - ph * 3 // 4))
    cx0, cy0 = x0 + pw / 2, y0 + ph / 2
    c1 = _shade(_jitter(sig.stripe_colors[0], rng, 12), light, cx0, cy0, w, h)
    c2 = _shade(_jitter(sig.stripe_colors[1], rng, 12), light, cx0, cy0, w, h)
    tile = Image.new("RGB", (pw, ph), c2)
    draw = ImageDraw.Draw(tile)
    period = max(4.0, sig.stripe_period * w * float(rng.uniform(0.85, 1.15)))
    nx, ny = math.cos(sig.stripe_angle), math.sin(sig.stripe_angle)  # stripe normal
    dx, dy = -ny, nx  # along the stripe
    diag = math.hypot(pw, ph)
    phase = float(rng.uniform(0, period))
    k = -diag
    while k < diag:
        cx = pw / 2 + nx * (k + phase)
        cy = ph / 2 + ny * (k + phase)
        draw.line(
            (cx - dx * diag, cy - dy * diag, cx + dx * diag, cy + dy * diag),
            fill=c1,
            width=max(2, int(period / 2)),
        )
        k += period
    mask = Image.new("L", (pw, ph), 0)
    md = ImageDraw.Draw(mask)
    form = int(rng.integers(0, 3))
    if form == 0:
        md.rectangle((0, 0, pw - 1, ph - 1), fill=255)
    elif form == 1:
        md.ellipse((0, 0, pw - 1, ph - 1), fill=255)
    else:
        md.rounded_rectangle((0, 0, pw - 1, ph - 1), radius=min(pw, ph) // 5, fill=255)
    img.paste(tile, (x0, y0), mask)


def render_scene(sig: Signature, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Render one image of a series: its signature in a fresh random layout.

    Layers: the lit series gradient; background clutter in random colours; one or two
    striped panels; 3-8 of the series' shapes at random places, sizes and rotations (colours
    shaded by the lighting field where they stand); small foreground clutter; noise.

    Args:
        sig: the series' signature.
        rng: this image's own random stream (same stream, same pixels).
        width: image width in px.
        height: image height in px.

    Returns:
        An RGB `PIL.Image.Image`.
    """
    w, h = width, height
    img, light = _lit_background(sig, rng, w, h)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        col = _hsv(float(rng.uniform()), float(rng.uniform(0, 0.6)), float(rng.uniform(0.2, 1)))
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        col = _shade(col, light, x, y, w, h)
        r = float(rng.uniform(0.02, 0.12)) * w
        if rng.uniform() < 0.5:
            draw.rectangle((x - r, y - r * 0.6, x + r, y + r * 0.6), fill=col)
        else:
            x2, y2 = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            draw.line((x, y, x2, y2), fill=col, width=int(rng.integers(2, 9)))
    for _ in range(int(rng.integers(1, 3))):
        _stripe_panel(img, sig, rng, light)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        r = float(rng.uniform(0.03, 0.13)) * w
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        _draw_shape(
            draw,
            sig.shape_kind,
            cx,
            cy,
            r,
            float(rng.uniform(0, 2 * math.pi)),
            _shade(_jitter(sig.shape_color, rng, 18), light, cx, cy, w, h),
            _shade(sig.shape_outline, light, cx, cy, w, h),
        )
    for _ in range(int(rng.integers(2, 7))):
        col = _hsv(float(rng.uniform()), float(rng.uniform(0, 1)), float(rng.uniform(0, 1)))
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        r = float(rng.uniform(0.005, 0.03)) * w
        draw.ellipse((x - r, y - r, x + r, y + r), fill=col)
    tile = _noise_tile()
    ox, oy = int(rng.integers(0, tile.width - w + 1)), int(rng.integers(0, tile.height - h + 1))
    noise = tile.crop((ox, oy, ox + w, oy + h))
    return ImageChops.add(img, noise, scale=1.0, offset=-6)


def encode(img: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    """Encode `img` into bytes (JPEG at quality 85 unless told otherwise).

    Args:
        img: the image; for JPEG, modes JPEG cannot store (RGBA, P, ...) are converted to RGB.
        fmt: a Pillow format name.
        **params: Pillow save parameters (quality, subsampling, progressive, ...).
    """
    buf = io.BytesIO()
    if fmt == "JPEG":
        params.setdefault("quality", JPEG_QUALITY)
        if img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def encode_under(
    img: Image.Image, max_bytes: int, qualities: tuple[int, ...] = (88, 80, 70, 60, 50)
) -> bytes:
    """`img` as a JPEG at the first of `qualities` that fits in `max_bytes` (else the last)."""
    data = b""
    for q in qualities:
        data = encode(img, quality=q)
        if len(data) <= max_bytes:
            break
    return data


def make_photo(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """A deterministic photo-like RGB image: gradient, waves, shapes, blur and noise.

    Unlike `render_scene` it belongs to no series: every seed is an unrelated picture, with
    smooth regions, hard edges and sensor-like noise, which is what hashing, quality and
    near-duplicate checks need to be tested on.

    Args:
        seed: the picture (`numpy.random.default_rng` seed); the same seed, the same pixels.
        width: its width in pixels.
        height: its height in pixels.
    """
    rng = np.random.default_rng(seed)
    # Smooth parts are drawn at 1/8 scale and upsampled: fast, and still smooth.
    sw, sh = max(width // 8, 8), max(height // 8, 8)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    xx /= sw
    yy /= sh
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    arr = c0 * (1 - t[..., None]) + c1 * t[..., None]
    for _ in range(rng.integers(1, 4)):
        fx, fy = rng.uniform(0.5, 6, 2)
        wave = rng.uniform(10, 50) * np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 6))
        arr += wave[..., None] * rng.uniform(-1, 1, 3)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(3, 14)):
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, 2) * width)
        y0, y1 = sorted(rng.uniform(-0.1, 1.1, 2) * height)
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        elif shape == 1:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        else:
            pts = rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * (width, height)
            draw.polygon([(float(x), float(y)) for x, y in pts], fill=color)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.BoxBlur(float(rng.uniform(0.5, 4))))
    noise = rng.integers(-1, 2, (height, width, 1), dtype=np.int16) * np.int16(rng.integers(1, 12))
    out = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def decode_rgb(data: bytes) -> Image.Image:
    """Decode image bytes into an RGB image."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


#: Near-duplicate kinds `near_variant` understands.
NEAR_KINDS: tuple[str, ...] = (
    "near_jpeg",
    "near_resize",
    "near_crop",
    "near_brightness",
    "near_grayscale",
)


def near_variant(original: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """A near duplicate of a JPEG: the same picture through one lossy edit.

    Args:
        original: the original image's bytes.
        kind: one of `NEAR_KINDS`: re-encode at quality 30, resize to half, crop 10% of
            each dimension (split at random between the two sides), brightness ±15%, or
            grayscale.
        rng: the plant's random stream.
    """
    img = decode_rgb(original)
    w, h = img.size
    if kind == "near_jpeg":
        return encode(img, quality=30)
    if kind == "near_resize":
        return encode(img.resize((w // 2, h // 2), Image.Resampling.LANCZOS))
    if kind == "near_crop":
        cw, ch = round(w * 0.1), round(h * 0.1)
        left, top = int(rng.integers(0, cw + 1)), int(rng.integers(0, ch + 1))
        return encode(img.crop((left, top, left + w - cw, top + h - ch)))
    if kind == "near_brightness":
        factor = 1.15 if rng.uniform() < 0.5 else 0.85
        return encode(ImageEnhance.Brightness(img).enhance(factor))
    if kind == "near_grayscale":
        return encode(img.convert("L"))
    raise ValueError(f"unknown near-duplicate kind {kind!r}; expected one of {NEAR_KINDS}")


def near_size(kind: str, width: int, height: int) -> tuple[int, int]:
    """The pixel size `near_variant(kind)` produces from a `width`×`height` original."""
    if kind == "near_resize":
        return width // 2, height // 2
    if kind == "near_crop":
        return width - round(width * 0.1), height - round(height * 0.1)
    return width, height


# --- off-topic images (no series) -----------------------------------------------------------

#: Kinds of picture `offtopic_scene` draws: what image search returns beside a series' stills.
OFFTOPIC_KINDS: tuple[str, ...] = ("banner", "logo", "stock")
_WORDS = ("NEWS", "LIVE", "SALE", "TOP 10", "WATCH NOW", "BREAKING", "AWARDS", "PREMIERE",
          "STREAM", "NEW", "EXCLUSIVE", "TRAILER", "REVIEW", "RED CARPET", "CAST", "FAN ART")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def offtopic_scene(kind: str, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A picture of no series, of the kinds real image search mixes into a series' results.

    ``banner``: a text banner (a two-colour gradient, bands and large words); ``logo``: an
    emblem (a badge, a ring and a word) on a pale field; ``stock``: a generic photo-like scene
    (`make_photo`). All carry sensor-like noise, so none is junk by entropy or size; none uses
    a series' signature (`render_scene`).

    Args:
        kind: one of `OFFTOPIC_KINDS`.
        rng: this image's own random stream.
        width: image width in px.
        height: image height in px.
    """
    w, h = width, height
    if kind == "stock":
        img = make_photo(int(rng.integers(2**31)), w, h)
    elif kind in ("banner", "logo"):
        # A gradient under a lighting field like the scenes' (`_light_field`): it decides the
        # low frequencies a perceptual hash sees (their order, not their strength), so two
        # banners never hash alike.
        sw, sh = max(8, w // 8), max(8, h // 8)
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
        xx /= sw
        yy /= sh
        angle = float(rng.uniform(0, 2 * math.pi))
        t = np.cos(angle) * xx + np.sin(angle) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        if kind == "banner":
            c0 = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0.5, 1)), 0.35))
            c1 = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0.5, 1)), 0.95))
        else:
            c0 = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0, 0.15)), 0.97))
            c1 = np.array(_hsv(float(rng.uniform()), float(rng.uniform(0, 0.2)), 0.8))
        # A fainter field (0.6..1.0): the picture stays a graphic, the hash is its own.
        faint = 0.6 + 0.4 * (_light_field(rng, xx, yy) - 0.3) / 0.75
        arr = (c0 * (1 - t[..., None]) + c1 * t[..., None]) * faint[..., None]
        small = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        img = small.resize((w, h), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(img)
        ink = _hsv(float(rng.uniform()), float(rng.uniform(0.6, 1)), float(rng.uniform(0.1, 1)))
        if kind == "banner":
            for _ in range(int(rng.integers(1, 4))):
                y0 = float(rng.uniform(0, h * 0.9))
                band = _hsv(float(rng.uniform()), 0.9, float(rng.uniform(0.5, 1)))
                draw.rectangle((0, y0, w, y0 + float(rng.uniform(0.04, 0.14)) * h), fill=band)
            for _ in range(int(rng.integers(1, 4))):
                word = " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 3))))
                size = int(rng.uniform(0.08, 0.2) * h)
                x, y = float(rng.uniform(0, w * 0.4)), float(rng.uniform(0, h * 0.8))
                draw.text((x, y), word, fill=ink, font=_font(size),
                          stroke_width=max(1, size // 15), stroke_fill=(255, 255, 255))
        else:
            cx, cy = w / 2 + float(rng.uniform(-0.1, 0.1)) * w, h / 2
            r = float(rng.uniform(0.2, 0.32)) * min(w, h)
            sides = int(rng.integers(3, 9))
            rot = float(rng.uniform(0, 2 * math.pi))
            pts = [(cx + r * math.cos(rot + 2 * math.pi * i / sides),
                    cy + r * math.sin(rot + 2 * math.pi * i / sides)) for i in range(sides)]
            draw.polygon(pts, fill=ink)
            draw.ellipse((cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r * 0.6),
                         outline=(255, 255, 255), width=max(2, int(r * 0.08)))
            word = str(rng.choice(_WORDS))
            draw.text((cx, cy + r * 1.2), word, fill=ink, font=_font(int(h * 0.09)), anchor="mt")
    else:
        raise ValueError(f"unknown off-topic kind {kind!r}; expected one of {OFFTOPIC_KINDS}")
    tile = _noise_tile()
    ox, oy = int(rng.integers(0, tile.width - w + 1)), int(rng.integers(0, tile.height - h + 1))
    return ImageChops.add(img, tile.crop((ox, oy, ox + w, oy + h)), scale=1.0, offset=-6)


# --- junk ---------------------------------------------------------------------------------


def blank_jpeg(color: RGB, width: int = 640, height: int = 480) -> bytes:
    """A single-colour JPEG."""
    return encode(Image.new("RGB", (width, height), color))


def tiny_jpeg(img: Image.Image, size: int = 16) -> bytes:
    """`img` shrunk to a `size`×`size` JPEG."""
    return encode(img.resize((size, size), Image.Resampling.BOX))


def corrupt_jpeg(rng: np.random.Generator, n_bytes: int = 24_000) -> bytes:
    """A JPEG header (SOI + JFIF APP0) followed by random garbage: sniffs as JPEG, never decodes."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    head = b"\xff\xd8\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0
    body = rng.integers(0, 256, size=n_bytes, dtype=np.uint8).tobytes()
    # No 0xFF bytes at all, so no marker (SOF, SOS, EOI) is ever seen.
    return head + body.replace(b"\xff", b"\x00")


def html_page(title: str) -> bytes:
    """A small HTML document (served as `image/jpeg` by the junk plant)."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Image not found</title>'
        f"</head><body><h1>404</h1><p>The image for {title} was moved.</p></body></html>\n"
    ).encode()


def gif_bytes(img: Image.Image) -> bytes:
    """`img` as a single-frame GIF (adaptive palette)."""
    return encode(img.quantize(colors=128, method=Image.Quantize.MEDIANCUT), "GIF")


def cmyk_jpeg(img: Image.Image) -> bytes:
    """`img` as an (Adobe) CMYK JPEG."""
    return encode(img.convert("CMYK"))


def alpha_png(img: Image.Image, rng: np.random.Generator) -> bytes:
    """`img` as an RGBA PNG whose border fades to transparent."""
    w, h = img.size
    mask = Image.new("L", (w, h), 0)
    m = int(min(w, h) * float(rng.uniform(0.05, 0.15)))
    ImageDraw.Draw(mask).rounded_rectangle((m, m, w - m, h - m), radius=m, fill=255)
    rgba = img.convert("RGBA")
    rgba.putalpha(mask)
    return encode(rgba, "PNG", compress_level=1)


def webp_bytes(img: Image.Image) -> bytes:
    """`img` as a lossy WebP."""
    return encode(img, "WEBP", quality=80)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A decompression-bomb PNG: 1-bit grayscale, all black but one row, tiny on the wire.

    Built with zlib directly (the image is never allocated): `width`×`height` pixels decode to
    gigabytes in any RGB pipeline, but the file is ~100 KiB. Pillow refuses it on open with
    `Image.DecompressionBombError` (more than twice `Image.MAX_IMAGE_PIXELS`).
    """
    row_bytes = (width + 7) // 8
    zero_row = b"\x00" * (1 + row_bytes)  # filter byte 0 + pixels
    stripe_row = b"\x00" + b"\x55" * row_bytes
    comp = zlib.compressobj(9)
    parts = []
    batch = 512
    block = zero_row * batch
    done = 0
    while done < height:
        n = min(batch, height - done)
        if done <= height // 2 < done + n:
            rows = [zero_row] * n
            rows[height // 2 - done] = stripe_row
            parts.append(comp.compress(b"".join(rows)))
        else:
            parts.append(comp.compress(block if n == batch else zero_row * n))
        done += n
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_ish_block(rng: np.random.Generator, size: int = 65_536) -> bytes:
    """`size` bytes that start like a JPEG and continue as random entropy-coded-looking data."""
    head = corrupt_jpeg(rng, 0)
    body = rng.integers(0, 256, size=size - len(head), dtype=np.uint8).tobytes()
    return head + body
