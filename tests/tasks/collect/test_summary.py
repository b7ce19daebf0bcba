"""The collect stage's closing lines: engines none of whose pages could be read."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from tv100.storage.schemas import SEARCH_HITS, SEARCH_PAGES
from tv100.tasks.collect.search import SearchTables
from tv100.tasks.collect.summary import engine_warnings

WHEN = datetime(2025, 1, 20, tzinfo=UTC)
CONSENT = "consent wall: Google's consent page (consent.google.com)"
CAPTCHA = "captcha: Google's unusual-traffic page (/sorry/index)"


def _tables(pages: list[tuple], hits: dict[str, int]) -> SearchTables:
    """Pages as (engine, kind, status, http_status, error_message); hits per engine."""
    page_rows = [
        {"series_id": f"tt{n:07d}", "engine": e, "query": "q", "kind": k, "page": 1,
         "url": "http://x/", "status": s, "http_status": h, "error_message": m,
         "fetched_at": WHEN}
        for n, (e, k, s, h, m) in enumerate(pages)
    ]
    hit_rows = [
        {"series_id": "tt0000001", "engine": e, "query": "q", "page": 1, "rank": i + 1,
         "image_url": f"http://img/{e}/{i}.jpg", "fetched_at": WHEN}
        for e, n in hits.items() for i in range(n)
    ]
    return SearchTables(
        pa.Table.from_pylist(hit_rows, schema=SEARCH_HITS),
        pa.Table.from_pylist(page_rows, schema=SEARCH_PAGES),
    )


def test_an_engine_whose_every_page_was_blocked_gets_one_line():
    pages = [("google", "results", "blocked", 200, CONSENT)] * 12
    pages += [("bing", "results", "results", 200, None)] * 3
    pages += [("duckduckgo", "token", "ok", 200, None), ("duckduckgo", "results", "no_results",
                                                           200, None)]
    found = _tables(pages, {"bing": 4000, "duckduckgo": 210})
    assert engine_warnings(found) == [
        "google: all 12 result pages were blocked (consent wall); "
        "kept 4,210 hits from bing, duckduckgo"
    ]


def test_mixed_blocks_unknown_layouts_and_failures_are_counted():
    pages = [("google", "results", "blocked", 200, CAPTCHA)] * 3
    pages += [("google", "results", "blocked", 200, CONSENT)]
    pages += [("google", "results", "unknown_layout", 200, "no Google image results")] * 2
    pages += [("google", "results", "timeout", None, "read timed out")]
    pages += [("bing", "results", "results", 200, None)]
    assert engine_warnings(_tables(pages, {"bing": 7})) == [
        "google: none of 7 result pages had results: 4 blocked (captcha, consent wall), "
        "2 of an unknown layout, 1 timeout; kept 7 hits from bing"
    ]


def test_unknown_layouts_and_token_pages_and_a_lone_engine():
    reason = "not DuckDuckGo i.js JSON"
    ddg = [("duckduckgo", "token", "unknown_layout", 200, "no vqd token in the page")]
    assert engine_warnings(_tables(ddg, {})) == [
        "duckduckgo: the only token page was of a layout tv100 cannot read (no vqd token in "
        "the page); no other engine was searched"
    ]
    mixed = [("duckduckgo", "token", "ok", 200, None)]
    mixed += [("duckduckgo", "results", "unknown_layout", 200, reason)]
    assert engine_warnings(_tables(mixed, {})) == []  # the token page was read
    both = [("duckduckgo", "token", "blocked", 202, "captcha: anomaly")]
    both += [("bing", "results", "blocked", 200, "captcha: Bing's captcha")] * 2
    assert engine_warnings(_tables(both, {})) == [
        "bing: all 2 result pages were blocked (captcha); kept 0 hits from duckduckgo",
        "duckduckgo: the only token page was blocked (captcha); kept 0 hits from bing",
    ]


def test_no_line_for_failures_alone_or_readable_engines():
    # Requests that got no page at all (transport failures, an address the HTTP layer
    # refused) are failed requests, already counted and logged: not "what the engine saw".
    failed = [("google", "results", "timeout", None, "read timed out")]
    failed += [("google", "results", "blocked", None, "address 10.0.0.1 is private")]
    ok = [("bing", "results", "results", 200, None), ("bing", "results", "blocked", 200, CAPTCHA)]
    assert engine_warnings(_tables(failed + ok, {"bing": 3})) == []
    assert engine_warnings(_tables([], {})) == []
