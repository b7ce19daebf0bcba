"""storage.catalog.complete_tables: every schema column, whatever stage a build reached."""

from __future__ import annotations

import pyarrow as pa

from tv100.storage.catalog import TABLES_PRESENT, complete_tables, connect
from tv100.storage.schemas import DUPLICATES, SCHEMAS
from tv100.storage.tables import write_table


def test_missing_tables_become_empty_views_with_their_schema(data_root):
    con = connect(data_root)
    try:
        assert complete_tables(con, ["quality", "classes"]) == frozenset()
        for name in ("quality", "classes"):
            rel = con.sql(f"select * from {name}")
            assert rel.columns == SCHEMAS[name].names
            assert rel.fetchall() == []
        typed = con.sql("select * from classes").to_arrow_table().schema
        assert [f.type for f in typed] == [f.type for f in SCHEMAS["classes"]]
        rows = con.sql(f"select name, present from {TABLES_PRESENT} order by name").fetchall()
        assert rows == [("classes", False), ("quality", False)]
    finally:
        con.close()


def test_old_tables_get_missing_columns_as_nulls_and_calls_are_idempotent(data_root):
    schema = pa.schema([f for f in DUPLICATES if f.name != "action"])
    rows = [{"image_id": "a", "kind": "exact", "scope": "within_series"}]
    write_table(data_root, "duplicates", pa.Table.from_pylist(rows, schema=schema), schema=schema)
    con = connect(data_root)
    try:
        assert complete_tables(con, ["duplicates", "images"]) == {"duplicates"}
        assert complete_tables(con, ["duplicates", "images"]) == {"duplicates"}
        got = con.sql("select image_id, kind, action from duplicates").fetchall()
        assert got == [("a", "exact", None)]
    finally:
        con.close()
