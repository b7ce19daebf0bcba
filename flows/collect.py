"""The collect stage: search engines for each series' images, then download them."""

from __future__ import annotations

from prefect import flow

from tv100.flows.runners import dask_threads
from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.collect.config import DOWNLOAD, SEARCH, CollectConfig, CollectResult
from tv100.tasks.collect.download import download_on_dask, download_task
from tv100.tasks.collect.search import read_series_task, search_each_engine
from tv100.tasks.collect.summary import summarise_collect
from tv100.tasks.collect.verify import verify_images_task
from tv100.tasks.prerequisites import check_root, require_inputs
from tv100.tasks.tables import write_tables_task


@flow(name="collect")
def collect_flow(
    data: str | None = None,
    engines: list[str] | None = None,
    query_template: str = SEARCH.query_template,
    per_series_cap: int = SEARCH.per_series_cap,
    max_pages: int = SEARCH.max_pages,
    engine_urls: dict[str, str] | None = None,
    max_side: int = DOWNLOAD.max_side,
    image_timeout_s: float = DOWNLOAD.http.timeout_s,
    image_retries: int = DOWNLOAD.http.retries,
    allow_hosts: list[str] | None = None,
    refresh: bool = False,
    download_shard_size: int = DOWNLOAD.shard_size,
    download_max_attempts: int = DOWNLOAD.max_attempts,
    download_retry_backoff_s: float = DOWNLOAD.retry_backoff_s,
    wait: bool = True,
) -> CollectResult:
    """Search every discovered series on each engine and download every image found.

    Before the download, the stored files of earlier runs are checked against their rows
    (`tv100.tasks.collect.verify`): a missing or changed file is downloaded again.

    Args:
        data: data root holding the `series` table (default ``$TV100_DATA``, else ./data).
        engines: engine names (bing, google, duckduckgo); all by default.
        query_template: the query per series; the paper's ``"{title} TV Series"``.
        per_series_cap: most hits kept per series and engine.
        max_pages: most result pages per series and engine.
        engine_urls: engine name → origin, to point engines elsewhere (a stand-in web).
        max_side: the stored images' longer side, at most.
        image_timeout_s: per-request time limit for image downloads.
        image_retries: extra attempts for transient image-download failures.
        allow_hosts: hosts admitted despite resolving to private addresses.
        refresh: search again now instead of using this week's cached results.
        download_shard_size: hits per download shard (the unit of resume).
        download_max_attempts: runs that may try one image; a transient failure (timeout,
            429, 5xx, connection error) is tried again by a later run, up to this many.
        download_retry_backoff_s: wait before a transiently failed image is tried again,
            doubled after each try.
        wait: if another run holds the data root, wait for it (False: refuse at once).
    """
    config = CollectConfig.from_options(
        engines=engines,
        engine_urls=engine_urls,
        query_template=query_template,
        per_series_cap=per_series_cap,
        max_pages=max_pages,
        max_side=max_side,
        image_timeout_s=image_timeout_s,
        image_retries=image_retries,
        download_shard_size=download_shard_size,
        download_max_attempts=download_max_attempts,
        download_retry_backoff_s=download_retry_backoff_s,
        allow_hosts=allow_hosts,
    )
    root = check_root(resolve_root(data))
    require_inputs(root, "collect")  # before the root is created
    with hold_root(root, wait=wait, what="collect"):  # one run per data root
        root.ensure()
        series = read_series_task(root)
        found = search_each_engine(
            series, config.engines, config.search, config.search_http, refresh=refresh
        )
        tables = write_tables_task(root, {"search_hits": found.hits, "search_pages": found.pages})
        # Stored files deleted or changed since their rows were written: rows dropped, so the
        # download below fetches those images again.
        verify_images_task(root)
        threads = dask_threads()
        if threads:
            # On Dask: the download shards as mapped tasks, one group per worker thread.
            downloaded = download_on_dask(root, found.hits, config.download, threads)
        else:
            # Threads: one task; the downloader runs its own pool of worker processes.
            downloaded = download_task(root, found.hits, config.download)
        return summarise_collect(found, downloaded, tables, len(series))
