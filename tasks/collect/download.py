"""Collect, second half: download every search hit politely and store it normalised.

`download_hits` plans one download per series and image URL, skips those with a final row
already, downloads the rest (in worker processes when there is more than one shard) and
compacts the shards into one sorted `images` table. Under Dask, `download_on_dask` runs
the shards as mapped tasks instead. Per image: `tv100.tasks.collect.normalise`; shards:
`tv100.tasks.collect.shards`; worker processes: `tv100.tasks.collect.workers`.

A transient failure (timeout, 429, 5xx, connection error) is not final: a later run tries it
again after a backoff, up to `DownloadConfig.max_attempts` tries, and its new row replaces
the old one (`keep_latest_tries`).

Politely, by default: an image its host's robots.txt disallows is never requested and
ends as a `robots_disallowed` row (`tv100.tasks.web.robots`, read once per host and
process); every host outside `HttpConfig.allow_hosts` gets a few requests per second, one
rate shared by all worker processes (`tv100.tasks.web.politeness`); an image whose response
(or source page, `tv100.tasks.collect.optout`) opts out of AI use ends as `opted_out`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from typing import cast

import pyarrow as pa
from prefect import task, unmapped

from tv100.storage.root import DataRoot
from tv100.storage.tables import compact, done_shards, read_table, table_exists, write_table
from tv100.tasks.collect.config import DownloadConfig, DownloadSummary
from tv100.tasks.collect.shards import (
    SORT_KEYS,
    Hit,
    ProgressFn,
    download_pending,
    download_shards,
    latest_rows,
    pending_hits,
    plan_hits,
    to_retry,
)
from tv100.tasks.collect.workers import download_in_processes, per_worker_config, shard_groups
from tv100.tasks.progress import track

log = logging.getLogger("tv100.download")

#: The downloader's progress artifact.
DOWNLOAD_PROGRESS = "collect-download-progress"


def _counts(images: pa.Table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in images.column("status").to_pylist():
        counts[s] = counts.get(s, 0) + 1
    return counts


def status_counts(root: DataRoot) -> dict[str, int]:
    """`images` rows per status ({} before the first download)."""
    return _counts(read_table(root, "images")) if table_exists(root, "images") else {}


def keep_latest_tries(root: DataRoot) -> pa.Table:
    """The `images` table with one row per image, its latest try (`latest_rows`).

    `compact` keeps every row, so after a retry the table holds the image's old row too:
    it is rewritten without them (sorted as compaction sorts). A table with one row per
    image is left as it is, so a run that retried nothing writes nothing.

    Returns:
        The table as it now is.
    """
    images = read_table(root, "images")
    latest = latest_rows(images)
    if latest.num_rows < images.num_rows:
        latest = latest.sort_by([(k, "ascending") for k in SORT_KEYS])
        write_table(root, "images", latest)
    return latest


def download_hits(
    hits: pa.Table,
    root: DataRoot,
    config: DownloadConfig | None = None,
    progress: ProgressFn | None = None,
    now: datetime | None = None,
) -> DownloadSummary:
    """Download every image without a final `images` row; compact; count rows by status.

    Images whose last try failed transiently are tried again once their backoff has
    passed (`tv100.tasks.collect.shards.pending_hits`); their new rows replace the old.

    Args:
        hits: the `search_hits` table (series_id, engine, rank, image_url at least).
        root: the data root (image store and tables).
        config: downloader knobs.
        progress: called with (hits done, hits total): once with those done before this
            run, then as shards complete.
        now: the time retries are due by (default now; tests set it).

    Returns:
        Hits planned, images downloaded now (and of them retried), `images` rows by
        status, and how many a later run will try again.
    """
    config = config or DownloadConfig()
    plan = plan_hits(hits)
    pending = pending_hits(plan, root, config, now)
    retried = sum(1 for h in pending if h["attempts"])
    if retried:
        log.info("trying %d images again after a transient failure", retried)
    fetched = 0
    already = len(plan) - len(pending)
    if progress:
        progress(already, len(plan))
    if pending and config.processes > 1 and len(pending) > config.shard_size:
        fetched = download_in_processes(pending, root, config, len(plan), already, progress)
    elif pending:
        fetched = asyncio.run(
            download_pending(
                pending, root, replace(config, processes=1), len(plan), already, progress
            )
        )
    if done_shards(root, "images"):
        compact(root, "images", SORT_KEYS)
    if not table_exists(root, "images"):
        return DownloadSummary(len(plan), fetched, {})
    images = keep_latest_tries(root)
    later = to_retry(images, config)
    return DownloadSummary(len(plan), fetched, _counts(images), retried, later)


@task(name="download-images")
def download_task(root: DataRoot, hits: pa.Table, config: DownloadConfig) -> DownloadSummary:
    """Uncached on purpose: the downloader resumes by itself and a rerun fetches nothing.

    Shows its progress (`tv100.tasks.progress`: the terminal display, the progress artifact
    ``collect-download-progress``, a summary line), moved as shards complete.
    """
    with track("download", None, "images", DOWNLOAD_PROGRESS) as tracker:
        return download_hits(hits, root.ensure(), config, tracker)


@task(name="download-shards")
def download_shards_task(root: DataRoot, shards: list[list[Hit]], config: DownloadConfig) -> int:
    """Download a group of pending shards in this (Dask worker) process; images fetched.

    The same work `download_hits` gives one process of its own pool: uncached, resumable
    (every shard is written whole, named by its content).
    """
    return download_shards(shards, root, config)


def download_on_dask(
    root: DataRoot, hits: pa.Table, config: DownloadConfig, threads: int
) -> DownloadSummary:
    """The downloader's shards as mapped tasks, one group per Dask worker thread.

    Call it from a flow running on Dask. The politeness limits are divided among the
    groups as among the downloader's own processes. `download_task` then finds nothing
    left to fetch: it compacts the shards into the `images` table and counts it, exactly
    as after its own run.

    Args:
        root: the data root.
        hits: the `search_hits` table.
        config: the run's settings.
        threads: Dask worker threads (the most groups run at once).
    """
    root = root.ensure()
    pending = pending_hits(plan_hits(hits), root, config)
    n_shards = -(-len(pending) // config.shard_size)
    n = max(1, min(threads, n_shards))
    groups = shard_groups(pending, config.shard_size, n)
    downloaded_now = 0
    if groups:
        each = per_worker_config(config, n)
        fetched = download_shards_task.map(unmapped(root), groups, unmapped(each))
        downloaded_now = sum(f.result() for f in fetched)
    summary = cast(DownloadSummary, download_task(root, hits, replace(config, processes=1)))
    retried = sum(1 for h in pending if h["attempts"])
    return replace(summary, downloaded_now=downloaded_now, retried=retried)
