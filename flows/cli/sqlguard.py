"""``tv100 sql`` read-only: queries only, over files under the data root, configuration locked.

`tv100.storage.catalog.connect` gives a DuckDB connection with a view per table, and DuckDB
as it comes reads and writes any file (``read_csv('/etc/passwd')``, ``COPY ... TO``, ``ATTACH``,
a ``COPY`` over ``tables/series.parquet``), loads extensions and changes its own settings.
Two locks close that, each enough for what it covers:

- the connection: external access only to the data root (``allowed_directories`` plus
  ``enable_external_access = false``; DuckDB adds its own spill folder), no extension
  auto-loading, then ``lock_configuration = true``, so no later ``SET`` undoes it;
- the statements: every statement of the query is parsed first (``extract_statements``) and
  only ``SELECT`` runs (``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and ``FROM t`` are ``SELECT`` to
  DuckDB), and ``EXPLAIN [ANALYZE]`` of one: ``COPY`` into the data root itself, ``INSERT``,
  ``CREATE``, ``ATTACH``, ``SET``, ``PRAGMA``, ``INSTALL``/``LOAD``, ``EXPORT``, ``CALL``, ...
  are refused before anything runs.

``tv100 sql --unsafe`` skips both (the catalog connection as it is), for a data root you
trust on your own machine.
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

from tv100.storage.catalog import connect, unreadable_error
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SCHEMAS
from tv100.storage.tables import list_tables
from tv100.tasks.prerequisites import WRITTEN_BY, nothing_built

#: Statement types a read-only query may run (an EXPLAIN only of these, see `_explained`).
READ_ONLY_TYPES = frozenset({duckdb.StatementType.SELECT})
UNSAFE_HINT = (
    "tv100 sql is read-only; --unsafe allows it (local only: for a data root you trust, on "
    "your own machine)"
)
#: The head of an EXPLAIN statement, after any comments: what follows is what it explains.
_EXPLAIN = re.compile(
    r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*explain\s+(?:analy[sz]e\s+)?", re.IGNORECASE | re.DOTALL
)
_SNIPPET = 60
#: DuckDB's message for a name that is no table or view (its hints follow on other lines).
_NO_TABLE = re.compile(r"Table with name ([^\s!]+) does not exist", re.IGNORECASE)


class SqlRefused(ValueError):
    """A statement or file access the read-only ``tv100 sql`` does not allow."""


def allowed_directories(root: DataRoot) -> list[str]:
    """The folders a read-only connection may read: the data root, as DuckDB spells paths.

    DuckDB names a file of a registered fsspec filesystem both ``proto://path`` and
    ``proto:///path`` on the way to opening it, so a remote root is allowed in both forms.
    """
    base = root.base.rstrip("/")
    if root.is_local:
        return [base + "/"]
    path = base.lstrip("/")
    return [f"{root.protocol}://{path}/", f"{root.protocol}:///{path}/"]


def lock_read_only(con: duckdb.DuckDBPyConnection, root: DataRoot) -> None:
    """Limit `con` to reading files under `root`, and lock its configuration.

    Call it after the views are made (`connect`): it only narrows what they may read to
    where they already read.
    """
    con.execute("SET allowed_directories = $dirs", {"dirs": allowed_directories(root)})
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def _snippet(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


def _statement_type(statement: duckdb.Statement) -> duckdb.StatementType | None:
    """The statement's type; None for one the Python binding has no name for."""
    try:
        return statement.type
    except ValueError:  # e.g. UPDATE EXTENSIONS: "29 is not a valid StatementType"
        return None


def _explained(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """Whether `sql`, an EXPLAIN statement, explains read-only statements only."""
    m = _EXPLAIN.match(sql)
    if m is None:
        return False
    try:  # EXPLAIN (FORMAT ...) and other forms this does not take apart are refused
        explained = con.extract_statements(sql[m.end() :])
    except (duckdb.ParserException, ValueError):
        return False
    return bool(explained) and all(_statement_type(s) in READ_ONLY_TYPES for s in explained)


def read_only_statements(
    con: duckdb.DuckDBPyConnection, sql: str
) -> list[duckdb.Statement]:
    """The statements of `sql`, each checked to be read-only.

    Args:
        con: the connection that will run them (it parses them).
        sql: one or more statements.

    Returns:
        The parsed statements, in order; run these, not `sql` again.

    Raises:
        SqlRefused: naming the first statement that is not read-only, and ``--unsafe``.
        duckdb.ParserException: `sql` is not valid SQL.
    """
    statements = con.extract_statements(sql)
    for s in statements:
        kind = _statement_type(s)
        if kind in READ_ONLY_TYPES:
            continue
        if kind is duckdb.StatementType.EXPLAIN and _explained(con, s.query):
            continue
        name = kind.name if kind is not None else "a statement of a type unknown to tv100"
        raise SqlRefused(
            f"refused {name} ({_snippet(s.query)!r}): only SELECT and EXPLAIN of a SELECT "
            f"run; {UNSAFE_HINT}"
        )
    return statements


def read_only_query(root: DataRoot, sql: str) -> pa.Table:
    """Run `sql` over the catalog of `root`, read-only (see the module docstring).

    Args:
        root: the data root.
        sql: one or more read-only statements; the last one's result is returned.

    Returns:
        The last statement's full result as Arrow (an empty table when it has none).

    Raises:
        SqlRefused: a statement that is not read-only, or a file outside the data root.
        CorruptTableError: the query read a table whose file is not readable Parquet.
        duckdb.Error: the query failed otherwise.
    """
    con = connect(root)
    try:
        lock_read_only(con, root)
        statements = read_only_statements(con, sql)
        if not statements:
            return pa.table({})
        try:
            # Only the last runs (as `con.sql` of the whole text would): the ones before are
            # SELECTs, whose results nobody sees.
            rel = con.sql(statements[-1])
            if rel is None:
                return pa.table({})
            result: pa.Table = rel.to_arrow_table()
        except duckdb.PermissionException as err:
            raise SqlRefused(
                f"refused: {str(err).splitlines()[0]} (only files under the data root "
                f"{root.url!r} are read); {UNSAFE_HINT}"
            ) from err
        except duckdb.Error as err:  # as `query` does: a corrupt table is named by its error
            bad = unreadable_error(con, err)
            if bad is not None:
                raise bad from err
            raise
        return result
    finally:
        con.close()


def error_text(root: DataRoot, err: duckdb.Error) -> str:
    """What ``tv100 sql`` says about a failed query: DuckDB's whole message (its hints,
    ``Did you mean "series"?``, and the position in the query included), or, for a table
    of tv100 not built yet, which command builds it (on a root with no table at all:
    nothing is built there yet)."""
    text = str(err).strip()
    found = _NO_TABLE.search(text) if isinstance(err, duckdb.CatalogException) else None
    if found:
        if not list_tables(root):
            return nothing_built(root)
        name = found.group(1).strip('"').lower()
        if name in SCHEMAS and name in WRITTEN_BY:
            return (f"table `{name}` is not built yet under {root.url!r}: run "
                    f"`tv100 {WRITTEN_BY[name]} ...` first")
    return f"query failed: {text}"
