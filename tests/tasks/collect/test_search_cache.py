"""A search with failed requests is not cached: the engine down, then up, gives hits.

Before the fix a search whose engine was down was cached for six days as a normal result:
the next run sent no request and still had no hit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow

from tests.support.reliability import record
from tests.tasks.collect.helpers import http_for, series_with_images
from tv100.sandbox.engines import engine_urls
from tv100.sandbox.server import Request, Response, SandboxServer
from tv100.tasks.collect.config import SearchConfig
from tv100.tasks.collect.search import SearchTables, search_each_engine
from tv100.tasks.web.config import HttpConfig

pytestmark = pytest.mark.usefixtures("prefect_harness")

RESULTS_PATH = "/bing/images/search"


@flow(name="search-cache-test")
def search_flow(
    series: list[dict[str, Any]], config: SearchConfig, http: HttpConfig
) -> SearchTables:
    """The collect flow's search step, alone."""
    return search_each_engine(series, ["bing"], config, http)


def _down(request: Request) -> Response:
    return Response.text("the engine is down for maintenance\n", status=503)


@pytest.fixture
def bing(engines) -> Iterator[tuple[SandboxServer, Any]]:
    """The sandbox server and its engine site; bing's handler is put back after the test."""
    server, site = engines
    yield server, site
    server.register("/bing/", site.handle_bing)


def _requests(server: SandboxServer) -> int:
    return sum(RESULTS_PATH in line for line in server.request_log)


def test_a_search_that_failed_is_searched_again(world, catalog, bing):
    server, site = bing
    picked = series_with_images(world, catalog, 10)[:2]
    series = [{"series_id": t.series_id, "title": t.title} for t in picked]
    config = SearchConfig.from_engine_urls(engine_urls(server.base_url), per_series_cap=10)
    http = http_for(server, retries=0)

    server.register("/bing/", _down)  # the same URL, the engine down
    before = _requests(server)
    down = search_flow(series, config, http)
    assert _requests(server) > before
    assert down.hits.num_rows == 0 and down.failed_pages == len(series)
    assert {p["http_status"] for p in down.pages.to_pylist()} == {503}

    server.register("/bing/", site.handle_bing)  # up again, at the same URL
    before = _requests(server)
    up = search_flow(series, config, http)
    assert _requests(server) > before, "the failed search was replayed from the cache"
    assert up.failed_pages == 0
    assert up.hits.num_rows == 10 * len(series)
    record("cache", "search engine down (HTTP 503) for a run, then up",
           "not cached: the next run searched again and got its hits")

    # A search without failures is cached: the next run sends no request, same hits.
    before = _requests(server)
    again = search_flow(series, config, http)
    assert _requests(server) == before
    assert again.hits.equals(up.hits)
