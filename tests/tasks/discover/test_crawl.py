"""The imdb-web source: the crawl against the sandbox, and the series table from a crawl."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from tests.tasks.web.test_robots import requests_for, site
from tv100.sandbox.server import Response
from tv100.storage.schemas import DISCOVER_FETCHES, SERIES
from tv100.tasks.discover.config import CrawlConfig, SeriesFilter
from tv100.tasks.discover.crawl import ImdbBlockedError, WebCrawl, crawl_web, series_from_web
from tv100.tasks.discover.imdb_pages import ListedTitle, TitlePage
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.errors import SourceError

WHEN = datetime(2025, 3, 1, tzinfo=UTC)


def listed(sid: str, **kw: object) -> ListedTitle:
    base = ListedTitle(
        sid, f"list {sid}", None, None, None, 2023, None, 7.0, 500, "TV Series", "html"
    )
    return replace(base, **kw)


def page(sid: str, **kw: object) -> TitlePage:
    base = TitlePage(
        sid, f"page {sid}", f"orig {sid}", "tvSeries", True, 2023, None, False,
        ("Drama",), ("KR",), ("ko",), 8.0, 1000, None, None, "next_data",
    )  # fmt: skip
    return replace(base, **kw)


def test_series_from_web_filters_and_falls_back_to_the_list():
    items = [listed(f"tt000000{i}") for i in range(1, 9)]
    pages = {
        "tt0000001": page("tt0000001"),
        "tt0000002": page("tt0000002", kind="movie"),
        "tt0000003": page("tt0000003", is_adult=True),
        "tt0000004": page("tt0000004", start_year=2021),
        "tt0000005": page("tt0000005", start_year=None),
        "tt0000006": page("tt0000006", num_votes=None, rating=None, title=None),
        "tt0000007": page("tt0000007", kind="tvMiniSeries", num_votes=10, parsed_from="json_ld"),
        # tt0000008: its title page failed, so it is left out
    }
    crawl = WebCrawl(tuple(reversed(items)), pages, DISCOVER_FETCHES.empty_table())
    table = series_from_web(crawl, SeriesFilter(2021, None), WHEN)
    assert table.schema == SERIES
    rows = {r["series_id"]: r for r in table.to_pylist()}
    assert list(rows) == ["tt0000001", "tt0000006", "tt0000007"]  # sorted by id
    assert rows["tt0000001"]["title"] == "page tt0000001"
    assert rows["tt0000001"]["countries"] == ["KR"] and rows["tt0000001"]["genres"] == ["Drama"]
    fallback = rows["tt0000006"]
    assert (fallback["title"], fallback["num_votes"], fallback["rating"]) == (
        "list tt0000006", 500, 7.0,
    )
    assert fallback["original_title"] == "orig tt0000006"
    assert {r["source"] for r in rows.values()} == {"imdb-web"}
    assert [r["parsed_from"] for r in rows.values()] == ["next_data", "next_data", "json_ld"]
    assert {r["discovered_at"] for r in rows.values()} == {WHEN}
    voted = series_from_web(crawl, SeriesFilter(2021, 100), WHEN)
    assert voted.column("series_id").to_pylist() == ["tt0000001", "tt0000006"]


def test_crawl_web_refuses_a_non_url():
    with pytest.raises(ValueError, match="not an http"):
        crawl_web("/tmp/imdb", CrawlConfig(2021, 1, None, None), HttpConfig())


def test_crawl_follows_pages_up_to_max_pages(sandbox):
    http = HttpConfig(allow_hosts=(sandbox.base_url.split("://", 1)[1],))
    crawl = crawl_web(sandbox.base_url, CrawlConfig(2021, 2, "de", 5), http)
    assert len(crawl.listed) == 10 == len({t.series_id for t in crawl.listed})
    assert set(crawl.titles) == {t.series_id for t in crawl.listed}
    fetches = crawl.fetches.to_pylist()
    assert [f["kind"] for f in fetches[:2]] == ["list", "list"]
    assert "/de/search/title/" in fetches[0]["url"] and fetches[0]["url"].endswith("&count=5")
    assert sum(f["kind"] == "title" for f in fetches) == 10
    assert all(f["status"] == "ok" and "/de/title/" in f["url"] for f in fetches[2:])
    assert isinstance(crawl.fetches, pa.Table) and crawl.fetches.schema == DISCOVER_FETCHES


def test_adult_genre_stands_in_for_a_missing_adult_flag():
    items = (listed("tt0000001"), listed("tt0000002"), listed("tt0000003"))
    pages = {
        # JSON-LD has no adult flag: IMDb's "Adult" genre decides.
        "tt0000001": page("tt0000001", is_adult=None, genres=("Adult", "Drama")),
        "tt0000002": page("tt0000002", is_adult=None, genres=("Drama",)),
        # An explicit flag wins over the genre.
        "tt0000003": page("tt0000003", is_adult=False, genres=("Adult",)),
    }
    crawl = WebCrawl(items, pages, DISCOVER_FETCHES.empty_table())
    table = series_from_web(crawl, SeriesFilter(2021, None), WHEN)
    assert table.column("series_id").to_pylist() == ["tt0000002", "tt0000003"]


def _http(sandbox, **kw: object) -> HttpConfig:
    return HttpConfig(allow_hosts=(sandbox.base_url.split("://", 1)[1],), **kw)


def test_crawl_reads_every_layout(sandbox, world):
    crawl = crawl_web(f"{sandbox.base_url}/mixed", CrawlConfig(2021, 4, None, 10), _http(sandbox))
    assert len(crawl.listed) == 40 and set(crawl.titles) == {t.series_id for t in crawl.listed}
    assert {t.parsed_from for t in crawl.listed} == {"html", "next_data"}
    assert {p.parsed_from for p in crawl.titles.values()} == {"next_data", "json_ld"}
    for sid, p in crawl.titles.items():
        t = world.by_id[sid]
        assert (p.title, p.original_title) == (t.title, t.original_title)
        assert (p.start_year, p.num_votes) == (t.start_year, t.num_votes)
    assert {f["status"] for f in crawl.fetches.to_pylist()} == {"ok"}


def test_waf_challenge_on_a_list_page_stops_the_crawl(sandbox):
    url = f"{sandbox.base_url}/waf"
    with pytest.raises(ImdbBlockedError) as info:
        crawl_web(url, CrawlConfig(2021, 5, None, 10), _http(sandbox))
    err = info.value
    assert isinstance(err, SourceError) and not err.transient
    message = str(err)
    assert "\n" not in message and "IMDb blocked the crawl" in message
    assert "x-amzn-waf-action: challenge" in message and "--source imdb-datasets" in message
    (row,) = err.fetches.to_pylist()  # no second page was asked
    assert (row["kind"], row["status"], row["http_status"]) == ("list", "blocked", 202)
    assert row["error_message"] == "bot check: HTTP 202, x-amzn-waf-action: challenge"
    again = pickle.loads(pickle.dumps(err))  # as Prefect keeps a failed task's exception
    assert str(again) == message and again.fetches.equals(err.fetches)


def test_captcha_on_title_pages_stops_asking(sandbox):
    http = _http(sandbox, per_host=2)
    with pytest.raises(ImdbBlockedError, match="challenge page") as info:
        crawl_web(f"{sandbox.base_url}/captcha", CrawlConfig(2021, 2, None, 10), http)
    rows = info.value.fetches.to_pylist()
    lists = [r for r in rows if r["kind"] == "list"]
    titles = [r for r in rows if r["kind"] == "title"]
    assert len(lists) == 2 and {r["status"] for r in lists} == {"ok"}
    # 20 titles were listed; with 2 title pages in flight at a time, the first captcha
    # stops the crawl after at most 2 requests.
    assert 1 <= len(titles) <= 2
    assert {r["status"] for r in titles} == {"blocked"}
    assert {r["http_status"] for r in titles} == {200}  # only the body says it
    assert all(r["error_message"] == "bot check: a challenge page (HTTP 200)" for r in titles)


def test_a_failed_list_page_is_a_source_error(sandbox):
    with pytest.raises(SourceError, match="IMDb list page .* failed: http_error 404") as info:
        crawl_web(f"{sandbox.base_url}/nowhere", CrawlConfig(2021, 2, None, 10), _http(sandbox))
    assert not info.value.transient


def test_list_pages_robots_txt_disallows_say_to_use_the_datasets(world):
    with site(world, Response.text("User-agent: *\nDisallow: /search/\n")) as server:
        with pytest.raises(ImdbBlockedError) as info:
            crawl_web(server.base_url, CrawlConfig(2021, 3, None, 10), _http(server))
        assert not any(line.startswith('"GET /search/') for line in server.request_log)
        assert requests_for(server, "/robots.txt") == 1
    err = info.value
    (row,) = err.fetches.to_pylist()
    assert (row["kind"], row["status"], row["http_status"]) == ("list", "robots_disallowed", None)
    assert str(err) == (
        f"IMDb's robots.txt disallows {row['url']} for this crawler; use --source imdb-datasets"
    )
    assert not err.transient and "/search/title/" in row["url"]


def test_title_pages_robots_txt_disallows_are_rows(world):
    with site(world, Response.text("User-agent: tv100\nDisallow: /title/\n")) as server:
        crawl = crawl_web(server.base_url, CrawlConfig(2021, 1, None, 5), _http(server))
        assert not any(line.startswith('"GET /title/') for line in server.request_log)
    assert len(crawl.listed) == 5 and crawl.titles == {}
    rows = crawl.fetches.to_pylist()
    assert [r["status"] for r in rows] == ["ok"] + ["robots_disallowed"] * 5
    assert all("disallows this URL" in r["error_message"] for r in rows[1:])
