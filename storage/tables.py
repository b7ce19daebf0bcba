"""Atomic, idempotent, resumable Parquet tables under a data root.

Whole tables live at ``tables/<name>.parquet`` and are replaced by temp file + rename; a
write whose bytes equal the file already there does nothing, so re-running a finished
build leaves every table byte-identical. Sharded tables live at
``tables/<name>/part-<shard>.parquet``; each shard's data is written first and its
done-marker ``tables/<name>/_done/<shard>`` last, so a resumed stage skips done shards.

Every read goes through `_open_parquet`: a file that is not readable Parquet (truncated,
empty, garbage, unreadable) raises `CorruptTableError`, one line naming the table, the
file and the fix. `tv100.storage.heal` repairs such tables when a build starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tv100.storage.root import DataRoot, DataRootError, write_bytes_atomic
from tv100.storage.schemas import SCHEMAS

TABLES_DIR = "tables"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SHARD_RE = re.compile(r"^[A-Za-z0-9_.=-]+$")
ABSORBED_KEY = b"tv100.absorbed_shards"
#: Schema metadata keys a table keeps through `write_table` (`table_metadata` reads them):
#: what a stage records about how the rows were made, e.g. for reusing them on a refresh.
KEPT_METADATA_PREFIX = b"tv100."
_SOURCE_RE = re.compile(r"^Could not open Parquet input source '[^']*': ")
#: What to do about a corrupt table (`tv100.storage.heal` does it at a build's start).
CORRUPT_FIX = "delete it, or rerun `tv100 build` (it rebuilds or re-fetches the table)"


class CorruptTableError(DataRootError):
    """A table file that cannot be read as Parquet: truncated, empty, garbage, unreadable.

    Its message is one line: the table, the file, what is wrong and what to do.

    Attributes:
        table: the table's name.
        path: the file (a whole table or one of its shards), in the filesystem's form.
        reason: what reading it reported, on one line.
        content: True when the file's bytes are bad (`tv100.storage.heal` can repair the
            table); False when the file could not be read at all (permissions, I/O).
    """

    def __init__(self, table: str, path: str, reason: str, content: bool = True) -> None:
        self.table, self.path, self.reason, self.content = table, path, reason, content
        what, fix = ("is corrupt", CORRUPT_FIX) if content else (
            "cannot be read", "check that it is readable")
        super().__init__(f"table {table!r} {what}: {path} ({reason}); {fix}")

    def __reduce__(self) -> tuple[Any, tuple[str, str, str, bool]]:
        return (CorruptTableError, (self.table, self.path, self.reason, self.content))


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    text = _SOURCE_RE.sub("", text)  # pyarrow's "'<Buffer>'" names no file: the path does
    return text if len(text) <= 200 else text[:197] + "..."


def read_parquet(f: Any) -> pa.Table:
    """All of one Parquet file, read from the open file object `f` (any fsspec file).

    Through `pq.ParquetFile`, never `pq.read_table` of a Python file object: the latter's
    dataset scanner releases the file on one of Arrow's threads after the read has
    returned, and that release needs the GIL. When the process ends meanwhile, Python ends
    that thread, and the C++ runtime aborts the process (``terminate called without an
    active exception``, exit 134). That happened in about one in four processes that read a
    table just before exiting.
    """
    return pq.ParquetFile(f).read()


def _open_parquet(root: DataRoot, name: str, path: str, footer_only: bool = False) -> Any:
    """Read the Parquet file `path` of table `name`: its footer (`pq.FileMetaData`, one
    small read at the end of the file) or all of it (a `pa.Table`, no schema metadata).

    Raises:
        CorruptTableError: the file is not readable Parquet.
        FileNotFoundError: the file is not there (gone meanwhile).
    """
    try:
        with root.fs.open(path, "rb") as f:
            if footer_only:
                return pq.read_metadata(f)
            return read_parquet(f).replace_schema_metadata(None)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as err:
        # pyarrow's own OSErrors (bad thrift, short reads) carry no errno: the bytes are bad
        io_error = isinstance(err, OSError) and err.errno is not None
        raise CorruptTableError(name, path, _reason(err), content=not io_error) from err


def check_file(root: DataRoot, name: str, path: str) -> None:
    """Check cheaply that `path` (a file of table `name`) is Parquet: read its footer.

    Raises:
        CorruptTableError: it is not (truncated, empty, garbage, unreadable).
        FileNotFoundError: the file is not there.
    """
    _open_parquet(root, name, path, footer_only=True)


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"table name {name!r} is invalid; expected lower_snake_case")


def conform(name: str, table: pa.Table, schema: pa.Schema | None = None) -> pa.Table:
    """Cast `table` to the declared schema of `name` (column order included).

    Raises:
        ValueError: naming the table and the missing or extra columns.
    """
    schema = schema or SCHEMAS.get(name)
    if schema is None:
        raise ValueError(
            f"table {name!r} has no declared schema; declare it in storage/schemas.py "
            "or pass schema="
        )
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in schema.names]
    if missing or extra:
        raise ValueError(
            f"table {name!r} does not match its schema: missing columns {missing}, "
            f"unexpected columns {extra}"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        raise ValueError(f"table {name!r} cannot be cast to its schema: {err}") from err


def to_parquet_bytes(table: pa.Table) -> bytes:
    """Serialise deterministically: same rows in, same bytes out."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def table_path(root: DataRoot, name: str) -> str:
    _check_name(name)
    return root.path(TABLES_DIR, f"{name}.parquet")


def write_table(
    root: DataRoot, name: str, table: pa.Table, schema: pa.Schema | None = None
) -> str:
    """Write a whole table atomically; a no-op when the stored bytes are already equal.

    The table's schema metadata under ``tv100.`` keys is stored with it (`table_metadata`).

    Returns:
        the sha256 of the stored Parquet bytes (a content hash to pass between tasks).
    """
    _check_name(name)
    kept = {k: v for k, v in (table.schema.metadata or {}).items()
            if k.startswith(KEPT_METADATA_PREFIX)}
    conformed = conform(name, table, schema)
    if kept:  # the stage's own notes (``tv100.*`` keys) stay with the rows
        conformed = conformed.replace_schema_metadata(kept)
    data = to_parquet_bytes(conformed)
    digest = hashlib.sha256(data).hexdigest()
    final = table_path(root, name)
    if root.fs.exists(final):
        with root.fs.open(final, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() == digest:
                return digest
    write_bytes_atomic(root, posixpath.join(TABLES_DIR, f"{name}.parquet"), data)
    return digest


def table_metadata(root: DataRoot, name: str) -> dict[str, str]:
    """The ``tv100.*`` schema metadata stored with the whole table `name` (its footer only);
    empty when the table has no whole file.

    Raises:
        CorruptTableError: the file is not readable Parquet.
    """
    path = table_path(root, name)
    if not root.fs.exists(path):
        return {}
    meta = _open_parquet(root, name, path, footer_only=True).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()
            if k.startswith(KEPT_METADATA_PREFIX)}


def table_exists(root: DataRoot, name: str) -> bool:
    return bool(root.fs.exists(table_path(root, name)) or live_shards(root, name))


def _absorbed(root: DataRoot, name: str) -> set[str]:
    """Shards already folded into the whole table by `compact` (listed in its metadata).

    Raises:
        CorruptTableError: the whole table's file is not readable Parquet.
    """
    raw = table_metadata(root, name).get(ABSORBED_KEY.decode())
    return set(json.loads(raw)) if raw else set()


def live_shards(root: DataRoot, name: str) -> list[str]:
    """Done shards not yet absorbed into the whole table, in shard order.

    Raises:
        CorruptTableError: there are done shards and the whole table's file is corrupt.
    """
    done = done_shards(root, name)
    return sorted(done - _absorbed(root, name)) if done else []


def read_table(root: DataRoot, name: str) -> pa.Table:
    """Read a table: the whole file plus the done shards not yet compacted into it.

    A table written before a column was added to its schema is read without it; a column
    only some parts have (shards written since) is null in the others. `compact` adds it.

    Raises:
        FileNotFoundError: naming the table and where it was looked for.
        CorruptTableError: the file or a shard is not readable Parquet.
    """
    path = table_path(root, name)
    parts = []
    if root.fs.exists(path):
        parts.append(_open_parquet(root, name, path))
    for shard in live_shards(root, name):
        parts.append(_open_parquet(root, name, shard_path(root, name, shard)))
    if not parts:
        raise FileNotFoundError(
            f"table {name!r} not found under {root.url!r} (looked for {path} and shards)"
        )
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")


def _add_new_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with the nullable columns `schema` gained since it was written, as nulls."""
    for f in schema:
        if f.nullable and f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table


def compact(
    root: DataRoot, name: str, sort_keys: list[str], schema: pa.Schema | None = None
) -> str:
    """Fold done shards into the whole table, sorted by `sort_keys`, then drop the shards.

    The whole file records which shards it absorbed, so a crash between writing it and
    deleting the shards never double-counts rows; a rerun finishes the cleanup. Nullable
    columns added to the schema since older rows were written are null in those rows.
    Returns the sha256 of the whole table's bytes.
    """
    shards = done_shards(root, name)
    table = read_table(root, name)
    absorbed = sorted(_absorbed(root, name) | shards)
    declared = schema or SCHEMAS.get(name)
    if declared is not None:
        table = _add_new_columns(table, declared)
    table = conform(name, table, schema).sort_by([(k, "ascending") for k in sort_keys])
    table = table.replace_schema_metadata({ABSORBED_KEY: json.dumps(absorbed)})
    data = to_parquet_bytes(table)
    digest = hashlib.sha256(data).hexdigest()
    final = table_path(root, name)
    same = False
    if root.fs.exists(final):
        with root.fs.open(final, "rb") as f:
            same = hashlib.sha256(f.read()).hexdigest() == digest
    if not same:
        write_bytes_atomic(root, posixpath.join(TABLES_DIR, f"{name}.parquet"), data)
    shard_dir = root.path(TABLES_DIR, name)
    if root.fs.exists(shard_dir):
        root.fs.rm(shard_dir, recursive=True)
    return digest


def shard_path(root: DataRoot, name: str, shard: str) -> str:
    _check_name(name)
    if not _SHARD_RE.match(shard):
        raise ValueError(f"shard id {shard!r} is invalid; expected [A-Za-z0-9_.=-]+")
    return root.path(TABLES_DIR, name, f"part-{shard}.parquet")


def write_shard(
    root: DataRoot, name: str, shard: str, table: pa.Table, schema: pa.Schema | None = None
) -> str:
    """Append one shard: data first (atomic), done-marker last. Returns the data's sha256."""
    path = shard_path(root, name, shard)
    data = to_parquet_bytes(conform(name, table, schema))
    digest = hashlib.sha256(data).hexdigest()
    rel = posixpath.relpath(path, root.base)
    write_bytes_atomic(root, rel, data)
    write_bytes_atomic(root, posixpath.join(TABLES_DIR, name, "_done", shard), digest.encode())
    return digest


def done_shards(root: DataRoot, name: str) -> set[str]:
    """Ids of the shards of `name` whose done-marker exists."""
    _check_name(name)
    d = root.path(TABLES_DIR, name, "_done")
    if not root.fs.exists(d):
        return set()
    return {
        posixpath.basename(p)
        for p in root.fs.ls(d, detail=False)
        if not posixpath.basename(p).startswith(".tmp-")
    }


def list_tables(root: DataRoot) -> dict[str, str]:
    """Map every table under the root to ``"file"``, ``"shards"`` or ``"both"``.

    Corrupt files are listed too (reading them raises `CorruptTableError`); a corrupt whole
    file beside done shards is ``"both"``, as which of them it absorbed cannot be read.
    """
    d = root.path(TABLES_DIR)
    if not root.fs.exists(d):
        return {}
    out: dict[str, str] = {}
    for info in root.fs.ls(d, detail=True):
        base = posixpath.basename(info["name"].rstrip("/"))
        if base.startswith("."):
            continue
        if info["type"] == "file" and base.endswith(".parquet"):
            name = base[: -len(".parquet")]
            out[name] = "both" if out.get(name) == "shards" else "file"
    for name in [n for n in out]:
        try:
            live = bool(live_shards(root, name))
        except CorruptTableError:
            live = True
        if out[name] == "file" and live:
            out[name] = "both"
    for info in root.fs.ls(d, detail=True):
        base = posixpath.basename(info["name"].rstrip("/"))
        if info["type"] == "directory" and _NAME_RE.match(base) and base not in out:
            if live_shards(root, base):
                out[base] = "shards"
    return dict(sorted(out.items()))


def column_pairs(
    rows: pa.Table | Iterable[tuple[Any, Any]], first: str, second: str, what: str
) -> list[tuple[Any, Any]]:
    """``(first, second)`` of every row of a table, or the pairs themselves.

    Raises:
        ValueError: a table without one of the columns, naming `what` (the input) and them.
    """
    if not isinstance(rows, pa.Table):
        return [(a, b) for a, b in rows]
    for col in (first, second):
        if col not in rows.column_names:
            raise ValueError(
                f"{what} lacks column {col!r}; expected {first} and {second}, "
                f"got {rows.column_names}"
            )
    return list(
        zip(rows.column(first).to_pylist(), rows.column(second).to_pylist(), strict=True)
    )
