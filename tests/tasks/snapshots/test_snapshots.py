"""tasks/snapshots/snapshots.py: recording a build's state once per change, choosing snapshots.

Synthetic tables written with `write_table` stand in for a build. The helpers here
(`write_build` and the table builders) are shared with the diff, rerank and flow tests.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from tv100.storage.root import DataRoot
from tv100.storage.schemas import CLASSES, EMBEDDINGS, RERANK, SERIES, ZEROSHOT
from tv100.storage.tables import table_path, write_table
from tv100.tasks.snapshots.snapshots import (
    SnapshotError,
    choose_pair,
    list_snapshots,
    record_snapshot,
    snapshot_path,
    table_hashes,
)

T0 = datetime(2025, 1, 6, 3, 0, tzinfo=UTC)
MODEL = "ViT-X@test"


def series_table(ids_titles: dict[str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"series_id": s, "title": t, "kind": "tvSeries", "start_year": 2023}
         for s, t in sorted(ids_titles.items())],
        schema=SERIES,
    )


def zeroshot_table(top1: dict[str, float | None], titles: dict[str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"model_key": MODEL, "series_id": s, "title": titles[s],
             "n_images": 0 if v is None else 10, "top1": v, "n_classes": len(top1),
             "templates": ["a photo of the TV series {}"]}
            for s, v in sorted(top1.items())
        ],
        schema=ZEROSHOT,
    )


def classes_table(kept: dict[str, bool], acc: dict[str, float | None],
             titles: dict[str, str]) -> pa.Table:
    kept_ids = sorted(s for s, k in kept.items() if k)
    return pa.Table.from_pylist(
        [
            {"series_id": s, "title": titles[s],
             "class_index": kept_ids.index(s) if k else None, "kept": k,
             "reason": "hardest" if k else "too_easy", "accuracy": acc[s],
             "n_images": 10, "aggregate": "max", "models": [MODEL]}
            for s, k in sorted(kept.items())
        ],
        schema=CLASSES,
    )


def write_build(root: DataRoot, titles: dict[str, str], top1: dict[str, float | None],
                kept: dict[str, bool]) -> None:
    """The tables a finished build leaves (the ones snapshots read)."""
    write_table(root, "series", series_table(titles))
    write_table(root, "zeroshot", zeroshot_table(top1, {s: titles[s] for s in top1}))
    write_table(root, "classes", classes_table(kept, top1, {s: titles[s] for s in kept}))


TITLES_A = {"tt1": "Jade Lantern", "tt2": "Moonlit Harbor", "tt3": "Love in Busan",
            "tt4": "Old Show"}
TOP1_A = {"tt1": 0.10, "tt2": 0.50, "tt3": 0.20, "tt4": 0.30}
KEPT_A = {"tt1": True, "tt2": False, "tt3": True, "tt4": False}
# B: tt4 gone, tt5 new; tt2 -0.40 (moved), tt3 +0.02 (not moved), tt1 +0.30 (moved) and no
# longer kept, tt2 kept now, tt5 kept.
TITLES_B = {"tt1": "Jade Lantern", "tt2": "Moonlit Harbor", "tt3": "Love in Busan",
            "tt5": "New Show"}
TOP1_B = {"tt1": 0.40, "tt2": 0.10, "tt3": 0.22, "tt5": 0.05}
KEPT_B = {"tt1": False, "tt2": True, "tt3": True, "tt5": True}


@pytest.fixture
def two_snapshots(data_root):
    write_build(data_root, TITLES_A, TOP1_A, KEPT_A)
    a = record_snapshot(data_root, {"since": 2021}, now=T0)
    write_build(data_root, TITLES_B, TOP1_B, KEPT_B)
    b = record_snapshot(data_root, {"since": 2021}, now=T0 + timedelta(days=7))
    return data_root, a.snapshot_id, b.snapshot_id


def test_snapshot_recorded_once_per_state(data_root):
    write_build(data_root, TITLES_A, TOP1_A, KEPT_A)
    first = record_snapshot(data_root, {"since": 2021, "k": 2}, flow_run_id="run-1", now=T0)
    assert first.created and first.previous is None
    sid = first.snapshot_id
    assert sid == f"20250106T030000Z-{first.state_sha256[:8]}"
    snap_file = Path(table_path(data_root, "snapshots"))
    before = snap_file.read_bytes()
    # Unchanged tables: same snapshot, nothing written (the table stays byte-identical).
    again = record_snapshot(data_root, {"since": 2021, "k": 2}, now=T0 + timedelta(hours=1))
    assert (again.snapshot_id, again.created) == (sid, False)
    assert snap_file.read_bytes() == before
    # Tables outside the build's state (rerank, embeddings) do not make a new snapshot.
    write_table(data_root, "rerank",
                pa.Table.from_pylist([{"model_key": "m", "series_id": "tt1"}], schema=RERANK))
    write_table(data_root, "embeddings", pa.Table.from_pylist(
        [{"image_id": "i1", "model_key": "m", "status": "ok"}], schema=EMBEDDINGS))
    assert record_snapshot(data_root, {}).created is False
    row = list_snapshots(data_root)[0]
    assert json.loads(row["parameters"]) == {"k": 2, "since": 2021}
    assert (row["n_series"], row["n_kept"], row["n_images_ok"], row["flow_run_id"]) == (
        4, 2, None, "run-1")
    hashes = json.loads(row["table_hashes"])
    assert set(hashes) == {"series", "zeroshot", "classes"} == set(table_hashes(data_root))
    for name in ("series", "zeroshot", "classes"):  # frozen byte copies
        frozen = Path(snapshot_path(data_root, sid, name)).read_bytes()
        assert hashlib.sha256(frozen).hexdigest() == hashes[name]
    # A changed table: a new snapshot after the first; the first's copies stay as they were.
    write_build(data_root, TITLES_B, TOP1_B, KEPT_B)
    second = record_snapshot(data_root, {"since": 2021}, now=T0 + timedelta(days=1))
    assert second.created and second.previous == sid and second.snapshot_id > sid
    assert [r["snapshot_id"] for r in list_snapshots(data_root)] == [sid, second.snapshot_id]
    assert hashlib.sha256(
        Path(snapshot_path(data_root, sid, "series")).read_bytes()
    ).hexdigest() == hashes["series"]
    # Back to the first state: a new snapshot (the revert is a change against the latest).
    write_build(data_root, TITLES_A, TOP1_A, KEPT_A)
    third = record_snapshot(data_root, {}, now=T0 + timedelta(days=2))
    assert third.created and third.snapshot_id.endswith(sid.split("-")[1])


def test_choose_pair_errors():
    rows = [{"snapshot_id": "20250101T000000Z-aaaa0000"},
            {"snapshot_id": "20250102T000000Z-bbbb0000"}]
    with pytest.raises(SnapshotError, match="fewer than two snapshots"):
        choose_pair([])
    with pytest.raises(SnapshotError, match="fewer than two snapshots"):
        choose_pair(rows[:1])
    with pytest.raises(SnapshotError, match="unknown snapshot 'nope'"):
        choose_pair(rows, "nope")
    with pytest.raises(SnapshotError, match="ambiguous"):
        choose_pair(rows, "2025")
    with pytest.raises(SnapshotError, match="the first"):
        choose_pair(rows, None, rows[0]["snapshot_id"])
    a, b = choose_pair(rows, None, "20250102")
    assert (a["snapshot_id"], b["snapshot_id"]) == (rows[0]["snapshot_id"], rows[1]["snapshot_id"])
