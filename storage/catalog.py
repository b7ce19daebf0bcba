"""A DuckDB catalog over a data root: one view per table, queryable ad hoc.

Used by ``tv100 sql``, the analysis code, the clean stage's `cleaned_images` and the tests;
every view reads the Parquet files directly, so the catalog is always as fresh as the
tables. `complete_tables` makes a connection safe for SQL written against the schemas
whatever stage a build reached. A corrupt table does not stop the others: its view raises
the table's one-line `CorruptTableError` when a query reads it, and nothing else.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable

import duckdb
import pyarrow as pa

from tv100.storage.root import DataRoot, open_atomic
from tv100.storage.schemas import SCHEMAS, schema_for
from tv100.storage.tables import (
    CorruptTableError,
    check_file,
    list_tables,
    live_shards,
    shard_path,
    table_path,
)

#: The table `complete_tables` records the tables it handled in: ``name`` and ``present``
#: (false for the empty stand-in of a table not written yet), so SQL can ask which exist.
TABLES_PRESENT = "_tables_present"
#: The table `connect` lists unreadable tables in (only when there are some): ``name``,
#: ``path``, ``reason``, ``content`` (the fields of their `CorruptTableError`).
TABLES_UNREADABLE = "_tables_unreadable"
#: The DuckDB database `write_catalog` leaves in the data root after each build.
CATALOG_FILE = "catalog.duckdb"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _files(root: DataRoot, name: str, kind: str) -> list[str]:
    """The files of table `name`: the whole file and the live shards (filesystem paths).

    Raises:
        CorruptTableError: the whole file is corrupt and there are done shards.
    """
    files = [table_path(root, name)] if kind in ("file", "both") else []
    if kind in ("shards", "both"):
        # Only live shards: ones already compacted into the file must not count twice.
        files += [shard_path(root, name, s) for s in live_shards(root, name)]
    return files


def _corrupt_file(root: DataRoot, name: str, files: list[str]) -> CorruptTableError | None:
    """The error of the first of `files` whose Parquet footer cannot be read, if any."""
    for path in files:
        try:
            check_file(root, name, path)
        except CorruptTableError as err:
            return err
        except FileNotFoundError:
            continue
    return None


def _unreadable_view(con: duckdb.DuckDBPyConnection, err: CorruptTableError) -> None:
    """A view of table ``err.table`` that raises `err`'s one line when a query reads it;
    its columns are the table's declared ones, so binding SQL against it still works."""
    schema = SCHEMAS.get(err.table)
    columns = _nulls(con, schema) if schema else "CAST(NULL AS VARCHAR) AS _unreadable"
    con.execute(
        f"CREATE OR REPLACE VIEW {_quote_ident(err.table)} AS "
        f"SELECT {columns} WHERE error({_quote_str(str(err))})"
    )


def _create_view(
    con: duckdb.DuckDBPyConnection, root: DataRoot, name: str, kind: str
) -> CorruptTableError | None:
    """The view of table `name` over its files; instead, the error of a corrupt one.

    Raises:
        duckdb.Error: DuckDB could not read the files, and none of them is corrupt.
    """
    try:
        files = _files(root, name, kind)
    except CorruptTableError as err:  # the whole file, beside done shards
        return err
    sources = ", ".join(_quote_str(_uri(root, p)) for p in files)
    try:
        con.execute(
            f"CREATE OR REPLACE VIEW {_quote_ident(name)} AS "
            f"SELECT * FROM read_parquet([{sources}], union_by_name = true)"
        )
    except duckdb.Error:  # DuckDB reads every file's footer when it binds the view
        bad = _corrupt_file(root, name, files)
        if bad is None:
            raise
        return bad
    return None


def _add_views(con: duckdb.DuckDBPyConnection, root: DataRoot) -> None:
    """A view per table under `root` on `con` (see `connect`)."""
    if not root.is_local:
        con.register_filesystem(root.fs)
    unreadable: list[CorruptTableError] = []
    for name, kind in list_tables(root).items():
        bad = _create_view(con, root, name, kind)
        if bad is not None:
            unreadable.append(bad)
            _unreadable_view(con, bad)
    if unreadable:
        con.execute(f"CREATE TABLE {TABLES_UNREADABLE} "
                    "(name VARCHAR, path VARCHAR, reason VARCHAR, content BOOLEAN)")
        con.executemany(f"INSERT INTO {TABLES_UNREADABLE} VALUES (?, ?, ?, ?)",
                        [[e.table, e.path, e.reason, e.content] for e in unreadable])


def connect(root: DataRoot) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per table under `root`.

    A table whose file (or a live shard) is not readable Parquet gets a view that raises
    its `CorruptTableError` line when read, and a row in `TABLES_UNREADABLE`; `query`
    raises that error itself.
    """
    con = duckdb.connect(":memory:")
    _add_views(con, root)
    return con


def _definitions(path: str) -> list[tuple[str, str]] | None:
    """The (name, SQL) of every view and table in the DuckDB file `path`; None when there
    is no such file or it cannot be opened."""
    if not os.path.isfile(path):
        return None
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error:
        return None
    try:
        rows = con.sql(
            "select view_name, sql from duckdb_views() where not internal "
            "union all select table_name, sql from duckdb_tables() order by 1"
        ).fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return [(str(n), str(q)) for n, q in rows]


def write_catalog(root: DataRoot) -> bool:
    """Write `CATALOG_FILE` in the data root: a DuckDB database with a view per table.

    ``duckdb DATA/catalog.duckdb`` then works from any directory: each view reads the
    table's Parquet files by absolute path (a URL on a remote root, which the ``duckdb``
    shell reads with its httpfs extension). The views are those ``tv100 sql`` sees, so a
    corrupt table's view raises its one line. Written atomically, and only when a view's
    definition changed: a rerun of a finished build leaves the file untouched.

    Returns:
        whether the file was (re)written.
    """
    with tempfile.TemporaryDirectory(prefix="tv100-catalog-") as tmp:
        new = os.path.join(tmp, CATALOG_FILE)
        con = duckdb.connect(new)
        try:
            _add_views(con, root)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        if root.is_local:
            final = root.path(CATALOG_FILE)
            if _definitions(new) == _definitions(final):
                return False
            _copy_in(root, new)
            return True
        existing = None
        if root.fs.exists(root.path(CATALOG_FILE)):
            old = os.path.join(tmp, "old.duckdb")
            root.fs.get(root.path(CATALOG_FILE), old)
            existing = _definitions(old)
        if existing is not None and existing == _definitions(new):
            return False
        _copy_in(root, new)
        return True


def _copy_in(root: DataRoot, local: str) -> None:
    """Copy the local file `local` to `CATALOG_FILE` under the root, atomically."""
    with open_atomic(root, CATALOG_FILE) as f, open(local, "rb") as src:
        shutil.copyfileobj(src, f)


def _uri(root: DataRoot, path: str) -> str:
    """`path` (under the root, in the filesystem's form) as the URL DuckDB reads."""
    return root.uri(posixpath.relpath(path, root.base))


def unreadable_error(con: duckdb.DuckDBPyConnection, err: duckdb.Error) -> CorruptTableError | None:
    """The `CorruptTableError` of the unreadable table whose view raised `err`, if any."""
    if TABLES_UNREADABLE not in _relations(con):
        return None
    text = str(err)
    for name, path, reason, content in con.sql(
        f"select name, path, reason, content from {TABLES_UNREADABLE}"
    ).fetchall():
        bad = CorruptTableError(name, path, reason, content)
        if str(bad) in text:
            return bad
    return None


def query(root: DataRoot, sql: str) -> pa.Table:
    """Run `sql` against the catalog and return the full result as Arrow.

    Raises:
        CorruptTableError: the query read a table whose file is not readable Parquet.
        duckdb.Error: any other failure of the query.
    """
    con = connect(root)
    try:
        rel = con.sql(sql)
        if rel is None:  # a statement with no result set (SET, CREATE ...)
            return pa.table({})
        result: pa.Table = rel.to_arrow_table()
        return result
    except duckdb.Error as err:
        bad = unreadable_error(con, err)
        if bad is not None:
            raise bad from err
        raise
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
