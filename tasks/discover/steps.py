"""The discover stage's Prefect tasks: thin wrappers over `datasets` and `crawl`, and the result.

Caching: the dataset download is cached for 20 hours (IMDb refreshes the files daily) and the
web crawl for six days (a weekly schedule re-crawls, a rerun the same day doesn't); the table
builders are cached on their inputs, the dataset files by content hash. A local dataset folder
is keyed on its files as they are now (`DatasetFilesPolicy`): replaced files are read again, a
missing folder is an error, never a cache hit. A crawl with failed requests is not cached
(`tv100.tasks.caching.refuse_cache`): the next run crawls again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy
from prefect.context import TaskRunContext
from prefect.utilities.hashing import hash_objects

from tv100.storage.root import DataRoot
from tv100.tasks.caching import refuse_cache
from tv100.tasks.discover.config import CrawlConfig, DiscoverResult, SeriesFilter
from tv100.tasks.discover.crawl import WebCrawl, crawl_web, series_from_web
from tv100.tasks.discover.datasets import (
    DatasetFetch,
    DatasetFile,
    fetch_dataset_files,
    local_files_stamp,
    series_from_datasets,
)
from tv100.tasks.discover.fetches import is_url, now_utc
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.retry import retry_if_transient

SERIES_CACHE = INPUTS + TASK_SOURCE


def failed_fetches(fetches: pa.Table) -> int:
    """`discover_fetches` rows of requests that did not succeed (status other than ``ok``)."""
    return sum(1 for s in fetches.column("status").to_pylist() if s != "ok")


@dataclass
class DatasetFilesPolicy(CachePolicy):
    """The dataset fetch's cache key: its inputs and source, and a local folder's files.

    For a local folder the key also holds each dataset file's size, times and inode
    (`tv100.tasks.discover.datasets.local_files_stamp`), read with one ``stat`` per file: a
    file replaced under the same name misses the cache and is hashed again, and the series
    built from it are cached on that hash. A folder or file that is missing gives no key at
    all: nothing is read from the cache and the fetch fails with its one-line error. A base
    URL is keyed on its inputs alone (the download revalidates with ETag when the key expires).
    """

    base: CachePolicy = field(default_factory=lambda: SERIES_CACHE)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """`base`'s key, with the local files' stamps for a folder; None for a missing one."""
        key = self.base.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        location = inputs.get("location")
        if key is None or not isinstance(location, str) or is_url(location):
            return key
        stamp = local_files_stamp(location)
        return None if stamp is None else hash_objects(key, stamp, raise_on_failure=True)


@task(
    name="fetch-imdb-datasets",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
    cache_policy=DatasetFilesPolicy(),
    cache_expiration=timedelta(hours=20),
)
def fetch_datasets_task(location: str, root: DataRoot, http: HttpConfig) -> DatasetFetch:
    """Local copies of the dataset files, revalidated (ETag) at most once a day.

    IMDb refreshes the files daily; a rerun within the day is a cache hit, and a
    `refresh` run revalidates at once (a 304 when nothing changed). A local folder is a
    cache hit only while its files are the same (`DatasetFilesPolicy`). A fixed error (a
    missing folder or file, a 404, a file over the cap) fails at once; a transient one is
    retried once more (resuming the partial download) after the HTTP layer's own retries.
    A failure is never cached.
    """
    return fetch_dataset_files(location, root, http)


@task(name="series-from-datasets", cache_policy=SERIES_CACHE)
def series_from_datasets_task(files: tuple[DatasetFile, ...], keep: SeriesFilter) -> pa.Table:
    """Cached on the files' content hashes, so unchanged datasets are a cache hit.

    DuckDB streams the files in bounded memory (`tv100.tasks.discover.imdb_datasets`).
    """
    return series_from_datasets(files, keep, now_utc())


@task(name="crawl-imdb-web", cache_policy=SERIES_CACHE, cache_expiration=timedelta(days=6))
def crawl_web_task(base_url: str, crawl: CrawlConfig, http: HttpConfig) -> WebCrawl:
    """Cached for six days, so a weekly schedule re-crawls and a rerun the same day doesn't.

    A crawl IMDb blocked raises `ImdbBlockedError` (a fixed `SourceError`): nothing is cached
    and the next run asks again. A crawl with failed requests (a title page that timed out,
    was blocked or unreadable) is used by this run but not cached: the next run crawls again.
    """
    result = crawl_web(base_url, crawl, http)
    failed = failed_fetches(result.fetches)
    if failed:
        refuse_cache(f"{failed} of {result.fetches.num_rows} IMDb requests failed")
    return result


@task(name="series-from-web", cache_policy=SERIES_CACHE)
def series_from_web_task(crawl: WebCrawl, keep: SeriesFilter) -> pa.Table:
    """The `series` table from a crawl; cached on the crawl and the filter."""
    return series_from_web(crawl, keep, now_utc())


def discover_result(
    series: pa.Table, fetches: pa.Table, tables: Mapping[str, str]
) -> DiscoverResult:
    """What a discover run did, from the tables it wrote.

    Args:
        series: the `series` table.
        fetches: the `discover_fetches` table.
        tables: ``{table name: sha256}`` as `write_tables_task` returned it.
    """
    kinds = Counter(series.column("kind").to_pylist())
    return DiscoverResult(
        series=series.num_rows,
        kinds=dict(kinds),
        fetches=fetches.num_rows,
        failed_fetches=failed_fetches(fetches),
        tables=dict(tables),
    )
