"""The discover stage: IMDb (datasets or web pages) → the `series` table."""

from __future__ import annotations

from prefect import flow, get_run_logger

from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.buildconfig import discover_config
from tv100.tasks.discover.config import DISCOVER, DiscoverResult, Source
from tv100.tasks.discover.crawl import ImdbBlockedError
from tv100.tasks.discover.datasets import missing_files
from tv100.tasks.discover.steps import (
    crawl_web_task,
    discover_result,
    fetch_datasets_task,
    series_from_datasets_task,
    series_from_web_task,
)
from tv100.tasks.prerequisites import check_dataset_location, check_root
from tv100.tasks.report.artifacts import publish_discover_artifacts
from tv100.tasks.tables import write_tables_task
from tv100.tasks.web.config import MAX_FILE_BYTES


@flow(name="discover", log_prints=False)
def discover_flow(
    location: str,
    source: Source = DISCOVER.source,
    since: int = DISCOVER.since,
    min_votes: int | None = DISCOVER.min_votes,
    data: str | None = None,
    max_pages: int = DISCOVER.max_pages,
    locale: str | None = DISCOVER.locale,
    page_size: int | None = DISCOVER.page_size,
    allow_hosts: list[str] | None = None,
    refresh: bool = False,
    max_file_bytes: int = MAX_FILE_BYTES,
    wait: bool = True,
) -> DiscoverResult:
    """List TV series released after `since` and write the `series` table.

    Args:
        location: folder or base URL of the IMDb dataset files (source imdb-datasets), or
            the base URL of the IMDb site (source imdb-web).
        source: where to read from.
        since: keep series whose start year is greater than this ("released after 2021").
        min_votes: optionally drop series with fewer IMDb votes.
        data: data root, local path or fsspec URL (default ``$TV100_DATA``, else ./data).
        max_pages: cap on advanced-search pages (imdb-web).
        locale: IMDb locale prefix such as ``de`` (imdb-web).
        page_size: results per list page, when the site accepts ``count=`` (imdb-web).
        allow_hosts: hosts admitted despite resolving to private addresses (the sandbox).
        refresh: fetch sources again now instead of using today's cached copies.
        max_file_bytes: largest dataset file downloaded (streamed to disk; imdb-datasets).
        wait: if another run holds the data root, wait for it (False: refuse at once).

    Raises:
        SourceError: the location cannot be used (`tv100.tasks.web.errors`): one line naming
            it and what was expected; fixed errors are not retried.
        ImdbBlockedError: IMDb kept the imdb-web crawl off (a bot check, or robots.txt): the
            `discover_fetches` rows of the requests made are written first (the `series`
            table, if any, is left as it was).
    """
    config, http = discover_config(
        source=source, since=since, min_votes=min_votes, max_pages=max_pages, locale=locale,
        page_size=page_size, allow_hosts=allow_hosts, max_file_bytes=max_file_bytes,
    )
    root = check_root(resolve_root(data))
    check_dataset_location(config.source, location, root)  # before the root is created
    with hold_root(root, wait=wait, what="discover"):  # one run per data root
        root.ensure()
        if config.source == "imdb-datasets":
            fetch = fetch_datasets_task.with_options(refresh_cache=refresh or None)
            fetched = fetch(location, root, http)
            if missing_files(fetched.files):  # a cached download whose files were deleted since
                fetched = fetch_datasets_task.with_options(refresh_cache=True)(location, root, http)
            fetches = fetched.fetches
            series = series_from_datasets_task(fetched.files, config.filter)
        else:
            try:
                crawl = crawl_web_task.with_options(refresh_cache=refresh or None)(
                    location, config.crawl, http
                )
            except ImdbBlockedError as err:  # what was asked, and how IMDb answered, is kept
                write_tables_task(root, {"discover_fetches": err.fetches})
                raise
            fetches = crawl.fetches
            series = series_from_web_task(crawl, config.filter)
        tables = write_tables_task(root, {"series": series, "discover_fetches": fetches})
        result = discover_result(series, fetches, tables)
        get_run_logger().info("discover: %s series from %s (%s)", result.series, source, location)
        publish_discover_artifacts(fetches, series=result.series)
        return result
