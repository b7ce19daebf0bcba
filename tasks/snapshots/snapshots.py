"""Snapshots of finished builds: recording the data root's state, and reading them back.

A **snapshot** is one distinct state of the data root after a finished build. The build
flow's last task (`record_snapshot_task`) hashes every table (sha256 of its Parquet bytes,
the same hash `tv100.storage.tables.write_table` returns) and compares the combined hash
(``state_sha256``: sha256 of the ``{table: sha256}`` map as sorted JSON) with the latest
snapshot's. Equal: the build changed nothing, the latest snapshot id is returned and
nothing is written, so re-running a finished build leaves every table byte-identical.
Different: a new snapshot is recorded:

- its id is ``<UTC time, YYYYMMDDTHHMMSSZ>-<state_sha256[:8]>``: ids sort in time order
  and name the state they record (``-2``, ``-3`` … is appended in the unlikely case of a
  clash within one second);
- frozen copies of what `diff` and `rerank` need, byte copies of the `series`,
  `zeroshot` and `classes` tables, go to ``<root>/snapshots/<id>/<table>.parquet``
  (written once, never overwritten by a later snapshot; each copy's sha256 equals the
  table hash recorded);
- last (the commit point) one row is appended to the `snapshots` table: id, time, state
  hash, the build's resolved parameters and the table hashes as JSON, and counts (series,
  images downloaded ok, cleaned images, kept classes).

Only a change against the *latest* snapshot counts: a build that returns the data to an
earlier state records a new snapshot (with the earlier one's hash suffix), so `diff` of
the two latest shows the revert. Tables owned by this package (`snapshots`, `rerank`) and
`embeddings` (a per-model cache of image vectors that `rerank` adds newer models' rows
to; its effect on the build is in `zeroshot`) are not part of the state.

Comparing two snapshots is `tv100.tasks.snapshots.diff`; re-ranking a snapshot's kept
classes with a newer model is `tv100.tasks.snapshots.rerank`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot, file_sha256, write_bytes_atomic
from tv100.storage.schemas import SNAPSHOTS
from tv100.storage.tables import (
    list_tables,
    live_shards,
    read_parquet,
    read_table,
    table_exists,
    table_path,
    to_parquet_bytes,
    write_table,
)
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.snapshots.config import (
    EXCLUDED_TABLES,
    FROZEN_TABLES,
    SNAPSHOTS_DIR,
    SNAPSHOTS_TABLE,
    SnapshotRecord,
)


class SnapshotError(ValueError):
    """A snapshot that cannot be found or chosen (unknown id, too few snapshots)."""


def table_hashes(root: DataRoot) -> dict[str, str]:
    """``{table: sha256}`` of every table under the root except `EXCLUDED_TABLES`.

    A whole table hashes as its Parquet file's bytes; a table with live (not yet
    compacted) shards as the sha256 of its file hash and shard digests as sorted JSON.
    """
    out: dict[str, str] = {}
    for name, kind in list_tables(root).items():
        if name in EXCLUDED_TABLES:
            continue
        file_hash = file_sha256(root, table_path(root, name)) if kind != "shards" else None
        if kind == "file":
            out[name] = file_hash or ""
            continue
        shards = {}
        for shard in live_shards(root, name):
            with root.fs.open(root.path("tables", name, "_done", shard), "rb") as f:
                shards[shard] = f.read().decode().strip()
        blob = json.dumps({"file": file_hash, "shards": shards}, sort_keys=True)
        out[name] = hashlib.sha256(blob.encode()).hexdigest()
    return out


def state_sha256(hashes: Mapping[str, str]) -> str:
    """The combined hash of a ``{table: sha256}`` map (order-independent)."""
    return hashlib.sha256(json.dumps(dict(hashes), sort_keys=True).encode()).hexdigest()


def list_snapshots(root: DataRoot) -> list[dict[str, Any]]:
    """Rows of the `snapshots` table, oldest first (empty when there is none)."""
    if not table_exists(root, SNAPSHOTS_TABLE):
        return []
    rows = read_table(root, SNAPSHOTS_TABLE).to_pylist()
    return sorted(rows, key=lambda r: (r["created_at"], r["snapshot_id"]))


def _count(root: DataRoot, name: str, predicate: Any = None) -> int | None:
    if not table_exists(root, name):
        return None
    table = read_table(root, name)
    if predicate is not None:
        table = table.filter(predicate)
    return int(table.num_rows)


def _counts(root: DataRoot) -> dict[str, int | None]:
    n_cleaned = None
    if table_exists(root, "images"):
        n_cleaned = int(cleaned_images(root).num_rows)
    return {
        "n_series": _count(root, "series"),
        "n_images_ok": _count(root, "images", pc.equal(pc.field("status"), "ok")),
        "n_cleaned": n_cleaned,
        "n_kept": _count(root, "classes", pc.field("kept")),
    }


def _table_bytes(root: DataRoot, name: str) -> bytes:
    """The table's Parquet bytes: the file itself, or the shards serialised together."""
    if list_tables(root).get(name) == "file":
        with root.fs.open(table_path(root, name), "rb") as f:
            data: bytes = f.read()
        return data
    return to_parquet_bytes(read_table(root, name))


def snapshot_path(root: DataRoot, snapshot_id: str, name: str) -> str:
    """Where snapshot `snapshot_id` keeps its frozen copy of table `name`."""
    return root.path(SNAPSHOTS_DIR, snapshot_id, f"{name}.parquet")


def record_snapshot(
    root: DataRoot,
    parameters: Mapping[str, Any],
    flow_run_id: str | None = None,
    now: datetime | None = None,
) -> SnapshotRecord:
    """Record the data root's current state as a snapshot unless the latest one is it.

    Args:
        root: the data root (after a finished build).
        parameters: the build's resolved parameters (stored as sorted JSON).
        flow_run_id: the Prefect flow run that built it, if any.
        now: the creation time (default: now, UTC).

    Returns:
        A `SnapshotRecord`: `created` is False when the latest snapshot already recorded
        this state (nothing written).
    """
    droot = root.ensure()
    hashes = table_hashes(droot)
    state = state_sha256(hashes)
    existing = list_snapshots(droot)
    if existing and existing[-1]["state_sha256"] == state:
        return SnapshotRecord(
            snapshot_id=existing[-1]["snapshot_id"],
            created=False,
            state_sha256=state,
            previous=existing[-2]["snapshot_id"] if len(existing) > 1 else None,
        )
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    base = f"{created_at:%Y%m%dT%H%M%SZ}-{state[:8]}"
    taken = {r["snapshot_id"] for r in existing}
    snapshot_id, n = base, 2
    while snapshot_id in taken:
        snapshot_id, n = f"{base}-{n}", n + 1
    # Frozen copies first, the table row last: a row always has its copies.
    for name in FROZEN_TABLES:
        if table_exists(droot, name):
            write_bytes_atomic(
                droot, posixpath.join(SNAPSHOTS_DIR, snapshot_id, f"{name}.parquet"),
                _table_bytes(droot, name),
            )
    row = {
        "snapshot_id": snapshot_id,
        "created_at": created_at,
        "state_sha256": state,
        "parameters": json.dumps(dict(parameters), sort_keys=True, default=str),
        "table_hashes": json.dumps(hashes, sort_keys=True),
        **_counts(droot),
        "flow_run_id": flow_run_id,
    }
    table = pa.Table.from_pylist([*existing, row], schema=SNAPSHOTS)
    write_table(droot, SNAPSHOTS_TABLE, table.sort_by([("created_at", "ascending"),
                                                       ("snapshot_id", "ascending")]))
    return SnapshotRecord(
        snapshot_id=snapshot_id,
        created=True,
        state_sha256=state,
        previous=existing[-1]["snapshot_id"] if existing else None,
    )


def resolve_snapshot(snapshots: Sequence[Mapping[str, Any]], ref: str) -> dict[str, Any]:
    """The snapshot whose id is `ref` or, failing that, starts with it (uniquely).

    Raises:
        SnapshotError: no such snapshot, or a prefix matching several.
    """
    by_id = {r["snapshot_id"]: dict(r) for r in snapshots}
    if ref in by_id:
        return by_id[ref]
    matches = [sid for sid in by_id if ref and sid.startswith(ref)]
    if len(matches) == 1:
        return by_id[matches[0]]
    if matches:
        raise SnapshotError(
            f"snapshot {ref!r} is ambiguous: it starts {len(matches)} ids "
            f"({', '.join(matches[:3])}{', …' if len(matches) > 3 else ''})"
        )
    known = [r["snapshot_id"] for r in snapshots]
    hint = f"latest {known[-1]!r}" if known else "none recorded yet"
    raise SnapshotError(
        f"unknown snapshot {ref!r}; expected one of the {len(known)} ids in the `snapshots` "
        f"table ({hint})"
    )


def choose_pair(
    snapshots: Sequence[Mapping[str, Any]], a: str | None = None, b: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Snapshots A and B to compare: B defaults to the latest, A to the one before B.

    Raises:
        SnapshotError: an unknown id, or a default that does not exist.
    """
    rows = [dict(r) for r in snapshots]
    snap_a = resolve_snapshot(rows, a) if a is not None else None
    snap_b = resolve_snapshot(rows, b) if b is not None else None
    if snap_b is None:
        if not rows:
            raise SnapshotError(
                "fewer than two snapshots (found 0); every finished build records one"
            )
        snap_b = rows[-1]
    if snap_a is None:
        ids = [r["snapshot_id"] for r in rows]
        i = ids.index(snap_b["snapshot_id"])
        if i == 0:
            if len(rows) < 2:
                raise SnapshotError(
                    f"fewer than two snapshots (found {len(rows)}: {ids[0]!r}); a build that "
                    "changes any table records the next one"
                )
            raise SnapshotError(
                f"snapshot {ids[0]!r} is the first; no snapshot before it to compare with"
            )
        snap_a = rows[i - 1]
    return snap_a, snap_b


def read_frozen(root: DataRoot, snapshot_id: str, name: str) -> pa.Table | None:
    """A snapshot's frozen copy of table `name` (None when the build had no such table)."""
    path = snapshot_path(root, snapshot_id, name)
    if not root.fs.exists(path):
        return None
    with root.fs.open(path, "rb") as f:
        table: pa.Table = read_parquet(f).replace_schema_metadata(None)
    return table


@task(name="record-snapshot", cache_policy=NO_CACHE)
def record_snapshot_task(
    root: DataRoot, parameters: dict[str, Any], flow_run_id: str | None = None
) -> SnapshotRecord:
    """`record_snapshot` (uncached: it must look at the tables every time)."""
    return record_snapshot(root, parameters, flow_run_id)
