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


def test_plan_carries_the_source_page_of_thumbnail_only_hits():
    thumb = "https://encrypted-tbn0.gstatic.com/images?q=tbn:ANd9GcT1&s"
    hits = pa.table({
        "series_id": ["tt1", "tt1", "tt1"],
        "engine": ["google", "google", "bing"],
        "rank": pa.array([2, 1, 1], pa.int32()),
        "image_url": [thumb, "http://h/full.jpg", "http://h/b.jpg"],
        "page_url": ["https://site.example/p", "https://site.example/q", None],
        "thumbnail_only": pa.array([True, False, None], pa.bool_()),
    })
    plan = {p["image_url"]: p for p in plan_hits(hits)}
    assert (plan[thumb]["page_url"], plan[thumb]["thumbnail_only"]) == (
        "https://site.example/p", True)
    assert plan["http://h/full.jpg"]["thumbnail_only"] is False
    assert plan["http://h/b.jpg"]["thumbnail_only"] is False  # null: an ordinary hit
    # The id is the hit URL's, whatever its page: reruns find the rows of earlier runs.
    assert plan[thumb]["image_id"] == image_id_for("tt1", thumb)


def test_plan_of_a_table_written_before_the_page_columns():
    hits = pa.table({
        "series_id": ["tt1"],
        "engine": ["bing"],
        "rank": pa.array([1], pa.int32()),
        "image_url": ["http://h/a.jpg"],
    })
    (planned,) = plan_hits(hits)
    assert (planned["page_url"], planned["thumbnail_only"]) == (None, False)
    assert planned["image_id"] == image_id_for("tt1", "http://h/a.jpg")


def test_ids_and_shards_are_content_derived():
    assert image_id_for("tt1", "http://h/a.jpg") == image_id_for("tt1", "http://h/a.jpg")
    assert image_id_for("tt1", "http://h/a.jpg") != image_id_for("tt2", "http://h/a.jpg")
    assert shard_id(["a", "b"]) == shard_id(["a", "b"]) != shard_id(["b", "a"])
    hits = [{"image_id": str(i)} for i in range(5)]
    assert [len(s) for s in split_shards(hits, 2)] == [2, 2, 1]
    assert split_shards([], 2) == []
