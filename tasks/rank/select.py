"""Class selection: keep the K series the models recognise worst (table `classes`).

`select_classes` turns one or several models' `zeroshot` rows into the `classes` table.
Series with fewer than `min_images` images are dropped (``too_few_images``, or
``too_few_relevant`` when enough were cleaned but too few are relevant,
`tv100.tasks.rank.relevance`); the others are *eligible* and ranked by `aggregate`
(`tv100.tasks.rank.config.SelectConfig`):

- ``max``: a series' accuracy is its best top-1 over the models (a series counts as novel
  only if *every* model fails on it); ``mean``: the mean top-1. The `k` lowest accuracies
  are kept (``hardest``), ties broken by series_id, the others dropped (``too_easy``).
- ``all`` and ``vote`` (the consensus aggregates): a model finds a series *unseen* when its
  top-1 is at or below the seen threshold (`seen_threshold`). A series qualifies when every
  model that classified it finds it unseen (``all``) or at least `min_unseen` models do
  (``vote``). Eligible series are ranked qualifying first, then by the number of models
  that find them unseen (most first), then by mean top-1 (lowest first), then series_id;
  the first `k` qualifying ones are kept (``hardest``), the other qualifying ones dropped as
  ``too_easy`` and the eligible ones that do not qualify as ``seen``; fewer than `k` are
  kept when fewer qualify. The accuracy recorded is the mean top-1.

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
    CONSENSUS,
    SEEN_FLOOR,
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
        accuracy: max (or mean) top-1 over the models (the mean for ``all`` and ``vote``);
            None when no model classified an image of it.
        n_images: the most images any model classified.
        models: the model keys, sorted.
        n_models: the models that classified an image of it.
        n_unseen: of them, those whose top-1 is at or below the seen threshold (None unless
            the aggregate is ``all`` or ``vote``).
    """

    series_id: str
    title: str | None
    accuracy: float | None
    n_images: int
    models: tuple[str, ...]
    n_models: int = 0
    n_unseen: int | None = None


def default_seen_threshold(n_classes: int) -> float:
    """Top-1 at or below which a model finds a series unseen: ``max(2 / n_classes, 0.1)``.

    Twice chance among the candidates, never below `SEEN_FLOOR` (the rerank flow's rule,
    `tv100.tasks.snapshots.rerank.default_threshold`).

    Raises:
        ValueError: `n_classes` below 1.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes!r}; expected at least 1")
    return max(2.0 / n_classes, SEEN_FLOOR)


def seen_threshold(zeroshot: pa.Table, threshold: float | None = None) -> float:
    """The seen threshold one selection applies to every model.

    Args:
        zeroshot: `ZEROSHOT` rows.
        threshold: the configured one (`SelectConfig.seen_threshold`); None: the default
            for the candidates the models chose among (the largest ``n_classes``).
    """
    if threshold is not None:
        return float(threshold)
    sizes = [int(n) for n in zeroshot.column("n_classes").to_pylist()]
    return default_seen_threshold(max(sizes)) if sizes else SEEN_FLOOR


def novelty(
    zeroshot: pa.Table, aggregate: str = "max", threshold: float | None = None
) -> list[SeriesNovelty]:
    """Per series, the accuracy ranked on: max (or mean) top-1 over the models.

    Args:
        zeroshot: `ZEROSHOT` rows of one or more models.
        aggregate: one of `AGGREGATES`; ``all`` and ``vote`` rank on the mean and count the
            models that find each series unseen.
        threshold: the seen threshold of ``all`` and ``vote`` (`seen_threshold`).

    Returns:
        One `SeriesNovelty` per series, sorted by series_id.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate={aggregate!r}; expected one of {AGGREGATES}")
    bar = seen_threshold(zeroshot, threshold) if aggregate in CONSENSUS else None
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
        unseen = None if bar is None else sum(1 for v in values if v <= bar)
        out.append(SeriesNovelty(sid, titles[sid], acc, counts[sid], models, len(values), unseen))
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
        config: `SelectConfig` (k, min_images, aggregate, min_unseen, seen_threshold).
        image_counts: cleaned images per series, when `zeroshot` was computed on a sample
            (default: the ``n_images`` zero-shot classified).
        cleaned_counts: cleaned images per series before relevance cleaning, when
            `image_counts` counts only the relevant ones: a series with at least
            `min_images` of these but fewer relevant is dropped as ``too_few_relevant``.

    Returns:
        The `CLASSES` table, one row per candidate series, sorted by series_id. With
        ``all`` or ``vote`` its rows also carry ``seen_threshold``, ``min_unseen`` (the
        models that had to find the series unseen) and ``n_unseen``; null otherwise.

    Raises:
        ValueError: ``vote`` with `min_unseen` above the number of models in `zeroshot`.
    """
    cfg = config or SelectConfig()
    consensus = cfg.aggregate in CONSENSUS
    rows = novelty(zeroshot, cfg.aggregate, cfg.seen_threshold)
    bar = seen_threshold(zeroshot, cfg.seen_threshold) if consensus else None
    n_models = len(set(zeroshot.column("model_key").to_pylist()))
    votes = cfg.votes_needed(n_models) if consensus else None
    if image_counts is not None:
        rows = [replace(r, n_images=int(image_counts.get(r.series_id, 0))) for r in rows]

    def needed(r: SeriesNovelty) -> int | None:
        """Models that must find `r` unseen: each that classified it (all), or `votes`."""
        return r.n_models if cfg.aggregate == "all" else votes

    def qualifies(r: SeriesNovelty) -> bool:
        return not consensus or (r.n_unseen or 0) >= (needed(r) or 0)

    eligible = [r for r in rows if r.n_images >= max(1, cfg.min_images) and r.accuracy is not None]
    if consensus:
        eligible.sort(key=lambda r: (not qualifies(r), -(r.n_unseen or 0), r.accuracy,
                                     r.series_id))  # fmt: skip
    else:
        eligible.sort(key=lambda r: (r.accuracy, r.series_id))
    rank = {r.series_id: i + 1 for i, r in enumerate(eligible)}
    kept_ids = sorted(r.series_id for r in eligible[: cfg.k] if qualifies(r))
    class_index = {sid: i for i, sid in enumerate(kept_ids)}
    out = []
    for r in rows:
        sid = r.series_id
        if sid in class_index:
            reason = "hardest"
        elif sid in rank:
            reason = "too_easy" if qualifies(r) else "seen"
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
                "seen_threshold": bar,
                "min_unseen": needed(r) if consensus else None,
                "n_unseen": r.n_unseen,
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


def rank_result(
    classes: pa.Table,
    zeroshot: pa.Table,
    tables: Mapping[str, str],
    embedded_now: Mapping[str, int] | None = None,
) -> RankResult:
    """The rank flow's result: `summarize`, each model's overall top-1, the table hashes,
    and how many images each model encoded in this run."""
    keys = sorted(set(zeroshot.column("model_key").to_pylist()))
    return RankResult(
        selection=summarize(classes),
        overall_top1={key: overall_top1(zeroshot, key) for key in keys},
        tables=dict(tables),
        embedded_now=dict(embedded_now or {}),
    )


@task(name="select-classes", cache_policy=RANK_CACHE)
def select_task(
    zeroshot: pa.Table,
    config: SelectConfig | None = None,
    image_counts: dict[str, int] | None = None,
    cleaned_counts: dict[str, int] | None = None,
) -> pa.Table:
    """`select_classes` (any aggregate, consensus columns included): a pure function of
    its inputs, so cached on them."""
    return select_classes(zeroshot, config, image_counts, cleaned_counts)
