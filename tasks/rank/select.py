"""Class selection: keep the K series the models recognise worst (table `classes`).

`select_classes` turns one or several models' `zeroshot` rows into the `classes` table: a
series' accuracy is its best top-1 over the models (``aggregate="max"``: a series counts as
novel only if *every* model fails on it) or the mean; series with fewer than `min_images`
images are dropped (``too_few_images``, or ``too_few_relevant`` when enough were cleaned but
too few are relevant, `tv100.tasks.rank.relevance`); the `k` lowest accuracies among the
rest are kept (``hardest``), ties broken by series_id, the others dropped (``too_easy``).
Kept series get ``class_index`` 0..K-1 in series_id order, so the dataset's label ids do not
depend on the ranking. `summarize` reports the hardest and easiest series next to the chance
level, and `rank_result` the rank flow's whole result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task

from tv100.storage.schemas import CLASSES
from tv100.tasks.rank.config import (
    AGGREGATES,
    RankResult,
    SelectConfig,
    SelectionSummary,
    SeriesAccuracy,
)
from tv100.tasks.rank.zeroshot import RANK_CACHE, overall_top1


@dataclass(frozen=True)
class SeriesNovelty:
    """One series' accuracy over the models (`novelty`).

    Attributes:
        series_id: the series.
        title: its class name.
        accuracy: max (or mean) top-1 over the models; None when no model classified an
            image of it.
        n_images: the most images any model classified.
        models: the model keys, sorted.
    """

    series_id: str
    title: str | None
    accuracy: float | None
    n_images: int
    models: tuple[str, ...]


def novelty(zeroshot: pa.Table, aggregate: str = "max") -> list[SeriesNovelty]:
    """Per series, the accuracy ranked on: max (or mean) top-1 over the models.

    Returns:
        One `SeriesNovelty` per series, sorted by series_id.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r}; expected one of {AGGREGATES}")
    titles: dict[str, str | None] = {}
    accs: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    models = tuple(sorted(set(zeroshot.column("model_key").to_pylist())))
    for row in sorted(zeroshot.to_pylist(), key=lambda r: (r["series_id"], r["model_key"])):
        sid = row["series_id"]
        titles.setdefault(sid, row["title"])
        accs.setdefault(sid, [])
        counts[sid] = max(counts.get(sid, 0), int(row["n_images"]))
        if row["n_images"]:
            accs[sid].append(float(row["top1"]))
    out = []
    for sid in sorted(titles):
        values = accs[sid]
        acc: float | None
        if not values:
            acc = None
        elif aggregate == "max":
            acc = max(values)
        else:
            acc = float(np.mean(values))
        out.append(SeriesNovelty(sid, titles[sid], acc, counts[sid], models))
    return out


def select_classes(
    zeroshot: pa.Table,
    config: SelectConfig | None = None,
    image_counts: Mapping[str, int] | None = None,
    cleaned_counts: Mapping[str, int] | None = None,
) -> pa.Table:
    """Keep the `k` hardest series among those with enough images.

    Args:
        zeroshot: `ZEROSHOT` rows of one or more models over the same candidates.
        config: `SelectConfig` (k, min_images, aggregate).
        image_counts: cleaned images per series, when `zeroshot` was computed on a sample
            (default: the ``n_images`` zero-shot classified).
        cleaned_counts: cleaned images per series before relevance cleaning, when
            `image_counts` counts only the relevant ones: a series with at least
            `min_images` of these but fewer relevant is dropped as ``too_few_relevant``.

    Returns:
        The `CLASSES` table, one row per candidate series, sorted by series_id.
    """
    cfg = config or SelectConfig()
    rows = novelty(zeroshot, cfg.aggregate)
    if image_counts is not None:
        rows = [replace(r, n_images=int(image_counts.get(r.series_id, 0))) for r in rows]
    eligible = [r for r in rows if r.n_images >= max(1, cfg.min_images) and r.accuracy is not None]
    eligible.sort(key=lambda r: (r.accuracy, r.series_id))
    rank = {r.series_id: i + 1 for i, r in enumerate(eligible)}
    kept_ids = sorted(r.series_id for r in eligible[: cfg.k])
    class_index = {sid: i for i, sid in enumerate(kept_ids)}
    out = []
    for r in rows:
        sid = r.series_id
        if sid in class_index:
            reason = "hardest"
        elif sid in rank:
            reason = "too_easy"
        elif (
            cleaned_counts is not None
            and int(cleaned_counts.get(sid, 0)) >= max(1, cfg.min_images)
            and r.n_images < max(1, cfg.min_images)
        ):
            reason = "too_few_relevant"
        else:
            reason = "too_few_images"
        out.append(
            {
                "series_id": sid,
                "title": r.title,
                "class_index": class_index.get(sid),
                "kept": sid in class_index,
                "reason": reason,
                "rank": rank.get(sid),
                "accuracy": r.accuracy,
                "n_images": r.n_images,
                "aggregate": cfg.aggregate,
                "models": list(r.models),
            }
        )
    return pa.Table.from_pylist(out, schema=CLASSES)


def image_counts(images: pa.Table) -> dict[str, int]:
    """Cleaned images per series (``series_id`` column), sorted by series_id."""
    counts = Counter(images.column("series_id").to_pylist())
    return dict(sorted(counts.items()))


def summarize(classes: pa.Table, n: int = 5) -> SelectionSummary:
    """The hardest and easiest series next to the chance level.

    Args:
        classes: the `CLASSES` table.
        n: how many series to list at each end.

    Returns:
        A `SelectionSummary`; chance is 1 / number of candidates (the classes CLIP chose
        among).
    """
    rows = classes.to_pylist()
    ranked = sorted(
        (r for r in rows if r["accuracy"] is not None),
        key=lambda r: (r["accuracy"], r["series_id"]),
    )

    def brief(r: dict[str, Any]) -> SeriesAccuracy:
        return SeriesAccuracy(
            series_id=r["series_id"], title=r["title"], accuracy=r["accuracy"],
            kept=bool(r["kept"]), reason=r["reason"],
        )

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    kept = [r["accuracy"] for r in ranked if r["kept"]]
    dropped = [r["accuracy"] for r in ranked if not r["kept"]]
    return SelectionSummary(
        candidates=len(rows),
        kept=sum(1 for r in rows if r["kept"]),
        chance=1.0 / len(rows) if rows else None,
        kept_mean_accuracy=mean(kept),
        dropped_mean_accuracy=mean(dropped),
        hardest=tuple(brief(r) for r in ranked[:n]),
        easiest=tuple(brief(r) for r in ranked[::-1][:n]),
    )


def rank_result(classes: pa.Table, zeroshot: pa.Table, tables: Mapping[str, str]) -> RankResult:
    """The rank flow's result: `summarize`, each model's overall top-1, the table hashes."""
    keys = sorted(set(zeroshot.column("model_key").to_pylist()))
    return RankResult(
        selection=summarize(classes),
        overall_top1={key: overall_top1(zeroshot, key) for key in keys},
        tables=dict(tables),
    )


@task(name="select-classes", cache_policy=RANK_CACHE)
def select_task(
    zeroshot: pa.Table,
    config: SelectConfig | None = None,
    image_counts: dict[str, int] | None = None,
    cleaned_counts: dict[str, int] | None = None,
) -> pa.Table:
    """`select_classes`: a pure function of its inputs, so cached on them."""
    return select_classes(zeroshot, config, image_counts, cleaned_counts)
