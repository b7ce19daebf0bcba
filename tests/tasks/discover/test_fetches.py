"""The discover_fetches rows."""

from __future__ import annotations

from tv100.storage.schemas import DISCOVER_FETCHES
from tv100.tasks.discover.fetches import FetchLog, is_url
from tv100.tasks.web.config import Fetched


def test_fetch_log_rows_in_request_order():
    log = FetchLog()
    ok = Fetched("http://a/1", "http://a/1", "ok", 200, {}, b"x", None, 1, 0.0)
    bad = Fetched("http://a/2", "http://a/2", "timeout", None, {}, b"", "timed out", 2, 1.0)
    log.add("imdb-web", "list", ok, 50)
    log.add("imdb-web", "title", bad, 0)
    table = log.table()
    assert table.schema == DISCOVER_FETCHES
    rows = table.to_pylist()
    assert [(r["url"], r["status"], r["http_status"], r["records"]) for r in rows] == [
        ("http://a/1", "ok", 200, 50),
        ("http://a/2", "timeout", None, 0),
    ]
    assert rows[1]["error_message"] == "timed out"
    assert FetchLog().table().num_rows == 0


def test_is_url():
    assert is_url("https://datasets.imdbws.com/") and is_url("http://127.0.0.1:8000")
    assert not is_url("/data/imdb") and not is_url("ftp://x")
