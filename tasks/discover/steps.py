"""The discover stage's Prefect tasks: thin wrappers over `datasets` and `crawl`, and the result.

Caching: the dataset download is cached for 20 hours (IMDb refreshes the files daily) and the
web crawl for six days (a weekly schedule re-crawls, a rerun the same day doesn't); the table
builders are cached on their inputs, the dataset files by content hash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import timedelta

import pyarrow as pa
from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from tv100.storage.root import DataRoot
from tv100.tasks.discover.config import CrawlConfig, DiscoverResult, SeriesFilter
from tv100.tasks.discover.crawl import WebCrawl, crawl_web, series_from_web
from tv100.tasks.discover.datasets import (
    DatasetFetch,
    DatasetFile,
    fetch_dataset_files,
    series_from_datasets,
)
from tv100.tasks.discover.fetches import now_utc
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.retry import retry_if_transient

SERIES_CACHE = INPUTS + TASK_SOURCE


@task(
    name="fetch-imdb-datasets",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
    cache_policy=SERIES_CACHE,
    cache_expiration=timedelta(hours=20),
)
def fetch_datasets_task(location: str, root: DataRoot, http: HttpConfig) -> DatasetFetch:
    """Local copies of the dataset files, revalidated (ETag) at most once a day.

    IMDb refreshes the files daily; a rerun within the day is a cache hit, and a
    `refresh` run revalidates at once (a 304 when nothing changed). A fixed error (a
    missing folder or file, a 404, a file over the cap) fails at once; a transient one is
    retried once more (resuming the partial download) after the HTTP layer's own retries.
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
    and the next run asks again.
    """
    return crawl_web(base_url, crawl, http)


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
    failed = sum(1 for s in fetches.column("status").to_pylist() if s != "ok")
    return DiscoverResult(
        series=series.num_rows,
        kinds=dict(kinds),
        fetches=fetches.num_rows,
        failed_fetches=failed,
        tables=dict(tables),
    )
