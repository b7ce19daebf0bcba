"""What the review page shows: the kept classes, each with its images ordered by suspicion.

`load_review` reads the rank stage's kept classes (table `classes`, in class order) with
their IMDb title and start year (`series`); the cleaned images of each, found as the rank
and train stages find them (`tv100.tasks.clean.cleaned.cleaned_images`), the ones the scorer
called irrelevant included, since a human may overrule it; the scorer's verdict on each
(`relevance`: its automatic decision and reason, before any review, its scores and the
series it suspects; every image ``keep`` and unscored when the table is missing); and each
image's latest human decision (`tv100.tasks.review.decisions.latest_reviews`).

Images are ordered by suspicion (`suspicion_key`): the scorer's ``irrelevant`` first, then
the lowest label-quality `score` (unscored last), then the highest `outlier_score`, then
image_id. `read_image` gives an image's bytes and content type.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table, table_exists
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.review.decisions import latest_reviews

#: The scorer's decisions (table `relevance`); an image it did not score is kept.
KEEP, IRRELEVANT = "keep", "irrelevant"
#: Content types of the image formats a browser shows, by their leading bytes. Anything
#: else is served as bytes (never as a type a browser would run, such as SVG or HTML).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
OCTET_STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Review:
    """What the review page shows, and what its server needs to serve it.

    Attributes:
        classes: the kept classes, JSON-ready (`review_classes` describes them).
        paths: image_id -> the image's file, relative to the data root, for every image
            shown (the server serves these and no other).
        auto: image_id -> the scorer's decision on it, ``keep`` or ``irrelevant``.
    """

    classes: list[dict[str, Any]]
    paths: dict[str, str]
    auto: dict[str, str]


def _number(value: Any) -> float | None:
    """A finite float, else None (JSON has no NaN)."""
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def suspicion_key(image: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key of an image dict (`review_classes`): most suspicious first."""
    score, outlier = image["score"], image["outlier_score"]
    return (
        image["auto_decision"] != IRRELEVANT,
        score is None,
        score if score is not None else 0.0,
        outlier is None,
        -outlier if outlier is not None else 0.0,
        image["image_id"],
    )


def _series(root: DataRoot) -> dict[str, tuple[str | None, int | None]]:
    """series_id -> (IMDb title, start year); empty without a `series` table."""
    if not table_exists(root, "series"):
        return {}
    t = read_table(root, "series")
    return {
        sid: (title, year)
        for sid, title, year in zip(t.column("series_id").to_pylist(),
                                    t.column("title").to_pylist(),
                                    t.column("start_year").to_pylist(), strict=True)
    }


def _column(table: pa.Table, name: str) -> list[Any]:
    """A column's values, all None when the table lacks it (written before it existed)."""
    if name in table.column_names:
        return table.column(name).to_pylist()
    return [None] * table.num_rows


def _relevance(root: DataRoot, image_ids: pa.Array) -> dict[str, dict[str, Any]]:
    """image_id -> the scorer's verdict on it (before review), for `image_ids`."""
    if not table_exists(root, "relevance"):
        return {}
    t = read_table(root, "relevance")
    t = t.filter(pc.is_in(t.column("image_id"), value_set=image_ids))
    out: dict[str, dict[str, Any]] = {}
    for image_id, decision, reason, auto_d, auto_r, score, outlier, suspected in zip(
        t.column("image_id").to_pylist(), _column(t, "decision"), _column(t, "reason"),
        _column(t, "auto_decision"), _column(t, "auto_reason"), _column(t, "score"),
        _column(t, "outlier_score"), _column(t, "suspected_series_id"), strict=True,
    ):
        # `decision` is final (reviews applied); `auto_decision` is the scorer's own.
        auto, why = (auto_d, auto_r) if auto_d is not None else (decision, reason)
        out[image_id] = {
            "auto_decision": IRRELEVANT if auto == IRRELEVANT else KEEP,
            "auto_reason": why if auto == IRRELEVANT else None,
            "score": _number(score),
            "outlier_score": _number(outlier),
            "suspected_series_id": suspected,
        }
    return out


def load_review(root: DataRoot) -> Review:
    """The kept classes with their images, ready for the page (see the module docstring).

    Raises:
        FileNotFoundError: no `classes` table (run the rank stage first) or no `images`.
    """
    if not table_exists(root, "classes"):
        raise FileNotFoundError(
            f"table 'classes' not found under {root.url!r}; run `tv100 rank` first"
        )
    classes = read_table(root, "classes").filter(pc.field("kept"))
    kept = sorted(
        classes.to_pylist(),
        key=lambda c: (c["class_index"] is None, c["class_index"] or 0, c["series_id"]),
    )
    series = _series(root)
    images = cleaned_images(root)
    images = images.filter(pc.is_in(images.column("series_id"),
                                     value_set=pa.array([c["series_id"] for c in kept],
                                                        pa.string())))
    ids = images.column("image_id")
    verdicts = _relevance(root, ids)
    reviews = latest_reviews(root)
    reviews = reviews.filter(pc.is_in(reviews.column("image_id"), value_set=ids))
    human = {r["image_id"]: r for r in reviews.to_pylist()}

    unscored = {"auto_decision": KEEP, "auto_reason": None, "score": None,
                "outlier_score": None, "suspected_series_id": None}
    by_series: dict[str, list[dict[str, Any]]] = {c["series_id"]: [] for c in kept}
    paths: dict[str, str] = {}
    auto: dict[str, str] = {}
    for image_id, series_id, path in zip(ids.to_pylist(), images.column("series_id").to_pylist(),
                                         images.column("path").to_pylist(), strict=True):
        verdict = dict(verdicts.get(image_id, unscored))
        suspected = verdict["suspected_series_id"]
        if suspected == series_id:
            verdict["suspected_series_id"] = suspected = None
        h = human.get(image_id)
        by_series[series_id].append({
            "image_id": image_id,
            **verdict,
            "suspected_title": series.get(suspected, (suspected, None))[0] if suspected else None,
            "review": h["decision"] if h else None,
            "reviewer": h["reviewer"] if h else None,
            "decided_at": h["decided_at"].isoformat() if h else None,
        })
        if path:
            paths[image_id] = path
        auto[image_id] = verdict["auto_decision"]

    out = []
    for c in kept:
        shown = sorted(by_series[c["series_id"]], key=suspicion_key)
        title, year = series.get(c["series_id"], (None, None))
        reasons = Counter(i["auto_reason"] or "unknown" for i in shown
                          if i["auto_decision"] == IRRELEVANT)
        out.append({
            "series_id": c["series_id"],
            "title": title or c["title"] or c["series_id"],
            "start_year": year,
            "class_index": c["class_index"],
            "reason": c["reason"],
            "accuracy": _number(c["accuracy"]),
            "n_images": len(shown),
            "auto_irrelevant": sum(reasons.values()),
            "auto_reasons": dict(sorted(reasons.items())),
            "images": shown,
        })
    return Review(classes=out, paths=paths, auto=auto)


def review_classes(root: DataRoot) -> list[dict[str, Any]]:
    """The kept classes the page shows, in class order.

    Each class: series_id, title (IMDb's), start_year, class_index, reason and accuracy (as
    ranked), n_images, auto_irrelevant (how many the scorer called irrelevant), auto_reasons
    (their count per reason) and images, most suspicious first (`suspicion_key`). Each
    image: image_id, auto_decision (``keep`` | ``irrelevant``), auto_reason, score,
    outlier_score, suspected_series_id and suspected_title (another series it looks like,
    else None), and its latest human decision: review (``accept`` | ``reject`` | None),
    reviewer, decided_at (ISO 8601).

    Raises:
        FileNotFoundError: no `classes` table (run the rank stage first) or no `images`.
    """
    return load_review(root).classes


def content_type(data: bytes) -> str:
    """The content type of an image's bytes, by its leading bytes (`_MAGIC`)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return OCTET_STREAM


def read_image(root: DataRoot, image_id: str, paths: Mapping[str, str]) -> tuple[bytes, str]:
    """An image's bytes and content type.

    Args:
        root: the data root.
        image_id: the image.
        paths: image_id -> file relative to the data root (`Review.paths`): only these
            images are read.

    Raises:
        KeyError: `image_id` is not one of `paths`.
        OSError: its file cannot be read.
    """
    data = ImageStore(root).read(paths[image_id])
    return data, content_type(data)
