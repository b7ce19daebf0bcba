"""Corrupt tables (issue 17, defect 4): one line naming the file and the fix, the other
tables still queryable, and `heal_tables` removing a corrupt derived table, moving a corrupt
source table aside and dropping a corrupt shard."""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from tests.storage.rows import series_rows
from tests.support.synthetic_root import write_synthetic_root
from tv100.storage.catalog import TABLES_UNREADABLE, complete_tables, connect, query
from tv100.storage.heal import DERIVED_TABLES, corrupt_name, heal_tables
from tv100.storage.root import DataRoot, DataRootError
from tv100.storage.schemas import ANALYSIS_TABLES
from tv100.storage.tables import (
    CorruptTableError,
    check_file,
    compact,
    done_shards,
    list_tables,
    read_table,
    shard_path,
    table_exists,
    write_shard,
)


def _footer_lies(data: bytes) -> bytes:
    """The magic bytes stay; the footer length says 100 MB."""
    return data[:-8] + struct.pack("<i", 10**8) + b"PAR1"


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated to half": lambda data: data[: len(data) // 2],
    "zero bytes": lambda data: b"",
    "garbage": lambda data: bytes(range(256)) * 8,
    "footer length wrong": _footer_lies,
}
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def corrupt(path: str, how: Callable[[bytes], bytes] = CORRUPTIONS["truncated to half"]) -> bytes:
    """Corrupt the file at `path` in place; return its new bytes."""
    with open(path, "rb") as f:
        data = how(f.read())
    with open(path, "wb") as f:
        f.write(data)
    return data


@pytest.fixture
def synthetic(tmp_path) -> DataRoot:
    return write_synthetic_root(str(tmp_path / "data"))


def _one_line(err: BaseException, *needles: str) -> None:
    text = str(err)
    assert "\n" not in text and len(text) < 500, text
    for needle in needles:
        assert needle in text, (needle, text)


# -- one error, one line ------------------------------------------------------------------------


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_corrupt_table_is_one_line_naming_its_file(synthetic, how):
    path = synthetic.path("tables", "images.parquet")
    corrupt(path, CORRUPTIONS[how])
    for read in (lambda: read_table(synthetic, "images"),
                 lambda: check_file(synthetic, "images", path)):
        with pytest.raises(CorruptTableError) as info:
            read()
        err = info.value
        assert isinstance(err, DataRootError)  # the CLI prints every DataRootError as one line
        assert (err.table, err.path, err.content) == ("images", path, True)
        _one_line(err, "'images'", path, "tv100 build", "delete it")
        assert "<Buffer>" not in str(err)
        again = pickle.loads(pickle.dumps(err))  # crosses Prefect and Dask workers intact
        assert str(again) == str(err) and again.path == path


def test_a_file_that_cannot_be_opened_is_not_called_corrupt(synthetic, monkeypatch):
    path = synthetic.path("tables", "series.parquet")

    def denied(p, mode="rb", **kw):
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(synthetic.fs, "open", denied)
    with pytest.raises(CorruptTableError) as info:
        read_table(synthetic, "series")
    assert not info.value.content
    _one_line(info.value, path, "Permission denied", "readable")
    with pytest.raises(CorruptTableError):  # and healing leaves it alone
        heal_tables(synthetic)
    monkeypatch.undo()
    assert os.path.exists(path)


def test_a_corrupt_shard_names_the_shard(data_root):
    write_shard(data_root, "series", "a", series_rows(2, 0))
    write_shard(data_root, "series", "b", series_rows(2, 2))
    part = shard_path(data_root, "series", "b")
    corrupt(part)
    with pytest.raises(CorruptTableError) as info:
        read_table(data_root, "series")
    _one_line(info.value, part)
    with pytest.raises(CorruptTableError):
        compact(data_root, "series", ["series_id"])


def test_checking_a_table_reads_its_footer_only(data_root, monkeypatch):
    rows = series_rows(20_000)
    from tv100.storage.tables import write_table

    write_table(data_root, "series", rows)
    path = data_root.path("tables", "series.parquet")
    size = os.path.getsize(path)
    read: list[int] = []
    real_open = data_root.fs.open

    def counting_open(p, mode="rb", **kw):
        f = real_open(p, mode, **kw)
        real_read = f.read

        def counted(*a):
            out = real_read(*a)
            read.append(len(out))
            return out

        f.read = counted
        return f

    monkeypatch.setattr(data_root.fs, "open", counting_open)
    check_file(data_root, "series", path)
    assert size > 200_000 and 0 < sum(read) < 70_000, (size, sum(read))


# -- the catalog: the other tables still answer ---------------------------------------------------


def test_the_other_tables_answer_while_one_is_corrupt(synthetic):
    path = synthetic.path("tables", "images.parquet")
    corrupt(path)
    assert query(synthetic, "select count(*) as n from series").to_pylist() == [{"n": 6}]
    for sql in ("select count(*) from images",
                "select s.title from series s join images i using (series_id)"):
        with pytest.raises(CorruptTableError) as info:
            query(synthetic, sql)
        _one_line(info.value, "'images'", path, "tv100 build")
    con = connect(synthetic)
    try:  # SQL written against the schemas still binds; the table says why it is empty
        assert complete_tables(con, ANALYSIS_TABLES) == frozenset(ANALYSIS_TABLES)
        assert con.sql("select count(*) from quality").fetchall() == [(255,)]
        rows = con.sql(f"select name, path from {TABLES_UNREADABLE}").fetchall()
        assert rows == [("images", path)]
    finally:
        con.close()


def test_a_corrupt_file_beside_done_shards_leaves_the_rest_queryable(data_root):
    write_shard(data_root, "series", "a", series_rows(2, 0))
    compact(data_root, "series", ["series_id"])
    write_shard(data_root, "series", "b", series_rows(2, 2))
    corrupt(data_root.path("tables", "series.parquet"))
    from tv100.storage.tables import write_table

    write_table(data_root, "quality", read_quality())
    assert list_tables(data_root) == {"quality": "file", "series": "both"}
    assert table_exists(data_root, "quality")
    assert query(data_root, "select count(*) as n from quality").to_pylist() == [{"n": 1}]
    with pytest.raises(CorruptTableError):
        query(data_root, "select * from series")


def read_quality():
    import pyarrow as pa

    from tv100.storage.schemas import QUALITY

    return pa.Table.from_pylist(
        [{"image_id": "i1", "is_junk": False, "reason": None, "status": "ok"}], schema=QUALITY)


# -- healing --------------------------------------------------------------------------------------


def _mtimes(root: DataRoot) -> dict[str, int]:
    base = root.path()
    return {os.path.relpath(os.path.join(d, f), base): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, fs in os.walk(base) for f in fs}


def test_healing_a_sound_root_touches_nothing(synthetic):
    before = _mtimes(synthetic)
    assert heal_tables(synthetic) == ()
    assert _mtimes(synthetic) == before


def test_a_corrupt_derived_table_is_removed(synthetic):
    assert "quality" in DERIVED_TABLES and "images" not in DERIVED_TABLES
    path = synthetic.path("tables", "quality.parquet")
    corrupt(path, CORRUPTIONS["zero bytes"])
    (healed,) = heal_tables(synthetic, NOW)
    assert (healed.table, healed.path, healed.action) == ("quality", path, "removed")
    assert "\n" not in healed.message and path in healed.message
    assert "'quality'" in healed.message and "rebuilds" in healed.message
    assert not os.path.exists(path) and "quality" not in list_tables(synthetic)
    assert [p for p in os.listdir(synthetic.path("tables")) if "corrupt" in p] == []
    assert heal_tables(synthetic) == ()


@pytest.mark.parametrize("table", ["images", "series", "metrics"])
def test_a_corrupt_source_table_is_moved_aside(synthetic, table):
    path = synthetic.path("tables", f"{table}.parquet")
    data = corrupt(path)
    (healed,) = heal_tables(synthetic, NOW)
    aside = f"{path}.corrupt-20260304T050607Z"
    assert corrupt_name(path, NOW) == aside
    assert (healed.action, healed.moved_to) == ("moved_aside", aside)
    assert "\n" not in healed.message and aside in healed.message
    with open(aside, "rb") as f:
        assert f.read() == data  # kept, byte for byte, for the user
    assert not os.path.exists(path) and table not in list_tables(synthetic)
    assert query(synthetic, "select count(*) as n from quality").to_pylist() == [{"n": 255}]
    # Corrupt again within the same second: the first copy is kept, the second beside it.
    with open(path, "wb") as f:
        f.write(b"")
    (again,) = heal_tables(synthetic, NOW)
    assert again.moved_to == f"{aside}-2" and os.path.exists(aside)


def test_a_corrupt_shard_is_redone(data_root):
    write_shard(data_root, "series", "a", series_rows(2, 0))
    write_shard(data_root, "series", "b", series_rows(2, 2))
    part = shard_path(data_root, "series", "b")
    corrupt(part, CORRUPTIONS["garbage"])
    (healed,) = heal_tables(data_root, NOW)
    assert (healed.path, healed.action) == (part, "shard_removed")
    assert done_shards(data_root, "series") == {"a"} and not os.path.exists(part)
    assert read_table(data_root, "series").num_rows == 2


def test_a_done_shard_whose_data_is_gone_is_redone(data_root):
    write_shard(data_root, "series", "a", series_rows(2, 0))
    os.remove(shard_path(data_root, "series", "a"))
    (healed,) = heal_tables(data_root, NOW)
    assert healed.action == "shard_removed" and "missing" in healed.reason
    assert done_shards(data_root, "series") == set()


def test_a_corrupt_whole_file_beside_shards_keeps_the_shards(data_root):
    write_shard(data_root, "images", "a", _image_rows(3))
    compact(data_root, "images", ["image_id"])
    write_shard(data_root, "images", "b", _image_rows(2, 3))
    path = data_root.path("tables", "images.parquet")
    corrupt(path)
    (healed,) = heal_tables(data_root, NOW)
    assert healed.action == "moved_aside"
    assert read_table(data_root, "images").num_rows == 2  # the shard not yet compacted
    assert pq.read_metadata(shard_path(data_root, "images", "b")).num_rows == 2


def _image_rows(n: int, start: int = 0):
    import pyarrow as pa

    from tv100.storage.schemas import IMAGES

    return pa.Table.from_pylist(
        [{"image_id": f"im{i:03d}", "series_id": "tt1", "engine": "bing", "rank": i,
          "url": f"http://h.example/{i}.jpg", "status": "ok"} for i in range(start, start + n)],
        schema=IMAGES)


def test_healing_works_on_any_fsspec_root():
    root = DataRoot("memory://heal-h17").ensure()
    from tv100.storage.tables import write_table

    write_table(root, "series", series_rows(3))
    write_table(root, "quality", read_quality())
    for name in ("series", "quality"):
        with root.fs.open(root.path("tables", f"{name}.parquet"), "wb") as f:
            f.write(b"PAR1 then nothing")
    healed = {h.table: h for h in heal_tables(root, NOW)}
    assert healed["series"].action == "moved_aside" and healed["quality"].action == "removed"
    assert root.fs.exists(corrupt_name(root.path("tables", "series.parquet"), NOW))
    assert list_tables(root) == {}
    root.fs.rm(root.path(), recursive=True)
