"""Collect end to end on the sandbox with one engine that answers only bot checks.

The run does not fail: it ends with one line naming the engine and what it saw (logged and in
the result), the engine's pages are `blocked` rows of `search_pages`, and the other engines'
hits are kept and downloaded.
"""

from __future__ import annotations

import logging

import pytest

from tests.support.builds import SLOW_S, TIMEOUT_S, seed_series
from tv100.sandbox.engines import engine_urls
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table

CAP = 5


@pytest.fixture(scope="module")
def web():
    from tv100.sandbox.web import SandboxWeb

    with SandboxWeb(n_series=6, scale=0.1, slow_s=SLOW_S) as started:
        yield started


def _warnings_logged(flow_run_id) -> list[str]:
    """The flow run's warnings as stored by the Prefect API (what its UI shows), in order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=60)  # blocks until the queued records are sent
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            sort=LogSort.TIMESTAMP_ASC,
        )
    return [log.message for log in logs if log.level == logging.WARNING and not log.task_run_id]


def _seed_series(web, data: str) -> list[str]:
    """Three series with images on every engine, as the `series` table of `data`."""
    titles = [t for t in web.world.titles if web.catalog.for_series(t.series_id)][:3]
    assert len(titles) == 3
    return seed_series(data, titles)


def test_collect_keeps_the_other_engines_when_one_is_blocked(prefect_harness, web, tmp_path):
    from tv100.flows.collect import collect_flow

    data = str(tmp_path / "data")
    ids = _seed_series(web, data)
    state = collect_flow(
        data=data,
        engine_urls=engine_urls(web.base_url, {"google": "blocked"}),
        per_series_cap=CAP,
        image_timeout_s=TIMEOUT_S,
        image_retries=1,
        allow_hosts=[web.host_port],
        return_state=True,
    )
    result = state.result()
    root = DataRoot(data)
    hits = read_table(root, "search_hits")
    pages = read_table(root, "search_pages").to_pylist()
    # The other engines' hits are kept, and downloaded.
    assert set(hits.column("engine").to_pylist()) == {"bing", "duckduckgo"}
    assert set(hits.column("series_id").to_pylist()) == set(ids)
    assert result.hits == hits.num_rows > 0
    assert read_table(root, "images").num_rows == result.images.hits > 0
    # Google: one blocked page per series, saying what it was.
    google = [p for p in pages if p["engine"] == "google"]
    assert sorted(p["series_id"] for p in google) == sorted(ids)
    for p in google:
        assert (p["kind"], p["page"], p["status"], p["http_status"]) == (
            "results", 1, "blocked", 200
        )
        assert p["error_message"].startswith(
            "JavaScript challenge: Google's enable-JavaScript page"
        )
        assert (p["hits"], p["new_hits"]) == (None, None)
    others = [p for p in pages if p["engine"] != "google"]
    assert {p["status"] for p in others} <= {"ok", "results", "no_results"}
    assert result.failed_search_pages == 3
    # One clear line, in the result and as the flow run's last warning.
    line = (
        "google: all 3 result pages were blocked (JavaScript challenge); "
        f"kept {hits.num_rows:,} hits from bing, duckduckgo"
    )
    assert result.engine_warnings == (line,)
    assert _warnings_logged(state.state_details.flow_run_id)[-1] == line
