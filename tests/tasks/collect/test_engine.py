"""The paging fetcher of every engine, against the sandbox engines over HTTP."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest

from tests.tasks.collect.helpers import fetch, series_with_images
from tv100.sandbox.engines import engine_urls, register_engines
from tv100.sandbox.server import Request, Response, SandboxServer


def test_bing_pages_until_no_new_hits(world, catalog, engines):
    server, site = engines
    title = series_with_images(world, catalog, 25)[0]
    expected = site.results("bing", title.series_id)
    n = len(expected)
    result = fetch(
        server,
        "bing",
        f"{title.title} TV Series",
        base_url=f"{server.base_url}/bing",
        cap=10_000,
        max_pages=100,
        page_size=10,
    )
    assert [r.hit.image_url for r in result.hits] == [
        server.base_url + i.url_path for i in expected
    ]
    assert [r.rank for r in result.hits] == list(range(1, n + 1))
    assert [r.page for r in result.hits] == [i // 10 + 1 for i in range(n)]
    first = result.hits[0].hit
    assert (first.width, first.height, first.title) == (
        expected[0].width,
        expected[0].height,
        expected[0].title,
    )
    assert first.page_url == server.base_url + expected[0].page_path
    # Past the end Bing repeats its last page: one more request, nothing new, stop.
    pages = result.pages
    assert len(pages) == math.ceil(n / 10) + 1
    assert all(p.status == "results" and p.kind == "results" for p in pages)
    assert pages[-1].new_hits == 0 and pages[-1].hits and pages[-1].hits > 0
    assert "first=11" in pages[1].url and "count=10" in pages[1].url


def test_cap_and_max_pages_stop_paging(world, catalog, engines):
    server, _ = engines
    title = series_with_images(world, catalog, 40)[0]
    query = f"{title.title} TV Series"
    capped = fetch(server, "bing", query, base_url=f"{server.base_url}/bing", cap=15, page_size=10)
    assert len(capped.hits) == 15 and len(capped.pages) == 2
    assert capped.pages[-1].new_hits == 5
    limited = fetch(
        server, "google", query, base_url=f"{server.base_url}/google", max_pages=2, page_size=7
    )
    assert len(limited.pages) == 2 and len(limited.hits) == 14
    assert "start=7" in limited.pages[1].url and "tbm=isch" in limited.pages[1].url


def test_google_fetcher(world, catalog, engines):
    server, site = engines
    title = series_with_images(world, catalog, 20)[1]
    expected = site.results("google", title.series_id)
    result = fetch(
        server,
        "google",
        f"{title.title} TV Series",
        base_url=f"{server.base_url}/google",
        page_size=8,
        max_pages=100,
    )
    got = [r.hit for r in result.hits]
    assert [h.image_url for h in got] == [server.base_url + i.url_path for i in expected]
    assert [(h.width, h.height, h.title) for h in got] == [
        (i.width, i.height, i.title) for i in expected
    ]
    assert all(h.thumb_url and h.thumb_url.startswith(server.base_url) for h in got)
    # Past the end Google answers "did not match any image results": one more request.
    assert len(result.pages) == math.ceil(len(expected) / 8) + 1
    assert (result.pages[-1].hits, result.pages[-2].new_hits) == (0, len(expected) % 8 or 8)
    assert result.pages[-1].status == "no_results"
    assert {p.status for p in result.pages[:-1]} == {"results"}


def test_duckduckgo_vqd_flow(world, catalog, engines):
    server, site = engines
    title = series_with_images(world, catalog, 25)[2]
    query = f"{title.title} TV Series"
    expected = site.results("duckduckgo", title.series_id)
    result = fetch(
        server, "duckduckgo", query, base_url=f"{server.base_url}/ddg", page_size=5, max_pages=100
    )
    assert [r.hit.image_url for r in result.hits] == [
        server.base_url + i.url_path for i in expected
    ]
    token, *pages = result.pages
    assert (token.kind, token.page, token.status, token.hits) == ("token", 0, "ok", None)
    assert "iax=images" in token.url
    # Paging follows "next" (the token added back) and stops where the engine gives none.
    assert len(pages) == math.ceil(len(expected) / 5)
    assert all(f"vqd={site.vqd(query)}" in p.url for p in pages)
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))
    assert "s=5" in pages[1].url


def test_unknown_query_gives_empty_pages(engines):
    server, _ = engines
    for engine, path in (("bing", "bing"), ("google", "google"), ("duckduckgo", "ddg")):
        result = fetch(
            server, engine, "No Such Show TV Series", base_url=f"{server.base_url}/{path}"
        )
        assert result.hits == []
        last = result.pages[-1]
        assert (last.status, last.hits, last.error_message) == ("no_results", 0, None)


def test_failed_pages_are_recorded_and_logged(world, catalog, engines, caplog):
    server, site = engines
    title = series_with_images(world, catalog, 25)[0]
    query = f"{title.title} TV Series"

    def flaky(request: Request) -> Response | None:  # Bing whose second page is gone
        if request.query.get("first", "1") != "1":
            return Response.text("gone", status=404)
        return site.handle_bing(dataclasses.replace(request, path="/bing/images/search"))

    server.register("/flaky/", flaky)
    with caplog.at_level(logging.WARNING, logger="tv100.search"):
        result = fetch(server, "bing", query, base_url=f"{server.base_url}/flaky", page_size=10)
        missing = fetch(server, "duckduckgo", query, base_url=f"{server.base_url}/nowhere")
    assert len(result.hits) == 10
    assert [(p.page, p.status, p.http_status) for p in result.pages] == [
        (1, "results", 200),
        (2, "http_error", 404),
    ]
    assert missing.hits == []
    assert [(p.kind, p.status, p.http_status) for p in missing.pages] == [
        ("token", "http_error", 404)
    ]
    messages = [r.getMessage() for r in caplog.records if r.name == "tv100.search"]
    assert any("results page 2 failed: http_error 404" in m for m in messages)
    assert any("token page 0 failed" in m for m in messages)


class FakeImage:
    def __init__(self, url_path: str, n: int) -> None:
        self.url_path = url_path
        self.title = f"still {n}"
        self.page_path = f"/page/{n}.html"
        self.width = 640 + n
        self.height = 480


class FakeCatalog:
    """Same interface as `ImageCatalog.for_series`; one series lists URL variants."""

    def __init__(self, series_id: str) -> None:
        self.series_id = series_id

    def for_series(self, series_id: str) -> list[FakeImage]:
        if series_id != self.series_id:
            return []
        paths = ["/img/a.jpg", "/img/b", "/img/a.jpg#zoom", "/img/c.png", "/img/b#x", "/img/d"]
        return [FakeImage(p, n) for n, p in enumerate(paths)]


def test_dedup_by_canonical_url_across_pages(world):
    title = world.titles[0]
    with SandboxServer(world) as server:
        register_engines(server, world, FakeCatalog(title.series_id))
        result = fetch(
            server,
            "bing",
            f"{title.title} TV Series",
            base_url=f"{server.base_url}/bing",
            page_size=2,
        )
        base = server.base_url
    assert [(r.rank, r.page, r.hit.image_url) for r in result.hits] == [
        (1, 1, f"{base}/img/a.jpg"),
        (2, 1, f"{base}/img/b"),
        (3, 2, f"{base}/img/c.png"),  # page 2 also listed a.jpg#zoom: a repeat
        (4, 3, f"{base}/img/d"),  # page 3 also listed b#x
    ]
    assert [(p.hits, p.new_hits) for p in result.pages] == [(2, 2), (2, 1), (2, 1), (2, 0)]


@pytest.mark.parametrize(
    "engine,variant,kind,reason",
    [
        ("google", "blocked", "results", "JavaScript challenge: Google's enable-JavaScript page"),
        ("google", "consent", "results", "consent wall: Google's consent page"),
        ("bing", "blocked", "results", "captcha: Bing's captcha"),
        ("bing", "consent", "results", "consent wall: Bing's cookie consent"),
        ("duckduckgo", "blocked", "token", "captcha: DuckDuckGo's bot challenge"),
    ],
)
def test_a_blocked_engine_stops_at_its_first_page(world, catalog, engines, caplog, engine,
                                                  variant, kind, reason):
    server, _ = engines
    title = series_with_images(world, catalog, 25)[0]
    base = engine_urls(server.base_url, {engine: variant})[engine]
    with caplog.at_level(logging.WARNING, logger="tv100.search"):
        result = fetch(server, engine, f"{title.title} TV Series", base_url=base, max_pages=5)
    assert result.hits == []
    (page,) = result.pages
    assert (page.kind, page.status, page.hits, page.new_hits) == (kind, "blocked", None, None)
    assert page.http_status in (200, 202)  # DuckDuckGo answers its challenge with a 202
    assert page.error_message and page.error_message.startswith(reason)
    assert result.failed_pages == [page]
    assert any(f"failed: blocked {page.http_status} {reason}" in r.getMessage()
               for r in caplog.records)


def test_google_basic_layout_pages_through_thumbnails(world, catalog, engines):
    server, site = engines
    title = series_with_images(world, catalog, 45)[0]
    expected = site.results("google", title.series_id)
    base = engine_urls(server.base_url, {"google": "basic"})["google"]
    result = fetch(server, "google", f"{title.title} TV Series", base_url=base, max_pages=100)
    hits = [r.hit for r in result.hits]
    # 20 per page whatever `num` says; each hit the thumbnail and its source page.
    assert [h.page_url for h in hits] == [
        server.base_url + (i.page_path or "/") for i in expected
    ]
    assert all(h.thumbnail_only and h.image_url == h.thumb_url for h in hits)
    assert all("/google/images?q=tbn:" in h.image_url for h in hits)
    assert [h.title for h in hits] == [i.title for i in expected]
    assert (hits[0].width, hits[0].height) == (None, None)
    assert [r.page for r in result.hits] == [n // 20 + 1 for n in range(len(expected))]
    statuses = [p.status for p in result.pages]
    assert statuses == ["results"] * math.ceil(len(expected) / 20) + ["no_results"]
