"""tasks/clean/leakage.py: held-out images near a train image are moved or dropped."""

from __future__ import annotations

import pytest

from tests.tasks.clean.records import ZERO, by_id, flip, rec, table
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.leakage import apply_leakage, leakage_check


def _split_rows():
    a = ZERO
    b = flip(a, *range(8))  # 8 from a
    c = flip(b, *range(16, 24))  # 8 from b, 16 from a
    return [
        rec("train-a", a, split="train"),
        rec("test-b", b, split="test"),
        rec("test-c", c, split="test"),
        rec("test-d", flip(ZERO, *range(32, 64)), split="test"),
        rec("val-e", a, sha="sha-train-a", split="val"),  # an exact copy in val
    ]


def test_leakage_moves_every_connected_held_out_image_to_train():
    rows = _split_rows()
    moves = by_id(leakage_check(table(rows), NearDupConfig(dhash_threshold=None)))
    assert set(moves) == {"test-b", "test-c", "val-e"}
    assert moves["test-b"]["kept_id"] == "train-a" and moves["test-b"]["kind"] == "phash"
    assert moves["test-c"]["kept_id"] == "test-b", "c leaks through b once b is train"
    assert moves["val-e"]["kind"] == "exact"
    assert {m["scope"] for m in moves.values()} == {"cross_split"}
    assert {m["action"] for m in moves.values()} == {"move_to_train"}
    after = apply_leakage(table(rows), leakage_check(table(rows)))
    assert after.column("split").to_pylist() == ["train", "train", "train", "test", "train"]
    assert leakage_check(after).num_rows == 0, "after the moves nothing leaks"


def test_leakage_drop_removes_only_direct_matches():
    rows = _split_rows()
    cfg = NearDupConfig(leakage_action="drop", dhash_threshold=None)
    drops = by_id(leakage_check(table(rows), cfg))
    assert set(drops) == {"test-b", "val-e"}
    assert {d["action"] for d in drops.values()} == {"drop"}
    after = apply_leakage(table(rows), leakage_check(table(rows), cfg))
    assert after.column("image_id").to_pylist() == ["train-a", "test-c", "test-d"]
    assert leakage_check(after, cfg).num_rows == 0


def test_leakage_needs_a_split_column():
    with pytest.raises(ValueError, match="'split'"):
        leakage_check(table([rec("a", ZERO)]).drop_columns(["split"]))
