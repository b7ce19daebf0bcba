"""Healing corrupt tables when a build starts: derived ones are rebuilt, the others are
moved aside and fetched again.

A table file that is not readable Parquet (truncated, empty, garbage: its footer, one small
read at the end of the file, cannot be parsed) would fail every stage that reads it, run
after run, because stages read a table before they rewrite it. `heal_tables` checks every
table file's footer and clears the way:

- a *derived* table (`DERIVED_TABLES`: computed by a stage from other tables) is removed,
  and the stage that writes it rebuilds it from its inputs;
- any other table (fetched from the web: ``series``, ``discover_fetches``, ``search_hits``,
  ``search_pages``, ``images``; or a record no input can recompute: ``metrics``,
  ``class_metrics``, ``snapshots``; or one tv100 does not know) is moved aside to
  ``<name>.parquet.corrupt-<UTC time>``, kept for the user, and its stage fetches it
  again (the downloader, finding no ``images`` rows, downloads every hit again; the image
  store is content-addressed, so the files it has are rewritten unchanged);
- a corrupt done shard of a sharded table loses its done-marker and its data, and its
  stage redoes it.

A file that cannot be read at all (permissions, I/O) is not healed: its
`tv100.storage.tables.CorruptTableError` is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tv100.storage.root import DataRoot
from tv100.storage.tables import (
    TABLES_DIR,
    CorruptTableError,
    check_file,
    done_shards,
    list_tables,
    live_shards,
    shard_path,
    table_path,
)

#: Tables a stage computes from other tables only: removed when corrupt, rebuilt by the
#: stage (clean: quality, hashes, duplicates; rank: embeddings, relevance, zeroshot,
#: classes; train: splits; refresh: rerank). Every other table is moved aside when corrupt.
DERIVED_TABLES = frozenset(
    {"quality", "hashes", "duplicates", "embeddings", "relevance", "zeroshot", "classes",
     "splits", "rerank"}
)
#: What a corrupt file's name gets when it is moved aside (then a UTC time).
CORRUPT_SUFFIX = ".corrupt-"

Action = Literal["removed", "moved_aside", "shard_removed"]


@dataclass(frozen=True)
class HealedTable:
    """One corrupt table file `heal_tables` dealt with.

    Attributes:
        table: the table's name.
        path: the corrupt file (a whole table or one shard's data).
        reason: why it could not be read, on one line.
        action: ``removed`` (a derived table, rebuilt by its stage), ``moved_aside`` (to
            `moved_to`; its stage fetches it again) or ``shard_removed`` (with its
            done-marker; its stage redoes the shard).
        moved_to: where a moved-aside file now is.
    """

    table: str
    path: str
    reason: str
    action: Action
    moved_to: str | None = None

    @property
    def message(self) -> str:
        """One line for the log and the user: the table, the file and what happens now."""
        head = f"table {self.table!r} was corrupt ({self.reason}): "
        if self.action == "moved_aside":
            return f"{head}moved {self.path} aside to {self.moved_to}; it is fetched again"
        if self.action == "removed":
            return f"{head}removed {self.path}; its stage rebuilds it from its inputs"
        return f"{head}removed the shard {self.path}; its stage redoes it"


def corrupt_name(path: str, now: datetime) -> str:
    """The name a corrupt file is moved aside to: ``<path>.corrupt-<YYYYmmddTHHMMSSZ>``."""
    return f"{path}{CORRUPT_SUFFIX}{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def _problem(root: DataRoot, name: str, path: str) -> CorruptTableError | None:
    """The error of `path` when its bytes are not Parquet; None when it is (or is gone).

    Raises:
        CorruptTableError: the file cannot be read at all (not something healing fixes).
    """
    try:
        check_file(root, name, path)
    except CorruptTableError as err:
        if not err.content:
            raise
        return err
    except FileNotFoundError:
        return None
    return None


def _move_aside(root: DataRoot, path: str, now: datetime) -> str:
    dest = corrupt_name(path, now)
    n = 1
    while root.fs.exists(dest):  # healed twice within a second
        n += 1
        dest = f"{corrupt_name(path, now)}-{n}"
    root.fs.mv(path, dest)
    return str(dest)


def _heal_file(root: DataRoot, name: str, now: datetime) -> HealedTable | None:
    path = table_path(root, name)
    err = _problem(root, name, path)
    if err is None:
        return None
    if name in DERIVED_TABLES:
        root.fs.rm(path)
        return HealedTable(name, path, err.reason, "removed")
    return HealedTable(name, path, err.reason, "moved_aside", _move_aside(root, path, now))


def _heal_shards(root: DataRoot, name: str) -> list[HealedTable]:
    healed = []
    for shard in live_shards(root, name):
        path = shard_path(root, name, shard)
        if root.fs.exists(path):
            err = _problem(root, name, path)
            if err is None:
                continue
            reason = err.reason
        else:
            reason = "its data file is missing"
        # The marker first: a crash in between leaves data without a marker, never used.
        root.fs.rm(root.path(TABLES_DIR, name, "_done", shard))
        if root.fs.exists(path):
            root.fs.rm(path)
        healed.append(HealedTable(name, path, reason, "shard_removed"))
    return healed


def heal_tables(root: DataRoot, now: datetime | None = None) -> tuple[HealedTable, ...]:
    """Check every table file's footer under `root`; deal with the corrupt ones (see the
    module's docstring). Cheap: one footer read per whole table and per live shard.

    Args:
        root: the data root.
        now: the time in the names of moved-aside files (default: now).

    Returns:
        What was healed, in table order; empty when every table is readable.

    Raises:
        CorruptTableError: a table file that cannot be read at all (permissions, I/O).
    """
    now = now or datetime.now(UTC)
    healed: list[HealedTable] = []
    for name, kind in list_tables(root).items():
        if kind in ("file", "both"):
            fixed = _heal_file(root, name, now)
            healed += [fixed] if fixed else []
        if done_shards(root, name):
            healed += _heal_shards(root, name)
    return tuple(healed)

