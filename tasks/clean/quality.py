"""Junk filters: cheap per-image checks that explain every image they flag.

Checks (each a ``<check>_score`` column and an ``is_<check>`` flag):

- ``blank``: largest per-channel pixel standard deviation (0..~128); a blank or
  near-uniform image (placeholder, solid colour, "image not available") scores near 0.
- ``low_entropy``: Shannon entropy of the grey-level histogram in bits (0..8); logos,
  two-colour graphics and text on a flat background score low; photos score ~6..8.
- ``too_small``: the short side in pixels.
- ``extreme_aspect``: long side / short side (>= 1); banners, strips and panoramas.

Pixel statistics are computed on a nearest-neighbour subsample (at most
`QualityConfig.analysis_size` pixels a side): unlike an averaging resize, subsampling keeps
the distribution of pixel values, which is what std and entropy describe. Transparent
images are judged as they are shown, composited over white.

A user-maintained exclusion list (``image_id_or_url,reason``; CSV or Parquet) flags images
by id or URL (``is_excluded``, ``exclude_reason``). ``is_junk`` is any flag, exclusion
included; ``reason`` names the failed checks, comma-joined, in the column order above
followed by ``excluded``. An image Pillow cannot decode is a row with
``status="decode_error"``, null scores, ``is_junk=True`` and ``reason="decode_error"``, so
``WHERE NOT is_junk`` selects exactly the usable images.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from io import BytesIO
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from tv100.storage.schemas import QUALITY
from tv100.tasks.clean.config import QualityConfig
from tv100.tasks.errors import error_text
from tv100.tasks.parallel import map_ordered
from tv100.tasks.progress import track

CHECKS = ("blank", "low_entropy", "too_small", "extreme_aspect")
EXCLUSION_COLUMNS = ("image_id_or_url", "reason")
DEFAULT_EXCLUDE_REASON = "on the exclusion list"
#: The junk filters' progress artifact (`tv100.tasks.progress`).
QUALITY_PROGRESS = "clean-quality-progress"


def _subsample(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / max(w, h)
    if scale >= 1.0:
        return img
    return img.resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.NEAREST
    )


def _as_rgb(img: Image.Image) -> Image.Image:
    """RGB as displayed: transparent pixels composited over white."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if not has_alpha:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    white.alpha_composite(rgba)
    return white.convert("RGB")


def pixel_scores(
    img: Image.Image, analysis_size: int = QualityConfig.analysis_size
) -> tuple[float, float, float]:
    """``(blank_score, low_entropy_score, chroma_score)`` of an image: max channel std, grey
    entropy, and the mean spread of a pixel's channels (max - min; ~0 when grayscale)."""
    rgb = _as_rgb(_subsample(img, analysis_size))
    arr = np.asarray(rgb, dtype=np.float64)
    pixels = arr.reshape(-1, 3)
    std = float(pixels.std(axis=0).max())
    chroma = float((pixels.max(axis=1) - pixels.min(axis=1)).mean()) + 0.0
    hist = np.asarray(rgb.convert("L").histogram(), dtype=np.float64)
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    return std, entropy, chroma


def _empty_row() -> dict[str, Any]:
    row: dict[str, Any] = {"width": None, "height": None, "chroma_score": None}
    for check in CHECKS:
        row[f"{check}_score"] = None
        row[f"is_{check}"] = None
    return row


def assess_image(
    source: str | os.PathLike[str] | bytes, config: QualityConfig | None = None
) -> dict[str, Any]:
    """Scores and flags of one image; never raises.

    Args:
        source: a file path or the encoded bytes.
        config: thresholds (`QualityConfig` defaults when None).

    Returns:
        A dict with the `QUALITY` columns except ``image_id``, ``is_excluded`` and
        ``exclude_reason`` (the exclusion list is applied by `assess_images`).
    """
    cfg = config or QualityConfig()
    row = _empty_row()
    try:
        data = source if isinstance(source, bytes) else _read(source)
        with Image.open(BytesIO(data)) as img:
            w, h = img.size
            row["width"], row["height"] = w, h
            std, entropy, chroma = pixel_scores(img, cfg.analysis_size)
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ...)
        row.update(
            is_junk=True,
            reason="decode_error",
            status="decode_error",
            error_message=error_text(err),
        )
        return row
    short, long = min(w, h), max(w, h)
    aspect = long / short if short > 0 else float("inf")
    row.update(
        chroma_score=chroma,
        blank_score=std,
        is_blank=std < cfg.min_std,
        low_entropy_score=entropy,
        is_low_entropy=entropy < cfg.min_entropy,
        too_small_score=short,
        is_too_small=short < cfg.min_side,
        extreme_aspect_score=aspect,
        is_extreme_aspect=aspect > cfg.max_aspect,
    )
    failed = [c for c in CHECKS if row[f"is_{c}"]]
    row.update(
        is_junk=bool(failed), reason=",".join(failed) or None, status="ok", error_message=None
    )
    return row


def _read(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_exclusions(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an exclusion list: ``{image_id_or_url: reason}``.

    The file is Parquet (by extension ``.parquet``/``.pq``) or CSV with a header row,
    columns ``image_id_or_url`` and ``reason`` (the reason may be empty). Blank keys are
    skipped; a key listed twice keeps its first reason.

    Raises:
        ValueError: naming the file and the missing column.
    """
    p = os.fspath(path)
    if p.lower().endswith((".parquet", ".pq")):
        records: list[dict[str, Any]] = pq.read_table(p).to_pylist()
        columns = set(records[0]) if records else set(pq.read_schema(p).names)
    else:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or [])
            records = list(reader)
    if EXCLUSION_COLUMNS[0] not in columns:
        raise ValueError(
            f"exclusion list {p!r} has no column {EXCLUSION_COLUMNS[0]!r}; expected a header "
            f"row '{','.join(EXCLUSION_COLUMNS)}' (found: {sorted(columns)})"
        )
    out: dict[str, str] = {}
    for rec in records:
        key = (rec.get(EXCLUSION_COLUMNS[0]) or "").strip()
        if key and key not in out:
            out[key] = (rec.get("reason") or "").strip() or DEFAULT_EXCLUDE_REASON
    return out


def _assess_item(item: tuple[str, str | bytes, QualityConfig]) -> dict[str, Any]:
    image_id, source, cfg = item
    return {"image_id": image_id, **assess_image(source, cfg)}


def _assess_crash(
    item: tuple[str, str | bytes, QualityConfig], err: BaseException
) -> dict[str, Any]:
    return {
        "image_id": item[0],
        **_empty_row(),
        "is_junk": True,
        "reason": "decode_error",
        "status": "decode_error",
        "error_message": f"quality worker process died: {error_text(err)}",
    }


def assess_images(
    items: Sequence[tuple[str, str | os.PathLike[str] | bytes]],
    config: QualityConfig | None = None,
    exclusions: Mapping[str, str] | str | os.PathLike[str] | None = None,
    *,
    urls: Mapping[str, str] | None = None,
    workers: int = 1,
) -> pa.Table:
    """The `quality` table for many images, one row per item in input order.

    Args:
        items: ``(image_id, path or bytes)`` pairs.
        config: thresholds.
        exclusions: ``{image_id_or_url: reason}`` or a path for `load_exclusions`.
        urls: ``{image_id: source URL}``, so URL entries of the exclusion list match.
        workers: processes (1 = in this process).

    Returns:
        A table with the `QUALITY` schema.
    """
    cfg = config or QualityConfig()
    if exclusions is None:
        excl: Mapping[str, str] = {}
    elif isinstance(exclusions, Mapping):
        excl = exclusions
    else:
        excl = load_exclusions(exclusions)
    work = [(str(i), s if isinstance(s, bytes) else os.fspath(s), cfg) for i, s in items]
    with track("quality", len(work), "images", QUALITY_PROGRESS) as tracker:
        rows = map_ordered(_assess_item, work, workers, on_crash=_assess_crash, progress=tracker)
    url_of = urls or {}
    for row in rows:
        image_id = row["image_id"]
        url = url_of.get(image_id)
        reason = excl.get(image_id)
        if reason is None and url is not None:
            reason = excl.get(url.strip())
        row["is_excluded"] = reason is not None
        row["exclude_reason"] = reason
        if reason is not None:
            row["is_junk"] = True
            row["reason"] = ",".join(filter(None, [row["reason"], "excluded"]))
    return pa.Table.from_pylist(rows, schema=QUALITY)
