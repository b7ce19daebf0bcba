"""Transient download failures are tried again by later runs; final ones never are.

A timeout, 429, 5xx or connection error is recorded with `is_transient` and `attempts`; a
later run tries it again once its backoff has passed (the runs here set the clock, `now`,
instead of waiting), up to `max_attempts`, and the new row replaces the old one. A run with
nothing due writes nothing.
"""

from __future__ import annotations

import collections
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from tests.tasks.collect.images import encode, photo
from tv100.storage.root import DataRoot
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import done_shards, read_table, write_table
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.download import download_hits
from tv100.tasks.collect.shards import (
    is_transient,
    latest_rows,
    pending_hits,
    to_retry,
)
from tv100.tasks.web.config import HttpConfig

JPEG = encode(photo(96, 64), "JPEG")
T0 = datetime(2024, 4, 17, 12, 0, tzinfo=UTC)


def hits_table(urls: list[str], series: str = "tt1") -> pa.Table:
    return pa.table({
        "series_id": [series] * len(urls),
        "engine": ["bing"] * len(urls),
        "rank": pa.array(range(1, len(urls) + 1), pa.int32()),
        "image_url": urls,
    })


def config(host: str, **kw) -> DownloadConfig:
    http = HttpConfig(allow_hosts=(host,), retries=0, timeout_s=10)
    return DownloadConfig(max_side=64, http=http, **kw)


def table_bytes(root: DataRoot) -> bytes:
    with open(root.path("tables", "images.parquet"), "rb") as f:
        return f.read()


def by_name(root: DataRoot) -> dict[str, dict]:
    return {r["url"].rsplit("/", 1)[-1]: r for r in read_table(root, "images").to_pylist()}


# -- which failures are transient ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "http_status", "transient"),
    [
        ("timeout", None, True),
        ("http_error", 503, True),
        ("http_error", 500, True),
        ("http_error", 502, True),
        ("http_error", 504, True),
        ("http_error", 501, True),
        ("http_error", 429, True),
        ("http_error", None, True),  # connection refused, reset, truncated body, DNS
        ("http_error", 404, False),
        ("http_error", 410, False),
        ("http_error", 403, False),
        ("http_error", 302, False),  # a redirect loop
        ("ok", 200, False),
        ("not_image", 200, False),
        ("decode_error", 200, False),
        ("too_large", 200, False),
        ("opted_out", 200, False),
        ("blocked", None, False),
        ("robots_disallowed", None, False),
    ],
    ids=lambda v: str(v),
)
def test_which_failures_are_transient(status, http_status, transient):
    assert is_transient(status, http_status) is transient


def test_the_retry_knobs_are_validated_and_the_backoff_doubles():
    cfg = DownloadConfig(retry_backoff_s=600)
    assert [cfg.retry_delay_s(n) for n in (1, 2, 3)] == [600.0, 1200.0, 2400.0]
    assert DownloadConfig().max_attempts == 4
    for bad in ({"max_attempts": 0}, {"max_attempts": True}, {"retry_backoff_s": -1},
                {"retry_backoff_s": "10"}, {"retry_backoff_s": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DownloadConfig(**bad)


# -- which rows are tried again -------------------------------------------------------------


def _row(image_id: str, status: str, http_status: int | None, attempts: int | None,
         at: datetime | None) -> dict:
    return {"image_id": image_id, "series_id": "tt1", "engine": "bing", "rank": 1,
            "url": f"http://h/{image_id}", "status": status, "http_status": http_status,
            "attempts": attempts, "downloaded_at": at,
            "is_transient": None if attempts is None else is_transient(status, http_status)}


def test_transient_rows_are_pending_once_due_and_final_rows_never(data_root):
    """A shard of transient rows is tried again by the next run (once the backoff since
    each row's try has passed, while its tries are fewer than `max_attempts`); final rows
    and rows tried `max_attempts` times are not."""
    rows = [
        _row("ok", "ok", 200, 1, T0),
        _row("gone", "http_error", 404, 1, T0),
        _row("junk", "not_image", 200, 1, T0),
        _row("optout", "opted_out", 200, 1, T0),
        _row("s503", "http_error", 503, 1, T0),  # due after 10 min
        _row("timeout", "timeout", None, 1, T0),
        _row("refused", "http_error", None, 1, T0),
        _row("twice", "http_error", 429, 2, T0),  # due after 20 min
        _row("spent", "http_error", 503, 4, T0),  # max_attempts reached
    ]
    write_table(data_root, "images", pa.Table.from_pylist(rows, schema=IMAGES))
    plan = [{"image_id": r["image_id"]} for r in rows] + [{"image_id": "new"}]
    cfg = DownloadConfig(retry_backoff_s=600, max_attempts=4)

    def pending(after: timedelta) -> dict[str, int]:
        return {h["image_id"]: h["attempts"]
                for h in pending_hits(plan, data_root, cfg, now=T0 + after)}

    assert pending(timedelta(minutes=5)) == {"new": 0}
    assert pending(timedelta(minutes=10)) == {"s503": 1, "timeout": 1, "refused": 1, "new": 0}
    assert pending(timedelta(minutes=20)) == {"s503": 1, "timeout": 1, "refused": 1,
                                              "twice": 2, "new": 0}
    later = pending(timedelta(days=30))
    assert later["twice"] == 2 and "spent" not in later
    assert [h["image_id"] for h in pending_hits(plan, data_root, cfg, T0 + timedelta(1))] == [
        "s503", "timeout", "refused", "twice", "new"]  # plan order
    assert to_retry(read_table(data_root, "images"), cfg) == 4
    # No backoff: due at once. One attempt allowed: nothing is ever tried again.
    assert "s503" in {h["image_id"] for h in pending_hits(
        plan, data_root, DownloadConfig(retry_backoff_s=0), T0)}
    assert {h["image_id"] for h in pending_hits(
        plan, data_root, DownloadConfig(max_attempts=1, retry_backoff_s=0), T0)} == {"new"}


def test_rows_from_before_the_attempt_columns_count_as_one_try(data_root):
    old_schema = pa.schema([f for f in IMAGES if f.name not in ("attempts", "is_transient")])
    rows = [_row("s503", "http_error", 503, None, T0), _row("gone", "http_error", 404, None, T0)]
    old = pa.Table.from_pylist(rows, schema=IMAGES).drop_columns(["attempts", "is_transient"])
    write_table(data_root, "images", old, schema=old_schema)
    plan = [{"image_id": "s503"}, {"image_id": "gone"}]
    cfg = DownloadConfig(retry_backoff_s=600)
    assert pending_hits(plan, data_root, cfg, T0 + timedelta(minutes=9)) == []
    assert pending_hits(plan, data_root, cfg, T0 + timedelta(minutes=10)) == [
        {"image_id": "s503", "attempts": 1}]


def test_the_latest_try_of_an_image_is_its_row():
    rows = [_row("a", "http_error", 503, 1, T0), _row("b", "ok", 200, None, T0),
            _row("a", "ok", 200, 2, T0 + timedelta(hours=1)), _row("c", "timeout", None, 1, T0)]
    latest = latest_rows(pa.Table.from_pylist(rows, schema=IMAGES))
    assert [(r["image_id"], r["status"]) for r in latest.to_pylist()] == [
        ("b", "ok"), ("a", "ok"), ("c", "timeout")]
    single = pa.Table.from_pylist(rows[1:], schema=IMAGES)
    assert latest_rows(single) is single


# -- downloads, end to end --------------------------------------------------------------------


@pytest.fixture
def flaky(sandbox):
    """Routes of the sandbox server under a fresh prefix: ``fail-N`` answers 503 to its first
    N requests and then an image; ``always`` always 503; ``gone`` 404; ``ok`` an image.
    Returns (prefix URL, requests seen per name)."""
    from tv100.sandbox.server import Response

    prefix = f"/retry-{uuid.uuid4().hex[:8]}/"
    seen: collections.Counter[str] = collections.Counter()

    def handler(req):
        name = req.path.rsplit("/", 1)[-1]
        seen[name] += 1
        image = Response(200, {"Content-Type": "image/jpeg"}, JPEG)
        if name == "ok" or (name.startswith("fail-") and seen[name] > int(name[5:])):
            return image
        if name == "gone":
            return Response.text("gone\n", status=404)
        return Response.text("busy\n", status=503)

    sandbox.register(prefix, handler)
    return f"{sandbox.base_url}{prefix}", seen


def test_a_transient_failure_is_retried_by_a_later_run_and_replaces_its_row(flaky, sandbox,
                                                                           data_root):
    base, seen = flaky
    names = ["ok", "fail-1", "gone", "always"]
    hits = hits_table([base + n for n in names])
    # One hit per shard: a retried hit's shard would otherwise reuse the id of the shard
    # compaction absorbed, and be ignored.
    cfg = config(f"127.0.0.1:{sandbox.port}", shard_size=1, retry_backoff_s=600,
                 max_attempts=3)
    t0 = datetime.now(UTC)

    first = download_hits(hits, data_root, cfg)
    rows = by_name(data_root)
    assert {n: (r["status"], r["http_status"], r["attempts"], r["is_transient"])
            for n, r in rows.items()} == {
        "ok": ("ok", 200, 1, False), "fail-1": ("http_error", 503, 1, True),
        "gone": ("http_error", 404, 1, False), "always": ("http_error", 503, 1, True)}
    assert (first.retried, first.to_retry) == (0, 2)

    # Within the backoff: nothing is tried, nothing written.
    before = table_bytes(data_root)
    again = download_hits(hits, data_root, cfg, now=t0 + timedelta(minutes=5))
    assert (again.downloaded_now, again.retried, again.to_retry) == (0, 0, 2)
    assert table_bytes(data_root) == before

    # After it: the transient failures are tried again; the image that was busy is stored.
    second = download_hits(hits, data_root, cfg, now=t0 + timedelta(minutes=11))
    assert (second.downloaded_now, second.retried, second.to_retry) == (2, 2, 1)
    rows = by_name(data_root)
    assert read_table(data_root, "images").num_rows == 4 and not done_shards(data_root, "images")
    assert (rows["fail-1"]["status"], rows["fail-1"]["attempts"]) == ("ok", 2)
    assert rows["fail-1"]["is_transient"] is False and rows["fail-1"]["sha256"]
    assert rows["fail-1"]["sha256"] == rows["ok"]["sha256"]  # the same bytes as the ok image
    assert (rows["always"]["status"], rows["always"]["attempts"]) == ("http_error", 2)
    assert rows["gone"]["attempts"] == 1 and rows["ok"]["attempts"] == 1
    assert second.status_counts == {"ok": 2, "http_error": 2}

    # The backoff doubles: 20 min after the second try (rows keep the real time of their
    # try, about t0), then max_attempts ends it.
    assert download_hits(hits, data_root, cfg, now=t0 + timedelta(minutes=15)).retried == 0
    third = download_hits(hits, data_root, cfg, now=t0 + timedelta(minutes=21))
    assert (third.retried, third.to_retry) == (1, 0)
    assert by_name(data_root)["always"]["attempts"] == 3
    final = table_bytes(data_root)
    last = download_hits(hits, data_root, cfg, now=t0 + timedelta(days=30))
    assert (last.downloaded_now, last.to_retry) == (0, 0)
    assert table_bytes(data_root) == final  # nothing due: byte-identical
    assert seen == {"ok": 1, "fail-1": 2, "gone": 1, "always": 3}  # a 404 is asked once


def test_an_outage_is_recovered_by_the_next_run(world, tmp_path):
    """The image host is down (connections refused) during a run: every image is a
    transient failure; once it is back, the next run stores every one, as a run that never
    saw the outage does."""
    from tv100.sandbox.server import Response, SandboxServer

    names = [f"{i}.jpg" for i in range(5)]
    down = socket.socket()  # bound, never listening: connections to its port are refused
    down.bind(("127.0.0.1", 0))
    port = down.getsockname()[1]
    hits = hits_table([f"http://127.0.0.1:{port}/img/{n}" for n in names])
    cfg = config(f"127.0.0.1:{port}", shard_size=2, retry_backoff_s=0)
    root = DataRoot(str(tmp_path / "outage")).ensure()
    try:
        during = download_hits(hits, root, cfg)
    finally:
        down.close()
    assert during.status_counts == {"http_error": 5} and during.to_retry == 5
    assert all(r["http_status"] is None and r["is_transient"] for r in by_name(root).values())

    server = SandboxServer(world, port=port)
    server.register("/img/", lambda req: Response(200, {"Content-Type": "image/jpeg"}, JPEG))
    with server:
        after = download_hits(hits, root, cfg)
        calm = DataRoot(str(tmp_path / "calm")).ensure()
        download_hits(hits, calm, cfg)
    assert (after.retried, after.to_retry, after.status_counts) == (5, 0, {"ok": 5})
    assert {r["attempts"] for r in by_name(root).values()} == {2}

    def content(r: DataRoot) -> list[dict]:
        return read_table(r, "images").drop_columns(["downloaded_at", "attempts"]).to_pylist()

    assert content(root) == content(calm)
