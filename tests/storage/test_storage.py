"""storage/: schemas, atomic idempotent writes, shards, the image store, the DuckDB catalog."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from tv100.storage.catalog import connect, query
from tv100.storage.images import ImageStore, image_relpath
from tv100.storage.root import DataRoot, DataRootError, remove_temp_files, resolve_root
from tv100.storage.schemas import SCHEMA_VERSION, SERIES, schema_for
from tv100.storage.tables import (
    conform,
    done_shards,
    list_tables,
    read_table,
    write_shard,
    write_table,
)

TS = datetime(2026, 1, 2, tzinfo=UTC)


def series_rows(n: int, start: int = 0) -> pa.Table:
    rows = [
        {
            "series_id": f"tt{1000000 + i:07d}",
            "title": f'Show "{i}"',
            "original_title": f"Show {i}",
            "kind": "tvSeries" if i % 2 else "tvMiniSeries",
            "start_year": 2022 + i % 3,
            "end_year": None,
            "genres": ["Drama"],
            "countries": ["KR"],
            "languages": ["ko"],
            "rating": 7.5,
            "num_votes": 100 * i,
            "source": "imdb-datasets",
            "discovered_at": TS,
        }
        for i in range(start, start + n)
    ]
    return pa.Table.from_pylist(rows, schema=SERIES)


def test_resolve_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("TV100_DATA", raising=False)
    assert resolve_root(None).path() == os.path.abspath("./data")
    monkeypatch.setenv("TV100_DATA", str(tmp_path / "env"))
    assert resolve_root(None).path() == str(tmp_path / "env")
    assert resolve_root(str(tmp_path / "flag")).path() == str(tmp_path / "flag")


def test_write_is_atomic_and_idempotent(data_root):
    t = series_rows(5)
    h1 = write_table(data_root, "series", t)
    path = data_root.path("tables", "series.parquet")
    mtime = os.stat(path).st_mtime_ns
    h2 = write_table(data_root, "series", t)
    assert h1 == h2 == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert os.stat(path).st_mtime_ns == mtime, "an equal write must not touch the file"
    assert read_table(data_root, "series").equals(t)
    write_table(data_root, "series", series_rows(3))
    assert read_table(data_root, "series").num_rows == 3
    assert not [p for p in os.listdir(os.path.dirname(path)) if p.startswith(".tmp-")]


def test_failed_write_keeps_previous_table(data_root):
    write_table(data_root, "series", series_rows(4))
    bad = series_rows(2).drop_columns(["title"])
    with pytest.raises(ValueError, match="missing columns \\['title'\\]"):
        write_table(data_root, "series", bad)
    assert read_table(data_root, "series").num_rows == 4


def test_conform_reorders_and_casts():
    t = series_rows(2)
    shuffled = t.select(list(reversed(t.column_names)))
    assert conform("series", shuffled).schema.equals(SERIES)
    with pytest.raises(ValueError, match="no declared schema"):
        conform("nope", t)
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        schema_for("nope")


def test_shards_resume_with_done_markers(data_root):
    write_shard(data_root, "series", "000", series_rows(2, 0))
    write_shard(data_root, "series", "001", series_rows(2, 2))
    # A crash after the data but before the marker leaves a part the reader ignores.
    part = data_root.path("tables", "series", "part-002.parquet")
    with open(part, "wb") as f:
        f.write(b"half")
    assert done_shards(data_root, "series") == {"000", "001"}
    assert read_table(data_root, "series").num_rows == 4
    assert list_tables(data_root) == {"series": "shards"}
    with pytest.raises(ValueError, match="shard id"):
        write_shard(data_root, "series", "../x", series_rows(1))


def test_remove_temp_files(data_root):
    os.makedirs(data_root.path("tables"), exist_ok=True)
    open(data_root.path("tables", ".tmp-abc-series.parquet"), "wb").close()
    assert remove_temp_files(data_root) == 1
    assert remove_temp_files(data_root) == 0


def test_image_store_content_addressed(data_root):
    store = ImageStore(data_root)
    sha, rel = store.put(b"\xff\xd8hello", "jpg")
    assert rel == f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    assert store.read(rel) == b"\xff\xd8hello"
    assert store.put(b"\xff\xd8hello", "jpg") == (sha, rel)
    with pytest.raises(ValueError, match="sha256"):
        image_relpath("xyz", "jpg")
    with pytest.raises(ValueError, match="extension"):
        image_relpath(sha, "../x")


def test_catalog_views_and_query(data_root):
    write_table(data_root, "series", series_rows(6))
    write_shard(data_root, "discover_fetches", "a", pa.table(
        {
            "source": ["imdb-web"],
            "kind": ["list"],
            "url": ["http://x/"],
            "status": ["ok"],
            "http_status": pa.array([200], pa.int32()),
            "error_message": pa.array([None], pa.string()),
            "records": pa.array([6], pa.int64()),
            "fetched_at": pa.array([TS], pa.timestamp("us", tz="UTC")),
        }
    ))
    out = query(data_root, "select kind, count(*) n from series group by 1 order by 1")
    assert out.to_pylist() == [{"kind": "tvMiniSeries", "n": 3}, {"kind": "tvSeries", "n": 3}]
    assert query(data_root, "select records from discover_fetches").to_pylist() == [
        {"records": 6}
    ]
    con = connect(data_root)
    # A query on a title with a double quote survives the round trip.
    assert con.execute("select title from series where series_id='tt1000001'").fetchall() == [
        ('Show "1"',)
    ]
    con.close()


def test_memory_filesystem_root():
    root = DataRoot("memory://tv100-test-root").ensure()
    write_table(root, "series", series_rows(3))
    assert read_table(root, "series").num_rows == 3
    assert query(root, "select count(*) n from series").to_pylist() == [{"n": 3}]


def test_newer_schema_version_refused(tmp_path):
    root = DataRoot(str(tmp_path / "d")).ensure()
    with open(root.path("tv100.json"), "w") as f:
        json.dump({"schema_version": SCHEMA_VERSION + 1}, f)
    with pytest.raises(DataRootError, match="upgrade tv100"):
        DataRoot(str(tmp_path / "d")).ensure()


def test_compact_folds_shards_once(data_root):
    from tv100.storage.tables import compact, live_shards

    write_shard(data_root, "series", "b", series_rows(2, 2))
    write_shard(data_root, "series", "a", series_rows(2, 0))
    digest = compact(data_root, "series", ["series_id"])
    t = read_table(data_root, "series")
    assert t.column("series_id").to_pylist() == sorted(t.column("series_id").to_pylist())
    assert t.num_rows == 4 and live_shards(data_root, "series") == []
    # A refresh appends a shard beside the compacted file; readers see both, once.
    write_shard(data_root, "series", "c", series_rows(1, 9))
    assert list_tables(data_root) == {"series": "both"}
    assert read_table(data_root, "series").num_rows == 5
    assert query(data_root, "select count(*) n from series").to_pylist() == [{"n": 5}]
    # A crash after the compacted file was written but before shards were deleted:
    # simulate by re-creating an absorbed shard's marker and data.
    compact(data_root, "series", ["series_id"])
    write_shard(data_root, "series", "a", series_rows(2, 0))
    assert read_table(data_root, "series").num_rows == 5, "absorbed shard must not count twice"
    assert compact(data_root, "series", ["series_id"]) != digest
    assert read_table(data_root, "series").num_rows == 5
