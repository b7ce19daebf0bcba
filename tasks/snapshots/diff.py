"""What changed between two build snapshots (``tv100 diff``).

`diff_snapshots` lists series added and removed between two snapshots, series whose
zero-shot top-1 moved by more than a threshold (per model present in both), and classes
whose kept status changed; `format_diff` renders it as text. Both sides are read from the
snapshots' frozen copies (`tv100.tasks.snapshots.snapshots`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from tv100.storage.root import DataRoot
from tv100.tasks.snapshots.config import (
    DEFAULT_DIFF_THRESHOLD,
    DiffModels,
    KeptChange,
    SeriesRef,
    SnapshotBrief,
    SnapshotDiff,
    TopMove,
)
from tv100.tasks.snapshots.snapshots import choose_pair, list_snapshots, read_frozen


def _rows(table: pa.Table | None, columns: Sequence[str]) -> list[dict[str, Any]]:
    if table is None:
        return []
    return table.select([c for c in columns if c in table.column_names]).to_pylist()


def _brief(snap: Mapping[str, Any]) -> SnapshotBrief:
    return SnapshotBrief(
        snapshot_id=snap["snapshot_id"],
        created_at=snap["created_at"].isoformat(),
        n_series=snap.get("n_series"),
        n_kept=snap.get("n_kept"),
    )


def diff_snapshots(
    root: DataRoot,
    a: str | None = None,
    b: str | None = None,
    threshold: float = DEFAULT_DIFF_THRESHOLD,
) -> SnapshotDiff:
    """What changed from snapshot A to snapshot B (defaults as in `choose_pair`).

    Args:
        root: the data root.
        a: snapshot A's id or unique prefix (default: the one before B).
        b: snapshot B's id or unique prefix (default: the latest).
        threshold: report top-1 changes larger than this (0..1).

    Returns:
        A `SnapshotDiff`: series in one snapshot's `series` only; per model present in both
        snapshots, series it classified in both whose top-1 changed by more than
        `threshold` (largest change first); series whose kept status differs (a series
        absent from a snapshot counts as not kept), with the reason and accuracy on each
        side; each side's model keys.

    Raises:
        SnapshotError: as `choose_pair`.
        ValueError: a threshold outside 0..1.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r}; expected 0..1 (a top-1 accuracy change)")
    snap_a, snap_b = choose_pair(list_snapshots(root), a, b)
    ida, idb = snap_a["snapshot_id"], snap_b["snapshot_id"]

    def frozen(snapshot_id: str, name: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        return _rows(read_frozen(root, snapshot_id, name), columns)

    series_a = {r["series_id"]: r for r in frozen(ida, "series", ["series_id", "title"])}
    series_b = {r["series_id"]: r for r in frozen(idb, "series", ["series_id", "title"])}
    added = tuple(
        SeriesRef(s, series_b[s].get("title")) for s in sorted(set(series_b) - set(series_a))
    )
    removed = tuple(
        SeriesRef(s, series_a[s].get("title")) for s in sorted(set(series_a) - set(series_b))
    )

    zcols = ["model_key", "series_id", "title", "top1"]
    zs_a = {(r["model_key"], r["series_id"]): r for r in frozen(ida, "zeroshot", zcols)}
    zs_b = {(r["model_key"], r["series_id"]): r for r in frozen(idb, "zeroshot", zcols)}
    moved = []
    for key in sorted(set(zs_a) & set(zs_b)):
        ta, tb = zs_a[key]["top1"], zs_b[key]["top1"]
        if ta is None or tb is None or abs(tb - ta) <= threshold:
            continue
        moved.append(TopMove(key[0], key[1], zs_b[key]["title"], ta, tb, tb - ta))
    moved.sort(key=lambda r: (r.model_key, -abs(r.delta), r.series_id))

    ccols = ["series_id", "title", "kept", "reason", "accuracy"]
    cl_a = {r["series_id"]: r for r in frozen(ida, "classes", ccols)}
    cl_b = {r["series_id"]: r for r in frozen(idb, "classes", ccols)}
    classes = []
    for sid in sorted(set(cl_a) | set(cl_b)):
        ra, rb = cl_a.get(sid, {}), cl_b.get(sid, {})
        if bool(ra.get("kept")) == bool(rb.get("kept")):
            continue
        classes.append(KeptChange(
            series_id=sid, title=rb.get("title") or ra.get("title"),
            kept_a=ra.get("kept"), kept_b=rb.get("kept"),
            reason_a=ra.get("reason"), reason_b=rb.get("reason"),
            accuracy_a=ra.get("accuracy"), accuracy_b=rb.get("accuracy"),
        ))
    return SnapshotDiff(
        a=_brief(snap_a),
        b=_brief(snap_b),
        threshold=threshold,
        models=DiffModels(
            a=tuple(sorted({k for k, _ in zs_a})), b=tuple(sorted({k for k, _ in zs_b}))
        ),
        added=added,
        removed=removed,
        moved=tuple(moved),
        classes=tuple(classes),
    )


def pct(v: float | None) -> str:
    """A fraction as a percentage with one decimal (``n/a`` for None)."""
    return "n/a" if v is None else f"{100 * v:.1f}%"


def format_diff(diff: SnapshotDiff) -> str:
    """`diff_snapshots`' result as readable text (one section per kind of change)."""
    lines = []
    for side, s in (("a", diff.a), ("b", diff.b)):
        lines.append(
            f"snapshot {side.upper()}  {s.snapshot_id}  ({s.created_at}; "
            f"{s.n_series if s.n_series is not None else 'n/a'} series, "
            f"{s.n_kept if s.n_kept is not None else 'n/a'} kept)"
        )

    def section(title: str, rows: list[str]) -> None:
        lines.append(f"{title} ({len(rows)}):" if rows else f"{title}: none")
        lines.extend(f"  {r}" for r in rows)

    section("series added", [f"{r.series_id}  {r.title}" for r in diff.added])
    section("series removed", [f"{r.series_id}  {r.title}" for r in diff.removed])
    section(
        f"zero-shot top-1 moved by more than {100 * diff.threshold:.1f} points",
        [
            f"{r.model_key}  {r.series_id}  {r.title}  {pct(r.top1_a)} -> "
            f"{pct(r.top1_b)} ({100 * r.delta:+.1f})"
            for r in diff.moved
        ],
    )

    def status(kept: bool | None, reason: str | None) -> str:
        return "absent" if kept is None else ("kept" if kept else str(reason))

    section(
        "kept status changed",
        [
            f"{r.series_id}  {r.title}  {status(r.kept_a, r.reason_a)} -> "
            f"{status(r.kept_b, r.reason_b)} (accuracy {pct(r.accuracy_a)} -> "
            f"{pct(r.accuracy_b)})"
            for r in diff.classes
        ],
    )
    only_a = sorted(set(diff.models.a) - set(diff.models.b))
    only_b = sorted(set(diff.models.b) - set(diff.models.a))
    if only_a or only_b:
        lines.append(
            "models not in both (not compared): "
            + ", ".join([*(f"{m} (A only)" for m in only_a), *(f"{m} (B only)" for m in only_b)])
        )
    return "\n".join(lines) + "\n"
