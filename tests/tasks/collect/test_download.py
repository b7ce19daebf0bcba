"""The downloader: statuses end to end, resume, idempotence."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from tests.tasks.collect.images import CASES
from tv100.storage.catalog import query as catalog_query
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import read_table, write_table
from tv100.tasks.collect.config import DownloadConfig, DownloadSummary
from tv100.tasks.collect.download import download_hits, status_counts
from tv100.tasks.collect.shards import download_pending, pending_hits, plan_hits
from tv100.tasks.web.config import HttpConfig


@pytest.fixture(scope="module")
def host(sandbox):
    """A tiny image host on the sandbox server: /t/<name> serves CASES[name] bytes."""
    from tv100.sandbox.server import Response

    def handler(req):
        name = req.path.rsplit("/", 1)[-1]
        if name == "noai":
            return Response(200, {"Content-Type": "image/jpeg", "X-Robots-Tag": "noai"},
                            CASES["jpeg"][0])
        if name in CASES:
            return Response(200, {"Content-Type": "image/jpeg"}, CASES[name][0])
        return None

    sandbox.register("/t/", handler)
    return sandbox


def hits_table(urls: list[tuple[str, str]]) -> pa.Table:
    return pa.table({
        "series_id": [s for s, _ in urls],
        "engine": ["bing"] * len(urls),
        "rank": pa.array(range(1, len(urls) + 1), pa.int32()),
        "image_url": [u for _, u in urls],
    })


def test_download_statuses_and_rerun(host, data_root):
    b = host.base_url
    urls = [("tt1", f"{b}/t/{n}") for n in CASES] + [
        ("tt1", f"{b}/t/noai"),
        ("tt1", f"{b}/t/missing"),
        ("tt2", f"{b}/t/jpeg"),  # the same URL under another series: its own row
        ("tt2", f"{b}/_fault/status?code=503&times=99&key=dl"),
        ("tt2", f"{b}/_fault/redirect-loop?n=0"),
        ("tt2", "http://10.1.2.3/x.jpg"),
    ]
    cfg = DownloadConfig(max_side=256, shard_size=4, http=HttpConfig(
        allow_hosts=(b.split("://")[1],), retries=1, backoff_base_s=0.01, timeout_s=5))
    seen = []
    summary = download_hits(hits_table(urls), data_root, cfg, progress=lambda d, t: seen.append(d))
    images = read_table(data_root, "images")
    assert images.num_rows == len(urls) == summary.hits
    assert seen[-1] == len(urls)
    by_url = {}
    for r in images.to_pylist():
        by_url.setdefault(r["url"].rsplit("/", 1)[-1], r)
    for name, (_, status, _size, _) in CASES.items():
        assert by_url[name]["status"] == status, name
    assert by_url["noai"]["status"] == "opted_out"
    assert by_url["missing"]["status"] == "http_error" and by_url["missing"]["http_status"] == 404
    statuses = {r["url"]: r["status"] for r in images.to_pylist()}
    assert statuses[f"{b}/_fault/status?code=503&times=99&key=dl"] == "http_error"
    assert statuses[f"{b}/_fault/redirect-loop?n=0"] == "http_error"
    assert statuses["http://10.1.2.3/x.jpg"] == "blocked"
    ok = [r for r in images.to_pylist() if r["status"] == "ok"]
    for r in ok:
        sha = r["sha256"]
        assert r["path"] == f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
        assert (data_root.base + "/" + r["path"]) and r["bytes"] > 0
    assert all(r["error_message"] for r in images.to_pylist() if r["status"] != "ok")
    assert {r["source"] for r in images.to_pylist()} == {"image_url"}  # no thumbnail-only hit
    # Sorted, compacted, and a rerun downloads nothing and leaves the bytes as they were.
    path = data_root.path("tables", "images.parquet")
    before = open(path, "rb").read()
    again = download_hits(hits_table(urls), data_root, cfg)
    assert again.downloaded_now == 0
    assert open(path, "rb").read() == before


def test_an_images_table_from_before_the_source_column(host, data_root):
    """Rows written before `source` existed are kept (null there), not downloaded again;
    the table reads with new shards and compacts to the declared schema."""
    b = host.base_url
    cfg = DownloadConfig(max_side=64, http=HttpConfig(allow_hosts=(b.split("://")[1],),
                                                      retries=0))  # fmt: skip
    old_hits = [("tt1", f"{b}/t/jpeg"), ("tt1", f"{b}/t/webp")]
    download_hits(hits_table(old_hits), data_root, cfg)
    old_schema = pa.schema([f for f in IMAGES if f.name != "source"])
    old = read_table(data_root, "images").drop_columns(["source"])
    write_table(data_root, "images", old, schema=old_schema)
    assert "source" not in read_table(data_root, "images").column_names

    new_hits = old_hits + [("tt1", f"{b}/t/gif-palette"), ("tt2", f"{b}/t/jpeg")]
    plan = plan_hits(hits_table(new_hits))
    pending = pending_hits(plan, data_root)
    assert len(pending) == 2
    asyncio.run(download_pending(pending, data_root, cfg, len(plan), 2, None))
    mixed = read_table(data_root, "images")  # the old file and a new shard
    assert sorted(mixed.column("source").to_pylist(), key=str) == [
        None, None, "image_url", "image_url"
    ]
    assert catalog_query(data_root, "select count(*) n from images where source is null")[
        "n"
    ].to_pylist() == [2]

    summary = download_hits(hits_table(new_hits), data_root, cfg)
    assert summary.downloaded_now == 0 and summary.status_counts == {"ok": 4}
    table = read_table(data_root, "images")
    assert table.schema.equals(IMAGES) and table.num_rows == 4
    sources = {(r["series_id"], r["url"].rsplit("/", 1)[-1]): r["source"]
               for r in table.to_pylist()}  # fmt: skip
    assert sources == {
        ("tt1", "jpeg"): None,
        ("tt1", "webp"): None,
        ("tt1", "gif-palette"): "image_url",
        ("tt2", "jpeg"): "image_url",
    }


def test_nothing_to_download(data_root):
    empty = hits_table([])
    assert status_counts(data_root) == {}
    assert download_hits(empty, data_root) == DownloadSummary(0, 0, {})


def test_a_shard_is_written_only_after_its_images_are_synced(host, data_root, monkeypatch):
    import tv100.tasks.collect.shards as shards
    from tv100.storage.images import ImageStore

    events: list[tuple[str, object]] = []
    real_sync, real_write = ImageStore.sync, shards.write_shard

    def sync(store, relpaths):
        relpaths = list(relpaths)
        events.append(("sync", frozenset(relpaths)))
        return real_sync(store, relpaths)

    def write_shard(root, name, shard, rows):
        events.append(("write", frozenset(p for p in rows.column("path").to_pylist() if p)))
        return real_write(root, name, shard, rows)

    monkeypatch.setattr(ImageStore, "sync", sync)
    monkeypatch.setattr(shards, "write_shard", write_shard)
    b = host.base_url
    names = [n for n, case in CASES.items() if case[1] == "ok"]
    cfg = DownloadConfig(max_side=256, shard_size=2, processes=1, http=HttpConfig(
        allow_hosts=(b.split("://")[1],), retries=0, timeout_s=5))
    download_hits(hits_table([("tt1", f"{b}/t/{n}") for n in names]), data_root, cfg)
    writes = [i for i, (kind, _) in enumerate(events) if kind == "write"]
    assert len(writes) == (len(names) + 1) // 2 and len(names) >= 2
    for i in writes:  # every file a shard's rows name was synced before they were written
        synced = frozenset().union(*(paths for kind, paths in events[:i] if kind == "sync"))
        assert events[i][1] <= synced
    assert any(paths for _, paths in events)
