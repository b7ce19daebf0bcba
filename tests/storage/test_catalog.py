"""storage/catalog.py: DuckDB views over every table of a data root."""

from __future__ import annotations

import pyarrow as pa

from tests.storage.rows import TS, series_rows
from tv100.storage.catalog import connect, query
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table, write_shard, write_table


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


# --- catalog.duckdb: the catalog as a file, for `duckdb DATA/catalog.duckdb` ----------------


def _duckdb_in(cwd, database: str, sql: str) -> str:
    """Run `sql` on `database` in a separate Python process started in `cwd` (elsewhere)."""
    import subprocess
    import sys

    code = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print(con.sql(sys.argv[2]).fetchall())\n"
    )
    done = subprocess.run([sys.executable, "-c", code, database, sql], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_catalog_file_works_from_any_directory(data_root, tmp_path):
    from tv100.storage.catalog import CATALOG_FILE, write_catalog

    write_table(data_root, "series", series_rows(4))
    assert write_catalog(data_root) is True
    path = data_root.path(CATALOG_FILE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _duckdb_in(elsewhere, path, "select count(*) from series") == "[(4,)]"


def test_catalog_file_is_rewritten_only_when_a_table_appears(data_root):
    import os

    from tv100.storage.catalog import CATALOG_FILE, write_catalog

    write_table(data_root, "series", series_rows(3))
    assert write_catalog(data_root) is True
    path = data_root.path(CATALOG_FILE)
    before = os.stat(path)
    # New rows in an existing table: the view reads the file, so nothing to rewrite.
    write_table(data_root, "series", series_rows(5))
    assert write_catalog(data_root) is False
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _duckdb_in(data_root.base, path, "select count(*) from series") == "[(5,)]"
    # A new table: a new view.
    t = pa.table({"a": [1, 2, 3]})
    write_table(data_root, "extra_table", t, schema=t.schema)
    assert write_catalog(data_root) is True
    assert _duckdb_in(data_root.base, path, "select sum(a) from extra_table") == "[(6,)]"
    assert not [n for n in os.listdir(data_root.base) if n.startswith(".tmp-")]


def test_catalog_file_names_a_corrupt_table(data_root):
    from tv100.storage.catalog import CATALOG_FILE, write_catalog

    write_table(data_root, "series", series_rows(3))
    with open(data_root.path("tables", "series.parquet"), "r+b") as f:
        f.seek(-12, 2)
        f.write(b"not parquet!")
    write_catalog(data_root)
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import duckdb,sys; duckdb.connect(sys.argv[1], read_only=True)"
         ".sql('select * from series').fetchall()", data_root.path(CATALOG_FILE)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0 and "table 'series' is corrupt" in done.stderr, (
        done.stderr)
