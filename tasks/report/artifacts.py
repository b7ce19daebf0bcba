"""Prefect artifacts: what each stage did, readable in the UI (a run's "Artifacts" tab).

Plain functions, called by the flows at the end of each stage. Each ``*_rows`` function
builds the rows of one table from the stage's own tables (pure, testable without
Prefect); each ``publish_*`` function publishes them as Prefect table artifacts under a
fixed key, so the UI's Artifacts page keeps one versioned entry per key:

=================================  ======================================================
key                                a row is
=================================  ======================================================
``discover-fetches-by-status``     a fetch status of the discover stage and its counts
``collect-images-by-status``       an `images` status (ok, timeout, ...) and its count
``collect-search-pages-by-status`` an engine and request status of the search pages
``clean-removals-by-reason``       a reason the clean stage removed images for
``rank-hardest-series``            a series CLIP recognises worst zero-shot
``rank-easiest-series``            a series CLIP recognises best zero-shot
``train-metrics``                  a metric of a trained or evaluated model
=================================  ======================================================

Long stages publish a progress artifact as well (`tv100.tasks.progress`: the downloader's
``collect-download-progress``, ``clean-hash-progress``, ...; `progress_reporter` for others).

Publishing never fails a stage: an artifact that cannot be created (no API, a server
error) is logged as a warning and its function returns None.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeAlias, cast
from uuid import UUID

import pyarrow as pa

from tv100.tasks.collect.pages import READ_STATUSES
from tv100.tasks.progress import ArtifactProgress, ProgressFn
from tv100.tasks.train.config import RECIPES

log = logging.getLogger("tv100.artifacts")


class ArtifactKey(StrEnum):
    """The fixed key of each stage's table artifact (one versioned entry per key in the UI)."""

    DISCOVER = "discover-fetches-by-status"
    COLLECT = "collect-images-by-status"
    SEARCH_PAGES = "collect-search-pages-by-status"
    CLEAN = "clean-removals-by-reason"
    HARDEST = "rank-hardest-series"
    EASIEST = "rank-easiest-series"
    METRICS = "train-metrics"


Rows = list[dict[str, Any]]
TableLike: TypeAlias = "pa.Table | Sequence[Mapping[str, Any]]"


# --- rows (pure) --------------------------------------------------------------------------


def _records(table: TableLike | None) -> list[dict[str, Any]]:
    if table is None:
        return []
    if isinstance(table, pa.Table):
        return table.to_pylist()
    return [dict(r) for r in table]


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}%" if total else "0.0%"


def _clean_value(v: Any) -> Any:
    """JSON-friendly cell: floats rounded (NaN/inf as None), other objects as text."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return str(v)


def count_rows(values: Iterable[str | None], label: str = "status") -> Rows:
    """Counts of each value: ``{label, count, share}`` rows, most frequent first.

    A missing value (None or empty) counts as ``"unknown"``; ties sort by value.
    """
    counts: dict[str, int] = {}
    for v in values:
        key = v or "unknown"
        counts[key] = counts.get(key, 0) + 1
    return counts_to_rows(counts, label)


def counts_to_rows(counts: Mapping[str, int], label: str = "status") -> Rows:
    """``{label, count, share}`` rows from a mapping of counts, most frequent first."""
    total = sum(counts.values())
    return [
        {label: k, "count": n, "share": _share(n, total)}
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def discover_rows(fetches: TableLike) -> Rows:
    """Discover's requests by status: ``status, fetches, records, share``.

    `fetches` is the `discover_fetches` table (``status`` and ``records`` columns);
    ``records`` sums the records parsed from the fetches with that status.
    """
    rows = _records(fetches)
    counts: dict[str, int] = {}
    records: dict[str, int] = {}
    for r in rows:
        status = r.get("status") or "unknown"
        counts[status] = counts.get(status, 0) + 1
        records[status] = records.get(status, 0) + int(r.get("records") or 0)
    return [
        {"status": row["status"], "fetches": row["count"],
         "records": records[row["status"]], "share": row["share"]}
        for row in counts_to_rows(counts)
    ]


def collect_rows(status_counts: Mapping[str, int]) -> Rows:
    """The `images` table by status: ``status, images, share``, most frequent first."""
    return [
        {"status": r["status"], "images": r["count"], "share": r["share"]}
        for r in counts_to_rows(status_counts)
    ]


def search_page_rows(pages: TableLike) -> Rows:
    """Search requests by engine and status: ``engine, status, pages, hits``."""
    acc: dict[tuple[str, str], list[int]] = {}
    for r in _records(pages):
        key = (r.get("engine") or "unknown", r.get("status") or "unknown")
        cur = acc.setdefault(key, [0, 0])
        cur[0] += 1
        cur[1] += int(r.get("new_hits") or 0)
    return [
        {"engine": e, "status": s, "pages": n, "hits": h}
        for (e, s), (n, h) in sorted(acc.items(), key=lambda kv: (kv[0][0], -kv[1][0], kv[0][1]))
    ]


def search_pages_description(rows: Rows) -> str:
    """The description of ``collect-search-pages-by-status``: requests, and how many failed.

    A request failed unless its status is in `tv100.tasks.collect.pages.READ_STATUSES`
    (a ``results`` or ``no_results`` page, or a token page read, ``ok``): failed requests,
    ``blocked`` and ``unknown_layout`` pages count.

    Args:
        rows: the `search_page_rows`.
    """
    total = sum(r["pages"] for r in rows)
    failed = sum(r["pages"] for r in rows if r["status"] not in READ_STATUSES)
    return f"**Collect**: {total} search requests, {failed} failed."


def clean_rows(quality: TableLike, duplicates: TableLike) -> Rows:
    """Removals by reason: ``stage, reason, images``.

    ``quality`` rows: each junk check that failed (``too_small``, ``blank``,
    ``low_entropy``, ``extreme_aspect``, ``decode_error``, ``excluded``); an image failing
    several checks counts under each. ``duplicates`` rows: dropped duplicates by
    ``kind/scope`` (e.g. ``phash/within_series``); duplicates moved to the train split are
    kept, so not listed.
    """
    junk: dict[str, int] = {}
    for r in _records(quality):
        if not r.get("is_junk"):
            continue
        for reason in (r.get("reason") or "unknown").split(","):
            reason = reason.strip() or "unknown"
            junk[reason] = junk.get(reason, 0) + 1
    dup: dict[str, int] = {}
    for r in _records(duplicates):
        if (r.get("action") or "drop") != "drop":
            continue
        key = f"{r.get('kind') or 'unknown'}/{r.get('scope') or 'unknown'}"
        dup[key] = dup.get(key, 0) + 1
    rows: Rows = []
    for stage, counts in (("quality", junk), ("duplicates", dup)):
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append({"stage": stage, "reason": k, "images": n})
    return rows


RANK_COLUMNS = ("n_images", "top1", "top5", "mean_true_prob", "confused_with", "confused_title")


def rank_rows(
    zeroshot: TableLike,
    series: TableLike | None = None,
    n: int = 10,
    model_key: str | None = None,
) -> tuple[Rows, Rows]:
    """The `n` hardest and `n` easiest series for CLIP zero-shot, per model.

    Args:
        zeroshot: one row per (series, model): ``series_id`` and ``top1`` required;
            ``model_key``, ``title``, ``n_images``, ``top5``, ``mean_true_prob``,
            ``confused_with``, ``confused_title`` shown when present.
        series: the `series` table, for titles (``series_id``, ``title``).
        n: rows per end, per model.
        model_key: only this model (default: every model, each ranked on its own).

    Returns:
        ``(hardest, easiest)``. Hardest: lowest top-1 first, ties by lower mean true-class
        probability, then series_id; easiest: the reverse order. Each row has ``rank``
        (1 = hardest, resp. easiest), ``model_key``, ``series_id``, ``title`` and the
        columns above that exist.
    """
    if n < 1:
        raise ValueError(f"n={n!r}; expected at least 1")
    titles = {r["series_id"]: r.get("title") for r in _records(series)}
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in _records(zeroshot):
        key = r.get("model_key") or ""
        if model_key is not None and key != model_key:
            continue
        if r.get("top1") is None or (isinstance(r["top1"], float) and math.isnan(r["top1"])):
            continue
        by_model.setdefault(key, []).append(r)

    def score(r: dict[str, Any]) -> tuple[float, float]:
        p = r.get("mean_true_prob")
        return float(r["top1"]), float(p) if p is not None else 0.0

    def row(rank: int, r: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"rank": rank, "model_key": r.get("model_key"),
                               "series_id": r["series_id"],
                               "title": r.get("title") or titles.get(r["series_id"])}
        for c in RANK_COLUMNS:
            if c in r:
                out[c] = _clean_value(r[c])
        return out

    hardest: Rows = []
    easiest: Rows = []
    for key in sorted(by_model):
        rs = by_model[key]
        asc = sorted(rs, key=lambda r: (*score(r), r["series_id"]))
        desc = sorted(rs, key=lambda r: (-score(r)[0], -score(r)[1], r["series_id"]))
        hardest += [row(i + 1, r) for i, r in enumerate(asc[:n])]
        easiest += [row(i + 1, r) for i, r in enumerate(desc[:n])]
    return hardest, easiest


METRIC_COLUMNS = ("run_id", "model_key", "recipe", "split", "metric", "value", "hyperparameters")


def metrics_rows(metrics: TableLike) -> Rows:
    """The `metrics` table, sorted (model, recipe in pipeline order, split, metric, run).

    Columns: ``model_key, recipe, split, metric, value, run_id, hyperparameters`` (those
    present); values rounded to 4 decimals.
    """
    rows = _records(metrics)

    def order(r: dict[str, Any]) -> tuple[Any, ...]:
        recipe = r.get("recipe") or ""
        pos = RECIPES.index(recipe) if recipe in RECIPES else len(RECIPES)
        return (str(r.get("model_key") or ""), pos, recipe, str(r.get("split") or ""),
                str(r.get("metric") or ""), str(r.get("run_id") or ""))

    cols = ["model_key", "recipe", "split", "metric", "value", "run_id", "hyperparameters"]
    present = [c for c in cols if any(c in r for r in rows)]
    return [{c: _clean_value(r.get(c)) for c in present} for r in sorted(rows, key=order)]


# --- publishing ---------------------------------------------------------------------------


def publish_table(key: str, rows: Rows, description: str | None = None) -> UUID | None:
    """Publish `rows` as a table artifact under `key`; None (and a warning) on failure.

    An empty `rows` still publishes (an empty table says "nothing happened").
    """
    from prefect.artifacts import create_table_artifact

    try:
        artifact_id = create_table_artifact(  # type: ignore[call-arg]
            table=rows, key=str(key), description=description, _sync=True
        )
        return cast(UUID, artifact_id)
    except Exception as err:  # never fail a stage over a report
        log.warning("could not publish artifact %r: %s: %s", key, type(err).__name__, err)
        return None


def publish_discover_artifacts(fetches: TableLike, series: int | None = None) -> UUID | None:
    """Discover: ``discover-fetches-by-status`` from the `discover_fetches` table."""
    rows = discover_rows(fetches)
    total = sum(r["fetches"] for r in rows)
    failed = sum(r["fetches"] for r in rows if r["status"] != "ok")
    desc = f"**Discover**: {total} fetches, {failed} failed"
    if series is not None:
        desc += f"; {series} series kept"
    return publish_table(ArtifactKey.DISCOVER, rows, desc + ".")


def publish_collect_artifacts(
    status_counts: Mapping[str, int], search_pages: TableLike | None = None
) -> dict[ArtifactKey, UUID | None]:
    """Collect: ``collect-images-by-status`` (and ``collect-search-pages-by-status``).

    Args:
        status_counts: `images` rows per status (the downloader's ``status_counts``).
        search_pages: the `search_pages` table, for requests by engine and status.
    """
    rows = collect_rows(status_counts)
    total = sum(status_counts.values())
    ok = status_counts.get("ok", 0)
    out = {
        ArtifactKey.COLLECT: publish_table(
            ArtifactKey.COLLECT, rows,
            f"**Collect**: {total} images, {ok} downloaded ok ({_share(ok, total)}).",
        )
    }
    if search_pages is not None:
        prow = search_page_rows(search_pages)
        out[ArtifactKey.SEARCH_PAGES] = publish_table(
            ArtifactKey.SEARCH_PAGES, prow, search_pages_description(prow)
        )
    return out


def publish_clean_artifacts(
    quality: TableLike,
    duplicates: TableLike,
    images: int | None = None,
    cleaned: int | None = None,
) -> UUID | None:
    """Clean: ``clean-removals-by-reason`` from the `quality` and `duplicates` tables.

    Args:
        images: images the stage looked at (downloaded ok), for the description.
        cleaned: images left after cleaning, for the description.
    """
    rows = clean_rows(quality, duplicates)
    desc = "**Clean**: removals by reason (an image may have several)"
    if images is not None and cleaned is not None:
        desc += f"; {images} images in, {cleaned} kept, {images - cleaned} removed"
    return publish_table(ArtifactKey.CLEAN, rows, desc + ".")


def publish_rank_artifacts(
    zeroshot: TableLike,
    series: TableLike | None = None,
    n: int = 10,
    model_key: str | None = None,
) -> dict[ArtifactKey, UUID | None]:
    """Rank: ``rank-hardest-series`` and ``rank-easiest-series`` (see `rank_rows`)."""
    hardest, easiest = rank_rows(zeroshot, series, n=n, model_key=model_key)
    which = f" for {model_key}" if model_key else ""
    return {
        ArtifactKey.HARDEST: publish_table(
            ArtifactKey.HARDEST, hardest,
            f"**Rank**: the {n} series CLIP recognises worst zero-shot{which} (lowest top-1).",
        ),
        ArtifactKey.EASIEST: publish_table(
            ArtifactKey.EASIEST, easiest,
            f"**Rank**: the {n} series CLIP recognises best zero-shot{which} (highest top-1).",
        ),
    }


def publish_metrics_artifact(metrics: TableLike) -> UUID | None:
    """Train: ``train-metrics``, the `metrics` table (see `metrics_rows`)."""
    rows = metrics_rows(metrics)
    models = len({r.get("model_key") for r in rows})
    return publish_table(
        ArtifactKey.METRICS, rows, f"**Train**: {len(rows)} metrics over {models} model(s)."
    )


def progress_reporter(key: str, description: str | None = None) -> ProgressFn:
    """A progress artifact for a long stage, and the ``(done, total)`` callback that moves it.

    `tv100.tasks.progress.ArtifactProgress`: created at 0 % in a flow or task run, updated at
    most every `tv100.tasks.progress.ARTIFACT_INTERVAL_S` and at 100 %; failures are logged
    once and then ignored. A stage with a terminal display and a summary line as well uses
    `tv100.tasks.progress.track` instead.
    """
    return ArtifactProgress(key, description)
