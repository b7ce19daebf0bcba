"""The collect stage's outcome: logged, published as artifacts, returned as `CollectResult`."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import get_run_logger

from tv100.tasks.collect.config import CollectResult, DownloadSummary
from tv100.tasks.collect.search import SearchTables
from tv100.tasks.report.artifacts import publish_collect_artifacts


def summarise_collect(
    found: SearchTables,
    downloaded: DownloadSummary,
    tables: Mapping[str, str],
    n_series: int,
) -> CollectResult:
    """Log the outcome, publish the collect artifacts and return the flow's result.

    Call it from the collect flow (it logs on the flow run's logger).

    Args:
        found: the search's tables.
        downloaded: the download's summary.
        tables: sha256 of each table the search wrote.
        n_series: series searched.
    """
    get_run_logger().info(
        "collect: %d hits from %d series; images by status %s",
        found.hits.num_rows,
        n_series,
        dict(downloaded.status_counts),
    )
    publish_collect_artifacts(downloaded.status_counts, found.pages)
    return CollectResult(
        hits=found.hits.num_rows,
        search_pages=found.pages.num_rows,
        failed_search_pages=found.failed_pages,
        images=downloaded,
        tables=dict(tables),
    )
