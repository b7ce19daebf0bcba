"""The imdb-web source: the crawl against the sandbox, and the series table from a crawl."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from tv100.storage.schemas import DISCOVER_FETCHES, SERIES
from tv100.tasks.discover.config import CrawlConfig, SeriesFilter
from tv100.tasks.discover.crawl import WebCrawl, crawl_web, series_from_web
from tv100.tasks.discover.imdb_pages import ListedTitle, TitlePage
from tv100.tasks.web.config import HttpConfig

WHEN = datetime(2025, 3, 1, tzinfo=UTC)


def listed(sid: str, **kw: object) -> ListedTitle:
    base = ListedTitle(sid, f"list {sid}", None, 2023, None, 7.0, 500, "TV Series")
    return replace(base, **kw)  # type: ignore[arg-type]


def page(sid: str, **kw: object) -> TitlePage:
    base = TitlePage(
        sid, f"page {sid}", f"orig {sid}", "tvSeries", True, 2023, None, False,
        ("Drama",), ("KR",), ("ko",), 8.0, 1000, None, None, "next_data",
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def test_series_from_web_filters_and_falls_back_to_the_list():
    items = [listed(f"tt000000{i}") for i in range(1, 9)]
    pages = {
        "tt0000001": page("tt0000001"),
        "tt0000002": page("tt0000002", kind="movie"),
        "tt0000003": page("tt0000003", is_adult=True),
        "tt0000004": page("tt0000004", start_year=2021),
        "tt0000005": page("tt0000005", start_year=None),
        "tt0000006": page("tt0000006", num_votes=None, rating=None, title=None),
        "tt0000007": page("tt0000007", kind="tvMiniSeries", num_votes=10),
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
