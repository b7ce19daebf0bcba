"""The discover stage: IMDb (datasets or web pages) → the `series` table."""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from prefect import flow, get_run_logger

from tv100.tasks.discover.fetch import (
    crawl_web_task,
    fetch_datasets_task,
    series_from_datasets_task,
    series_from_web_task,
)
from tv100.tasks.report.artifacts import publish_discover_artifacts
from tv100.tasks.tables import write_tables_task
from tv100.tasks.web.http import HttpConfig

Source = Literal["imdb-datasets", "imdb-web"]


@flow(name="discover", log_prints=False)
def discover_flow(
    location: str,
    source: Source = "imdb-datasets",
    since: int = 2021,
    min_votes: int | None = None,
    data: str = "./data",
    max_pages: int = 200,
    locale: str | None = None,
    page_size: int | None = None,
    allow_hosts: list[str] | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """List TV series released after `since` and write the `series` table.

    Args:
        location: folder or base URL of the IMDb dataset files (source imdb-datasets), or
            the base URL of the IMDb site (source imdb-web).
        source: where to read from.
        since: keep series whose start year is greater than this ("released after 2021").
        min_votes: optionally drop series with fewer IMDb votes.
        data: data root (local path or fsspec URL).
        max_pages: cap on advanced-search pages (imdb-web).
        locale: IMDb locale prefix such as ``de`` (imdb-web).
        page_size: results per list page, when the site accepts ``count=`` (imdb-web).
        allow_hosts: hosts admitted despite resolving to private addresses (the sandbox).
        refresh: fetch sources again now instead of using today's cached copies.
    """
    logger = get_run_logger()
    config = HttpConfig(allow_hosts=tuple(allow_hosts or ()))
    if source == "imdb-datasets":
        fetch = fetch_datasets_task.with_options(refresh_cache=refresh or None)
        files, fetches = fetch(location, data, config)
        series = series_from_datasets_task(files, since, min_votes)
    else:
        crawl = crawl_web_task.with_options(refresh_cache=refresh or None)(
            location, since, config, max_pages, locale, page_size
        )
        fetches = crawl.fetches
        series = series_from_web_task(crawl, since, min_votes)
    hashes = write_tables_task(data, {"series": series, "discover_fetches": fetches})
    summary = _summary(series, fetches, hashes)
    logger.info("discover: %s series from %s (%s)", series.num_rows, source, location)
    publish_discover_artifacts(fetches, series=series.num_rows)
    return summary


def _summary(series: pa.Table, fetches: pa.Table, hashes: dict[str, str]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for k in series.column("kind").to_pylist():
        kinds[k] = kinds.get(k, 0) + 1
    failed = sum(1 for s in fetches.column("status").to_pylist() if s != "ok")
    return {
        "series": series.num_rows,
        "kinds": kinds,
        "fetches": fetches.num_rows,
        "failed_fetches": failed,
        "tables": hashes,
    }
