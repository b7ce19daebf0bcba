"""A DuckDB catalog over a data root: one view per table, queryable ad hoc.

Used by ``tv100 sql``, the analysis code and the tests; every view reads the Parquet
files directly, so the catalog is always as fresh as the tables.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from tv100.storage.root import DataRoot
from tv100.storage.tables import TABLES_DIR, list_tables, live_shards


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(root: DataRoot) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table under `root`."""
    con = duckdb.connect(":memory:")
    if not root.is_local:
        con.register_filesystem(root.fs)
    for name, kind in list_tables(root).items():
        sources = []
        if kind in ("file", "both"):
            sources.append(root.uri(TABLES_DIR, f"{name}.parquet"))
        if kind in ("shards", "both"):
            # Only live shards: ones already compacted into the file must not count twice.
            sources += [
                root.uri(TABLES_DIR, name, f"part-{s}.parquet") for s in live_shards(root, name)
            ]
        files = ", ".join(_quote_str(s) for s in sources)
        con.execute(
            f"CREATE OR REPLACE VIEW {_quote_ident(name)} AS "
            f"SELECT * FROM read_parquet([{files}], union_by_name = true)"
        )
    return con


def query(root: DataRoot, sql: str) -> pa.Table:
    """Run `sql` against the catalog and return the full result as Arrow."""
    con = connect(root)
    try:
        rel = con.sql(sql)
        if rel is None:  # a statement with no result set (SET, CREATE ...)
            return pa.table({})
        result: pa.Table = rel.to_arrow_table()
        return result
    finally:
        con.close()


def views(root: DataRoot) -> list[str]:
    """Names of the views the catalog exposes."""
    return list(list_tables(root))
