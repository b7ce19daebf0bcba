"""Searching every series on every engine: the `search_hits` and `search_pages` tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from tests.tasks.collect.helpers import http_for, series_with_images
from tv100.sandbox.engines import engine_urls
from tv100.storage.schemas import SEARCH_HITS, SEARCH_PAGES
from tv100.storage.tables import write_table
from tv100.tasks.collect.config import SearchConfig
from tv100.tasks.collect.pages import READ_STATUSES
from tv100.tasks.collect.search import (
    SearchTables,
    merge_search_tables,
    read_series,
    search_series,
    search_series_tables,
)
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.urls import canonical_url


def test_search_series_rows_schema_and_order(world, catalog, engines):
    server, site = engines
    picked = series_with_images(world, catalog, 30)[:3]
    series = [{"series_id": t.series_id, "title": t.title} for t in reversed(picked)]
    series.append({"series_id": "tt0000001", "title": "No Such Show"})
    config = SearchConfig.from_engine_urls(
        engine_urls(server.base_url), per_series_cap=30, page_size=20
    )
    engines_ = ["google", "duckduckgo", "bing"]
    tables = search_series_tables(series, engines_, config, http_for(server))
    hits, pages = tables
    assert hits.schema == SEARCH_HITS and pages.schema == SEARCH_PAGES
    rows = hits.to_pylist()
    keys = [(r["series_id"], r["engine"], r["rank"]) for r in rows]
    assert keys == sorted(keys)
    for t in picked:
        for engine in ("bing", "google", "duckduckgo"):
            group = [r for r in rows if r["series_id"] == t.series_id and r["engine"] == engine]
            listed = site.results(engine, t.series_id)
            assert [r["rank"] for r in group] == list(range(1, min(30, len(listed)) + 1))
            assert [r["image_url"] for r in group] == [
                server.base_url + i.url_path for i in listed[:30]
            ]
            assert {r["query"] for r in group} == {f"{t.title} TV Series"}
            assert len({canonical_url(r["image_url"]) for r in group}) == len(group)
    assert not [r for r in rows if r["series_id"] == "tt0000001"]
    assert all(r["fetched_at"].tzinfo is not None for r in rows)
    assert hits.schema.field("fetched_at").type == pa.timestamp("us", tz="UTC")
    unknown = [p for p in pages.to_pylist() if p["series_id"] == "tt0000001"]
    assert {p["engine"] for p in unknown} == {"bing", "google", "duckduckgo"}
    assert all(p["status"] == "no_results" for p in unknown if p["kind"] == "results")
    assert set(pages.column("status").to_pylist()) <= READ_STATUSES
    assert tables.failed_pages == 0
    assert set(hits.column("thumbnail_only").to_pylist()) == {False}

    # A rerun gives the same table except fetched_at; search_series returns the hits.
    again = search_series(series, engines_, config, http_for(server))
    assert again.drop_columns(["fetched_at"]).equals(hits.drop_columns(["fetched_at"]))
    assert again.column("fetched_at").type.tz == "UTC"
    assert min(again.column("fetched_at").to_pylist()) >= max(hits.column("fetched_at").to_pylist())


def test_search_series_query_template_and_failures(world, catalog, engines):
    server, _ = engines
    t = series_with_images(world, catalog, 10)[0]
    series = [{"series_id": t.series_id, "title": t.title}]
    urls = {**engine_urls(server.base_url), "google": f"{server.base_url}/gone"}
    config = SearchConfig.from_engine_urls(urls, query_template='"{title}"', per_series_cap=5)
    hits, pages = search_series_tables(
        series, ["bing", "google"], config, http_for(server, retries=0)
    )
    assert set(hits.column("engine").to_pylist()) == {"bing"}
    assert hits.num_rows == 5 and set(hits.column("query").to_pylist()) == {f'"{t.title}"'}
    failed = [p for p in pages.to_pylist() if p["status"] not in READ_STATUSES]
    assert [(p["engine"], p["page"], p["http_status"]) for p in failed] == [("google", 1, 404)]
    assert failed[0]["error_message"]


def test_blocked_and_thumbnail_only_engines_in_the_tables(world, catalog, engines):
    server, _ = engines
    picked = series_with_images(world, catalog, 10)[:2]
    series = [{"series_id": t.series_id, "title": t.title} for t in picked]
    urls = engine_urls(server.base_url, {"google": "basic", "bing": "consent"})
    config = SearchConfig.from_engine_urls(urls, per_series_cap=10)
    tables = search_series_tables(series, ["bing", "google"], config, http_for(server))
    hits, pages = tables
    assert set(hits.column("engine").to_pylist()) == {"google"}
    assert set(hits.column("thumbnail_only").to_pylist()) == {True}
    bing = [p for p in pages.to_pylist() if p["engine"] == "bing"]
    assert [(p["status"], p["http_status"], p["hits"]) for p in bing] == [
        ("blocked", 200, None)
    ] * 2
    assert all(p["error_message"].startswith("consent wall: ") for p in bing)
    assert tables.failed_pages == 2


def test_search_series_rejects_bad_input():
    config = SearchConfig()
    http = HttpConfig()
    with pytest.raises(ValueError, match="known engines: bing, duckduckgo, google"):
        search_series([{"series_id": "tt1", "title": "x"}], ["bing", "altavista"], config, http)
    with pytest.raises(ValueError, match="listed twice"):
        search_series(
            [{"series_id": "tt1", "title": "x"}, {"series_id": "tt1", "title": "y"}],
            ["bing"],
            config,
            http,
        )
    with pytest.raises(ValueError, match="title"):
        search_series([{"series_id": "tt1"}], ["bing"], config, http)


def test_read_series_selects_the_query_fields(data_root):
    series = pa.table({
        "series_id": ["tt2", "tt1"],
        "title": ["B", "A"],
        "original_title": ["b", None],
        "start_year": pa.array([2023, None], pa.int32()),
        "kind": ["tvSeries", "tvMiniSeries"],
    })
    write_table(data_root, "series", series, schema=series.schema)
    assert read_series(data_root) == [
        {"series_id": "tt2", "title": "B", "original_title": "b", "start_year": 2023},
        {"series_id": "tt1", "title": "A", "original_title": None, "start_year": None},
    ]


def _pages(rows: list[tuple[str, str, int, str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"series_id": s, "engine": e, "query": "q", "kind": "results", "page": p,
             "url": "http://x/", "status": st, "fetched_at": datetime(2024, 1, 1, tzinfo=UTC)}
            for s, e, p, st in rows
        ],
        schema=SEARCH_PAGES,
    )


def test_merge_orders_parts_as_one_search():
    bing = SearchTables(SEARCH_HITS.empty_table(), _pages([("tt2", "bing", 1, "results"),
                                                           ("tt1", "bing", 1, "timeout")]))
    google = SearchTables(SEARCH_HITS.empty_table(), _pages([("tt1", "google", 2, "no_results"),
                                                             ("tt1", "google", 1, "results")]))
    merged = merge_search_tables([google, bing])
    keys = [(r["series_id"], r["engine"], r["page"]) for r in merged.pages.to_pylist()]
    assert keys == [("tt1", "bing", 1), ("tt1", "google", 1), ("tt1", "google", 2),
                    ("tt2", "bing", 1)]
    assert merged.failed_pages == 1
    empty = merge_search_tables([])
    assert (empty.hits.schema, empty.pages.num_rows) == (SEARCH_HITS, 0)



def test_a_search_through_the_world_prefix_lists_what_the_plain_one_does(
    world, catalog, engines
):
    """The search stage's cache key holds the engine URLs: under ``/w/<listing key>`` they
    name the sandbox they were made against, and the answers are the same."""
    server, site = engines
    prefix = site.mount_world(server, catalog.listing_key())
    series = [{"series_id": t.series_id, "title": t.title}
              for t in series_with_images(world, catalog, 30)[:2]]
    columns = ["series_id", "engine", "rank", "image_url", "page_url", "title"]
    found = []
    for world_prefix in (None, prefix):
        urls = engine_urls(server.base_url, world=world_prefix)
        assert all((world_prefix or "") in u for u in urls.values())
        config = SearchConfig.from_engine_urls(urls, per_series_cap=30, page_size=20)
        hits = search_series_tables(series, ["bing", "google", "duckduckgo"], config,
                                    http_for(server)).hits
        found.append(hits.select([c for c in columns if c in hits.column_names]).to_pylist())
    assert found[0] and found[0] == found[1]
