"""Snapshots of finished builds, the diff between two of them, and re-ranking old classes.

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
the two latest shows the revert. Tables owned by this module (`snapshots`, `rerank`) and
`embeddings` (a per-model cache of image vectors that `rerank` adds newer models' rows
to; its effect on the build is in `zeroshot`) are not part of the state.

`diff_snapshots` lists series added and removed between two snapshots, series whose
zero-shot top-1 moved by more than a threshold (per model present in both), and classes
whose kept status changed. `rerank_table` compares the kept classes' old accuracy with a
newer model's zero-shot top-1: a class is *still unseen* while its new top-1 is at most
the threshold, by default ``max(2 / n_classes, 0.1)`` (twice chance among the candidates
it is classified among, and never below 10%).
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
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot, file_sha256, resolve_root, write_bytes_atomic
from tv100.storage.schemas import RERANK, SNAPSHOTS
from tv100.storage.tables import (
    list_tables,
    live_shards,
    read_table,
    table_exists,
    table_path,
    to_parquet_bytes,
    write_table,
)

SNAPSHOTS_TABLE = "snapshots"
RERANK_TABLE = "rerank"
#: Folder under the data root holding each snapshot's frozen tables.
SNAPSHOTS_DIR = "snapshots"
#: The tables copied into every snapshot (what `diff` and `rerank --since` read).
FROZEN_TABLES = ("series", "zeroshot", "classes")
#: Tables that are not part of a build's state (see the module docstring).
EXCLUDED_TABLES = frozenset({SNAPSHOTS_TABLE, RERANK_TABLE, "embeddings"})
DEFAULT_DIFF_THRESHOLD = 0.05


class SnapshotError(ValueError):
    """A snapshot that cannot be found or chosen (unknown id, too few snapshots)."""


# --------------------------------------------------------------------------- state


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
    from tv100.tasks.clean.cleaned import cleaned_images

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
    return root.path(SNAPSHOTS_DIR, snapshot_id, f"{name}.parquet")


def record_snapshot(
    root: DataRoot | str,
    parameters: Mapping[str, Any],
    flow_run_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record the data root's current state as a snapshot unless the latest one is it.

    Args:
        root: the data root (after a finished build).
        parameters: the build's resolved parameters (stored as sorted JSON).
        flow_run_id: the Prefect flow run that built it, if any.
        now: the creation time (default: now, UTC).

    Returns:
        ``{"snapshot_id", "created", "state_sha256", "previous"}``: `created` is False when
        the latest snapshot already recorded this state (nothing written); `previous` is the
        id of the snapshot before it (None for the first).
    """
    droot = (root if isinstance(root, DataRoot) else resolve_root(root)).ensure()
    hashes = table_hashes(droot)
    state = state_sha256(hashes)
    existing = list_snapshots(droot)
    if existing and existing[-1]["state_sha256"] == state:
        return {
            "snapshot_id": existing[-1]["snapshot_id"],
            "created": False,
            "state_sha256": state,
            "previous": existing[-2]["snapshot_id"] if len(existing) > 1 else None,
        }
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
    return {
        "snapshot_id": snapshot_id,
        "created": True,
        "state_sha256": state,
        "previous": existing[-1]["snapshot_id"] if existing else None,
    }


# --------------------------------------------------------------------------- choosing


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
        table: pa.Table = pq.read_table(f).replace_schema_metadata(None)
    return table


# --------------------------------------------------------------------------- diff


def _rows(table: pa.Table | None, columns: Sequence[str]) -> list[dict[str, Any]]:
    if table is None:
        return []
    return table.select([c for c in columns if c in table.column_names]).to_pylist()


def _brief(snap: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "snapshot_id": snap["snapshot_id"],
        "created_at": snap["created_at"].isoformat(),
        "n_series": snap.get("n_series"),
        "n_kept": snap.get("n_kept"),
    }


def diff_snapshots(
    root: DataRoot | str,
    a: str | None = None,
    b: str | None = None,
    threshold: float = DEFAULT_DIFF_THRESHOLD,
) -> dict[str, Any]:
    """What changed from snapshot A to snapshot B (defaults as in `choose_pair`).

    Returns:
        ``{"a", "b", "threshold", "models", "added", "removed", "moved", "classes"}``:
        `added`/`removed` list series (series_id, title) in one snapshot's `series` only;
        `moved` lists (model_key, series_id, title, top1_a, top1_b, delta) where a model
        present in both snapshots classified the series in both and its top-1 changed by
        more than `threshold` (largest change first); `classes` lists series whose kept
        status differs (a series absent from a snapshot counts as not kept), with the
        reason and accuracy on each side; `models` gives each side's model keys.

    Raises:
        SnapshotError: as `choose_pair`.
        ValueError: a threshold outside 0..1.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r}; expected 0..1 (a top-1 accuracy change)")
    droot = root if isinstance(root, DataRoot) else resolve_root(root)
    snap_a, snap_b = choose_pair(list_snapshots(droot), a, b)
    ida, idb = snap_a["snapshot_id"], snap_b["snapshot_id"]

    series_a = {r["series_id"]: r for r in _rows(read_frozen(droot, ida, "series"),
                                                 ["series_id", "title"])}
    series_b = {r["series_id"]: r for r in _rows(read_frozen(droot, idb, "series"),
                                                 ["series_id", "title"])}
    added = [series_b[s] for s in sorted(set(series_b) - set(series_a))]
    removed = [series_a[s] for s in sorted(set(series_a) - set(series_b))]

    zcols = ["model_key", "series_id", "title", "top1"]
    zs_a = {(r["model_key"], r["series_id"]): r
            for r in _rows(read_frozen(droot, ida, "zeroshot"), zcols)}
    zs_b = {(r["model_key"], r["series_id"]): r
            for r in _rows(read_frozen(droot, idb, "zeroshot"), zcols)}
    moved = []
    for key in sorted(set(zs_a) & set(zs_b)):
        ta, tb = zs_a[key]["top1"], zs_b[key]["top1"]
        if ta is None or tb is None or abs(tb - ta) <= threshold:
            continue
        moved.append({
            "model_key": key[0], "series_id": key[1], "title": zs_b[key]["title"],
            "top1_a": ta, "top1_b": tb, "delta": tb - ta,
        })
    moved.sort(key=lambda r: (r["model_key"], -abs(r["delta"]), r["series_id"]))

    ccols = ["series_id", "title", "kept", "reason", "accuracy"]
    cl_a = {r["series_id"]: r for r in _rows(read_frozen(droot, ida, "classes"), ccols)}
    cl_b = {r["series_id"]: r for r in _rows(read_frozen(droot, idb, "classes"), ccols)}
    classes = []
    for sid in sorted(set(cl_a) | set(cl_b)):
        ra, rb = cl_a.get(sid, {}), cl_b.get(sid, {})
        if bool(ra.get("kept")) == bool(rb.get("kept")):
            continue
        classes.append({
            "series_id": sid, "title": rb.get("title") or ra.get("title"),
            "kept_a": ra.get("kept"), "kept_b": rb.get("kept"),
            "reason_a": ra.get("reason"), "reason_b": rb.get("reason"),
            "accuracy_a": ra.get("accuracy"), "accuracy_b": rb.get("accuracy"),
        })
    return {
        "a": _brief(snap_a),
        "b": _brief(snap_b),
        "threshold": threshold,
        "models": {
            "a": sorted({k for k, _ in zs_a}),
            "b": sorted({k for k, _ in zs_b}),
        },
        "added": added,
        "removed": removed,
        "moved": moved,
        "classes": classes,
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def format_diff(diff: Mapping[str, Any]) -> str:
    """`diff_snapshots`' result as readable text (one section per kind of change)."""
    lines = []
    for side in ("a", "b"):
        s = diff[side]
        lines.append(
            f"snapshot {side.upper()}  {s['snapshot_id']}  ({s['created_at']}; "
            f"{s['n_series'] if s['n_series'] is not None else 'n/a'} series, "
            f"{s['n_kept'] if s['n_kept'] is not None else 'n/a'} kept)"
        )

    def section(title: str, rows: list[str]) -> None:
        lines.append(f"{title} ({len(rows)}):" if rows else f"{title}: none")
        lines.extend(f"  {r}" for r in rows)

    section("series added", [f"{r['series_id']}  {r['title']}" for r in diff["added"]])
    section("series removed", [f"{r['series_id']}  {r['title']}" for r in diff["removed"]])
    section(
        f"zero-shot top-1 moved by more than {100 * diff['threshold']:.1f} points",
        [
            f"{r['model_key']}  {r['series_id']}  {r['title']}  {_pct(r['top1_a'])} -> "
            f"{_pct(r['top1_b'])} ({100 * r['delta']:+.1f})"
            for r in diff["moved"]
        ],
    )

    def status(kept: bool | None, reason: str | None) -> str:
        return "absent" if kept is None else ("kept" if kept else str(reason))

    section(
        "kept status changed",
        [
            f"{r['series_id']}  {r['title']}  {status(r['kept_a'], r['reason_a'])} -> "
            f"{status(r['kept_b'], r['reason_b'])} (accuracy {_pct(r['accuracy_a'])} -> "
            f"{_pct(r['accuracy_b'])})"
            for r in diff["classes"]
        ],
    )
    only_a = sorted(set(diff["models"]["a"]) - set(diff["models"]["b"]))
    only_b = sorted(set(diff["models"]["b"]) - set(diff["models"]["a"]))
    if only_a or only_b:
        lines.append(
            "models not in both (not compared): "
            + ", ".join([*(f"{m} (A only)" for m in only_a), *(f"{m} (B only)" for m in only_b)])
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- rerank


def default_threshold(n_classes: int) -> float:
    """Top-1 at or below which a class still counts as unseen: twice chance, at least 10%."""
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes!r}; expected at least 1")
    return max(2.0 / n_classes, 0.1)


def old_classes(root: DataRoot, since: str | None = None) -> tuple[pa.Table, str | None]:
    """The `classes` table to re-rank: the current one, or snapshot `since`'s frozen copy.

    Returns:
        ``(classes, snapshot_id)`` (snapshot_id None for the current table).

    Raises:
        SnapshotError: an unknown snapshot; FileNotFoundError: no classes to re-rank.
    """
    if since is None:
        return read_table(root, "classes"), None
    snap = resolve_snapshot(list_snapshots(root), since)
    classes = read_frozen(root, snap["snapshot_id"], "classes")
    if classes is None:
        raise FileNotFoundError(
            f"snapshot {snap['snapshot_id']!r} has no `classes` table (built without the "
            "rank stage); expected a snapshot of a build that ranked classes"
        )
    return classes, snap["snapshot_id"]


def rerank_table(
    kept: pa.Table,
    zeroshot: pa.Table,
    threshold: float | None = None,
    snapshot_id: str | None = None,
) -> pa.Table:
    """Compare kept classes' old accuracy with newer models' zero-shot top-1.

    Args:
        kept: the kept classes: series_id, title, accuracy (the accuracy they were kept on).
        zeroshot: `ZEROSHOT` rows of the newer model(s) (rows of other series are ignored).
        threshold: top-1 at or below which a class is still unseen (default per model
            `default_threshold` of its ``n_classes``).
        snapshot_id: the snapshot the classes come from (None: the current `classes`).

    Returns:
        `RERANK` rows, one per (model, kept series), sorted by model_key, series_id.
    """
    old = {r["series_id"]: r for r in kept.select(["series_id", "title", "accuracy"]).to_pylist()}
    rows = []
    for z in sorted(zeroshot.to_pylist(), key=lambda r: (r["model_key"], r["series_id"])):
        sid = z["series_id"]
        if sid not in old:
            continue
        thr = threshold if threshold is not None else default_threshold(int(z["n_classes"]))
        new = z["top1"] if z["n_images"] else None
        rows.append({
            "model_key": z["model_key"],
            "series_id": sid,
            "title": old[sid]["title"] or z["title"],
            "snapshot_id": snapshot_id,
            "old_accuracy": old[sid]["accuracy"],
            "new_accuracy": new,
            "n_images": int(z["n_images"]),
            "n_classes": int(z["n_classes"]),
            "threshold": float(thr),
            "still_unseen": None if new is None else bool(new <= thr),
        })
    return pa.Table.from_pylist(rows, schema=RERANK)


def summarize_rerank(table: pa.Table) -> dict[str, Any]:
    """Which kept classes a newer model now recognises (by model), for logs and the CLI."""
    rows = table.to_pylist()
    no_longer = [
        {k: r[k] for k in ("model_key", "series_id", "title", "old_accuracy", "new_accuracy",
                           "threshold")}
        for r in rows if r["still_unseen"] is False
    ]
    no_longer.sort(key=lambda r: (r["model_key"], -r["new_accuracy"], r["series_id"]))
    return {
        "models": sorted({r["model_key"] for r in rows}),
        "kept": len({r["series_id"] for r in rows}),
        "still_unseen": sum(1 for r in rows if r["still_unseen"]),
        "no_images": sum(1 for r in rows if r["still_unseen"] is None),
        "no_longer_unseen": no_longer,
    }


def format_rerank(summary: Mapping[str, Any]) -> str:
    """`summarize_rerank`'s result as readable text."""
    lines = [
        f"tv100 rerank: {summary['kept']} kept classes re-ranked with "
        f"{', '.join(summary['models'])}"
        + (f" (old classes of snapshot {summary['snapshot_id']})"
           if summary.get("snapshot_id") else ""),
    ]
    gone = summary["no_longer_unseen"]
    if gone:
        lines.append(f"  no longer unseen ({len(gone)}):")
        lines += [
            f"    {r['model_key']}  {r['series_id']}  {r['title']}  top-1 "
            f"{_pct(r['old_accuracy'])} -> {_pct(r['new_accuracy'])} "
            f"(threshold {_pct(r['threshold'])})"
            for r in gone
        ]
    else:
        lines.append("  every kept class with images is still unseen")
    if summary["no_images"]:
        lines.append(f"  {summary['no_images']} (model, class) pairs had no cleaned images")
    return "\n".join(lines) + "\n"


# --- Prefect tasks: thin wrappers ------------------------------------------------------------


@task(name="record-snapshot", cache_policy=NO_CACHE)
def record_snapshot_task(
    data: str, parameters: dict[str, Any], flow_run_id: str | None = None
) -> dict[str, Any]:
    """`record_snapshot` (uncached: it must look at the tables every time)."""
    return record_snapshot(data, parameters, flow_run_id)
