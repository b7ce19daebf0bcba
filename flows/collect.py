"""The collect stage: search engines for each series' images, then download them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task, unmapped

from tv100.flows.runners import dask_threads
from tv100.storage.root import resolve_root
from tv100.storage.tables import read_table
from tv100.tasks.collect.download import (
    DownloadConfig,
    _download_group,
    _per_process,
    done_image_ids,
    download_task,
    plan_hits,
)
from tv100.tasks.collect.search import (
    DEFAULT_QUERY_TEMPLATE,
    SearchConfig,
    check_engines,
    merge_search_tables,
    search_task,
)
from tv100.tasks.report.artifacts import publish_collect_artifacts
from tv100.tasks.tables import write_tables_task
from tv100.tasks.web.http import HttpConfig

DEFAULT_ENGINES = ["bing", "google", "duckduckgo"]


@task(name="download-shards")
def download_shards_task(
    root_url: str, shards: list[list[dict[str, Any]]], config: DownloadConfig
) -> int:
    """Download a group of pending shards in this (Dask worker) process; images fetched.

    The same work `tv100.tasks.collect.download` gives one process of its own pool: uncached, resumable
    (every shard is written whole, named by its content).
    """
    return _download_group(shards, root_url, config)


def _download_on_dask(
    data: str, hits: pa.Table, config: DownloadConfig, threads: int
) -> dict[str, Any]:
    """The downloader's shards as mapped tasks, one group per Dask worker thread.

    The politeness limits are divided among the groups as among the downloader's own
    processes. `download_task` then finds nothing left to fetch: it compacts the shards
    into the `images` table and counts it, exactly as after its own run.
    """
    root = resolve_root(data).ensure()
    finished = done_image_ids(root)
    pending = [h for h in plan_hits(hits) if h["image_id"] not in finished]
    size = config.shard_size
    shards = [pending[i : i + size] for i in range(0, len(pending), size)]
    n = max(1, min(threads, len(shards)))
    each = _per_process(replace(config, processes=n))
    groups = [shards[i::n] for i in range(n) if shards[i::n]]
    downloaded_now = 0
    if groups:
        fetched = download_shards_task.map(unmapped(root.url), groups, unmapped(each))
        downloaded_now = sum(f.result() for f in fetched)
    summary = download_task(data, hits, replace(config, processes=1))
    return {**summary, "downloaded_now": downloaded_now}


@flow(name="collect")
def collect_flow(
    data: str = "./data",
    engines: list[str] | None = None,
    query_template: str = DEFAULT_QUERY_TEMPLATE,
    per_series_cap: int = 200,
    max_pages: int = 10,
    engine_urls: dict[str, str] | None = None,
    max_side: int = 512,
    image_timeout_s: float = 15.0,
    image_retries: int = 2,
    allow_hosts: list[str] | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Search every discovered series on each engine and download every image found.

    Args:
        data: data root holding the `series` table.
        engines: engine names (bing, google, duckduckgo); all by default.
        query_template: the query per series; the paper's ``"{title} TV Series"``.
        per_series_cap: most hits kept per series and engine.
        max_pages: most result pages per series and engine.
        engine_urls: engine name → origin, to point engines elsewhere (the sandbox).
        max_side: the stored images' longer side, at most.
        image_timeout_s: per-request time limit for image downloads.
        image_retries: extra attempts for transient image-download failures.
        allow_hosts: hosts admitted despite resolving to private addresses (the sandbox).
        refresh: search again now instead of using this week's cached results.
    """
    logger = get_run_logger()
    names = check_engines(engines or DEFAULT_ENGINES)
    urls = {f"{k}_url": v for k, v in (engine_urls or {}).items()}
    search_config = SearchConfig(
        query_template=query_template,
        per_series_cap=per_series_cap,
        max_pages=max_pages,
        **urls,
    )
    http = HttpConfig(allow_hosts=tuple(allow_hosts or ()))
    series = read_table(resolve_root(data), "series").select(
        ["series_id", "title", "original_title", "start_year"]
    )
    # One task per engine (each engine is one host, with its own politeness limits); the
    # parts put together equal a single search over every engine.
    searches = search_task.with_options(refresh_cache=refresh or None).map(
        unmapped(series.to_pylist()),
        [[name] for name in names],
        unmapped(search_config),
        unmapped(http),
    )
    found = merge_search_tables([f.result() for f in searches])
    hashes = write_tables_task(data, {"search_hits": found.hits, "search_pages": found.pages})
    download_config = DownloadConfig(
        max_side=max_side,
        http=HttpConfig(
            timeout_s=image_timeout_s,
            retries=image_retries,
            allow_hosts=tuple(allow_hosts or ()),
        ),
    )
    threads = dask_threads()
    if threads:
        downloaded = _download_on_dask(data, found.hits, download_config, threads)
    else:
        # Threads: one task; the downloader runs its own pool of worker processes.
        downloaded = download_task(data, found.hits, download_config)
    logger.info(
        "collect: %d hits from %d series; images by status %s",
        found.hits.num_rows,
        series.num_rows,
        downloaded["status_counts"],
    )
    publish_collect_artifacts(downloaded["status_counts"], found.pages)
    failed_pages = sum(1 for s in found.pages.column("status").to_pylist() if s != "ok")
    return {
        "hits": found.hits.num_rows,
        "search_pages": found.pages.num_rows,
        "failed_search_pages": failed_pages,
        "images": downloaded,
        "tables": hashes,
    }
