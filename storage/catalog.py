"""A DuckDB catalog over a data root: one view per table, queryable ad hoc.

Used by ``tv100 sql``, the analysis code, the clean stage's `cleaned_images` and the tests;
every view reads the Parquet files directly, so the catalog is always as fresh as the
tables. `complete_tables` makes a connection safe for SQL written against the schemas
whatever stage a build reached.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pyarrow as pa

from tv100.storage.root import DataRoot
from tv100.storage.schemas import schema_for
from tv100.storage.tables import TABLES_DIR, list_tables, live_shards

#: The table `complete_tables` records the tables it handled in: ``name`` and ``present``
#: (false for the empty stand-in of a table not written yet), so SQL can ask which exist.
TABLES_PRESENT = "_tables_present"


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


def _relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.sql(
        "select view_name from duckdb_views() where not internal "
        "union select table_name from duckdb_tables()"
    ).fetchall()
    return {r[0] for r in rows}


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    rows = con.sql(
        "select column_name from information_schema.columns where table_name = $t",
        params={"t": name},
    ).fetchall()
    return {r[0] for r in rows}


def _nulls(con: duckdb.DuckDBPyConnection, fields: Iterable[pa.Field]) -> str:
    """``CAST(NULL AS <type>) AS <name>`` per field, the DuckDB type read off Arrow's."""
    out = []
    for f in fields:
        sql_type = con.from_arrow(pa.table({f.name: pa.array([], f.type)})).types[0]
        out.append(f"CAST(NULL AS {sql_type}) AS {_quote_ident(f.name)}")
    return ", ".join(out)


def complete_tables(con: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> frozenset[str]:
    """Give each of `tables` a view with every column of its schema (idempotent).

    A table not written yet becomes an empty view; a table lacking columns of its schema
    (written before they were added) gets them as NULLs. Each table handled is listed in
    `TABLES_PRESENT`.

    Args:
        con: a connection from `connect`.
        tables: table names of `tv100.storage.schemas.SCHEMAS`.

    Returns:
        those of `tables` that really exist under the root.
    """
    existing = _relations(con)
    if TABLES_PRESENT not in existing:
        con.execute(f"CREATE TABLE {TABLES_PRESENT} (name VARCHAR, present BOOLEAN)")
    done = dict(con.sql(f"select name, present from {TABLES_PRESENT}").fetchall())
    wanted = list(dict.fromkeys(tables))
    for table in wanted:
        if table in done:
            continue
        schema, name = schema_for(table), _quote_ident(table)
        if table in existing:
            have = _columns(con, table)
            missing = [f for f in schema if f.name not in have]
            if missing:
                raw = _quote_ident(f"_raw_{table}")
                con.execute(f"ALTER VIEW {name} RENAME TO {raw}")
                con.execute(f"CREATE VIEW {name} AS SELECT *, {_nulls(con, missing)} FROM {raw}")
        else:
            con.execute(f"CREATE VIEW {name} AS SELECT {_nulls(con, schema)} WHERE false")
        done[table] = table in existing
        con.execute(f"INSERT INTO {TABLES_PRESENT} VALUES (?, ?)", [table, done[table]])
    return frozenset(t for t in wanted if done[t])
