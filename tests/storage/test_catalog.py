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
