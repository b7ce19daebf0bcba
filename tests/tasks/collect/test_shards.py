"""Planning the downloads: one per series and canonical URL, cut into content-named shards."""

from __future__ import annotations

import pyarrow as pa

from tv100.tasks.collect.shards import image_id_for, plan_hits, shard_id, split_shards


def test_plan_merges_engines_per_series():
    hits = pa.table({
        "series_id": ["tt1", "tt1", "tt1", "tt2"],
        "engine": ["google", "bing", "bing", "bing"],
        "rank": pa.array([1, 3, 1, 2], pa.int32()),
        "image_url": ["http://H/a.jpg", "http://h/a.jpg#x", "http://h/b", "http://h/a.jpg"],
    })
    plan = plan_hits(hits)
    assert [(p["series_id"], p["engine"], p["rank"]) for p in plan] == [
        ("tt1", "bing", 1), ("tt1", "google", 1), ("tt2", "bing", 2)]
    assert len({p["image_id"] for p in plan}) == 3


def test_ids_and_shards_are_content_derived():
    assert image_id_for("tt1", "http://h/a.jpg") == image_id_for("tt1", "http://h/a.jpg")
    assert image_id_for("tt1", "http://h/a.jpg") != image_id_for("tt2", "http://h/a.jpg")
    assert shard_id(["a", "b"]) == shard_id(["a", "b"]) != shard_id(["b", "a"])
    hits = [{"image_id": str(i)} for i in range(5)]
    assert [len(s) for s in split_shards(hits, 2)] == [2, 2, 1]
    assert split_shards([], 2) == []
