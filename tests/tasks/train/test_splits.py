"""Splits: stratified, seeded, stable; leakage fixed; cross-split rows merged."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tv100.tasks.train.config import SplitConfig
from tv100.tasks.train.splits import check_leakage, make_splits, merge_cross_split, split_counts


def items(counts: dict[str, int]) -> pa.Table:
    rows = [
        {"image_id": f"{s}-{i:03d}", "series_id": s, "class_index": ci}
        for ci, (s, n) in enumerate(sorted(counts.items())) for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def test_stratified_with_a_test_image_per_series():
    t = make_splits(items({"a": 100, "b": 10, "c": 2, "d": 1}), SplitConfig(0.2, 0.1, seed=1))
    rows = t.to_pylist()
    per = {}
    for r in rows:
        per.setdefault(r["series_id"], {}).setdefault(r["split"], 0)
        per[r["series_id"]][r["split"]] += 1
    assert per["a"] == {"test": 20, "val": 10, "train": 70}
    assert per["b"]["test"] == 2 and per["b"]["train"] >= 7
    assert per["c"] == {"test": 1, "train": 1}
    assert per["d"] == {"test": 1}


def test_seeded_and_stable_under_additions():
    a = make_splits(items({"a": 50}), SplitConfig(seed=3)).to_pylist()
    b = make_splits(items({"a": 50}), SplitConfig(seed=3)).to_pylist()
    c = make_splits(items({"a": 50}), SplitConfig(seed=4)).to_pylist()
    assert a == b and a != c
    with pytest.raises(ValueError, match="test_ratio"):
        SplitConfig(test_ratio=1.5)
    with pytest.raises(ValueError, match="nothing to train"):
        SplitConfig(test_ratio=0.6, val_ratio=0.5)


def test_leakage_moves_test_copies_to_train():
    splits = make_splits(items({"a": 10}), SplitConfig(seed=0))
    rows = splits.to_pylist()
    test_id = next(r["image_id"] for r in rows if r["split"] == "test")
    train_id = next(r["image_id"] for r in rows if r["split"] == "train")
    phash = {r["image_id"]: f"{i:016x}" for i, r in enumerate(rows)}
    # Make the test image a near copy (1 bit) of a train image; others far apart.
    phash[test_id] = format(int(phash[train_id], 16) ^ 1, "016x")
    far = {k: format(int(v, 16) * 0x9E3779B97F4A7C15 % (1 << 64), "016x")
           for k, v in phash.items() if k not in (test_id, train_id)}
    phash.update(far)
    cands = pa.Table.from_pylist([
        {"image_id": i, "series_id": "a", "sha256": i, "phash": h, "dhash": None,
         "width": 10, "height": 10, "rank": 1} for i, h in phash.items()
    ])
    fixed, moves = check_leakage(splits, cands)
    assert moves.column("image_id").to_pylist() == [test_id]
    assert moves.column("scope").to_pylist() == ["cross_split"]
    new = {r["image_id"]: r["split"] for r in fixed.to_pylist()}
    assert new[test_id] == "train"
    assert "test" in new.values()


def test_leakage_clip_signal_catches_what_phash_misses():
    """A flipped copy has a far pHash but a near CLIP embedding: only the clip signal
    links it to its train original."""
    import numpy as np

    splits = make_splits(items({"a": 12}), SplitConfig(seed=0))
    rows = splits.to_pylist()
    test_id = next(r["image_id"] for r in rows if r["split"] == "test")
    train_id = next(r["image_id"] for r in rows if r["split"] == "train")
    cands = pa.Table.from_pylist([
        {"image_id": r["image_id"], "series_id": "a", "sha256": r["image_id"],
         "phash": format((i + 1) * 0x9E3779B97F4A7C15 % (1 << 64), "016x"), "dhash": None,
         "width": 10, "height": 10, "rank": 1} for i, r in enumerate(rows)
    ])
    ids = [r["image_id"] for r in rows]
    vectors = np.eye(len(ids), dtype=np.float32)  # orthogonal: nothing similar...
    vectors[ids.index(test_id)] = vectors[ids.index(train_id)]  # ...but the flipped copy
    fixed, none = check_leakage(splits, cands)
    assert none.num_rows == 0
    fixed, moves = check_leakage(splits, cands, embeddings=(ids, vectors))
    assert moves.column("image_id").to_pylist() == [test_id]
    assert moves.column("kind").to_pylist() == ["clip"]
    assert moves.column("kept_id").to_pylist() == [train_id]
    assert {r["image_id"]: r["split"] for r in fixed.to_pylist()}[test_id] == "train"


def test_merge_cross_split_replaces_earlier_cross_split_rows():
    from tv100.storage.schemas import DUPLICATES

    def dup(image_id, scope):
        row = dict.fromkeys(DUPLICATES.names)
        return {**row, "image_id": image_id, "scope": scope}

    clean = pa.Table.from_pylist([dup("a", "series"), dup("b", "cross_split")],
                                 schema=DUPLICATES)
    cross = pa.Table.from_pylist([dup("d", "cross_split"), dup("c", "cross_split")],
                                 schema=DUPLICATES)
    merged = merge_cross_split(clean, cross)
    assert merged.column("image_id").to_pylist() == ["a", "c", "d"]
    assert merge_cross_split(merged, cross).equals(merged)  # idempotent
    assert merge_cross_split(None, cross).column("image_id").to_pylist() == ["c", "d"]


def test_split_counts():
    t = make_splits(items({"a": 100, "b": 10}), SplitConfig(0.2, 0.1, seed=1))
    assert split_counts(t) == {"train": 77, "val": 11, "test": 22}
