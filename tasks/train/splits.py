"""Splits: per-series stratified train/val/test, then the leakage fix-up.

Assignment is by a seeded hash of each image id, not by a shuffled position, so adding
images to a series later moves none of the existing ones between splits.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from tv100.storage.root import DataRoot
from tv100.storage.schemas import DUPLICATES, SPLITS
from tv100.storage.tables import read_table, table_exists
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.leakage import apply_leakage, leakage_check
from tv100.tasks.train.config import SplitConfig


def _order_key(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def make_splits(items: pa.Table, config: SplitConfig | None = None) -> pa.Table:
    """Assign every image of every class to train, val or test.

    Args:
        items: image_id, series_id, class_index (one row per cleaned image of a kept class).
        config: ratios and seed.

    Returns:
        The `splits` table, sorted by image_id. Each series has at least one test image;
        with two or more images, at least one train image too.
    """
    cfg = config or SplitConfig()
    by_series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in items.select(["image_id", "series_id", "class_index"]).to_pylist():
        by_series[r["series_id"]].append(r)
    rows = []
    for rs in by_series.values():
        rs.sort(key=lambda r: _order_key(cfg.seed, r["image_id"]))
        n = len(rs)
        n_test = min(n, max(1, round(n * cfg.test_ratio)))
        if n >= 2:
            n_test = min(n_test, n - 1)
        rest = n - n_test
        n_val = round(n * cfg.val_ratio) if rest >= 3 else 0
        n_val = min(n_val, rest - 1) if rest else 0
        for i, r in enumerate(rs):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            rows.append({**r, "split": split})
    rows.sort(key=lambda r: r["image_id"])
    return pa.Table.from_pylist(rows, schema=SPLITS)


def check_leakage(
    splits: pa.Table,
    candidates: pa.Table,
    config: NearDupConfig | None = None,
    embeddings: tuple[Sequence[str], np.ndarray] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """No held-out image may be a near duplicate of a train image.

    Args:
        splits: the `splits` table.
        candidates: `find_duplicates` input (image_id, sha256, phash, dhash, ...).
        config: thresholds and `leakage_action` (move to train, or drop).
        embeddings: optional ``(image_ids, unit vectors)`` of a CLIP: pairs above
            ``config.clip_threshold`` cosine count too (flips and crops pHash misses).

    Returns:
        ``(splits after the moves, duplicates rows with scope cross_split)``. A series
        left without a test image gets its first unlinked train image back into test.
    """
    cfg = config or NearDupConfig()
    split_of = dict(
        zip(splits.column("image_id").to_pylist(), splits.column("split").to_pylist(),
            strict=True)
    )
    meta = candidates.filter(pc.is_in(candidates.column("image_id"), splits.column("image_id")))
    meta = meta.append_column(
        "split", pa.array([split_of[i] for i in meta.column("image_id").to_pylist()])
    )
    moves = leakage_check(meta, cfg, embeddings)
    if moves.num_rows == 0:
        return splits, moves
    fixed = apply_leakage(splits, moves, cfg.train_split)
    linked = set(moves.column("image_id").to_pylist()) | {
        k for k in moves.column("kept_id").to_pylist() if k
    }
    rows = fixed.to_pylist()
    has_test = {r["series_id"] for r in rows if r["split"] == "test"}
    for r in sorted(rows, key=lambda r: _order_key(0, r["image_id"])):
        if r["series_id"] not in has_test and r["split"] == "train" and r["image_id"] not in linked:
            r["split"] = "test"
            has_test.add(r["series_id"])
    return pa.Table.from_pylist(rows, schema=SPLITS), moves


@task(name="make-splits", cache_policy=INPUTS + TASK_SOURCE)
def splits_task(
    items: pa.Table,
    candidates: pa.Table,
    config: SplitConfig,
    neardup: NearDupConfig,
    embeddings: tuple[list[str], np.ndarray] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Stratified splits, then the leakage fix-up: ``(splits, cross_split duplicate rows)``."""
    return check_leakage(make_splits(items, config), candidates, neardup, embeddings)


def merge_cross_split(duplicates: pa.Table | None, cross_split: pa.Table) -> pa.Table:
    """The clean stage's duplicate rows followed by this split's ``cross_split`` rows.

    Earlier ``cross_split`` rows (of an earlier split) are replaced, so writing the result
    again with the same split changes nothing.
    """
    rows = duplicates.cast(DUPLICATES) if duplicates is not None else DUPLICATES.empty_table()
    rows = rows.filter(pc.not_equal(rows.column("scope"), "cross_split"))
    return pa.concat_tables([rows, cross_split.cast(DUPLICATES).sort_by("image_id")])


def split_counts(splits: pa.Table) -> dict[str, int]:
    """Images per split value, in order of first appearance."""
    counts = pc.value_counts(splits.column("split")).flatten()
    return {str(k): int(v) for k, v in zip(*counts, strict=True)}


def split_tables(root: DataRoot, splits: pa.Table, cross_split: pa.Table) -> dict[str, pa.Table]:
    """The tables a split writes: ``splits``, and ``duplicates`` with this split's
    ``cross_split`` rows in place of earlier ones (`merge_cross_split`)."""
    existing = read_table(root, "duplicates") if table_exists(root, "duplicates") else None
    return {"splits": splits, "duplicates": merge_cross_split(existing, cross_split)}


@task(name="split-tables", cache_policy=NO_CACHE)
def split_tables_task(
    root: DataRoot, splits: pa.Table, cross_split: pa.Table
) -> dict[str, pa.Table]:
    """`split_tables`, logging the split sizes (uncached: it reads ``duplicates``)."""
    get_run_logger().info(
        "splits: %s; %d held-out images near a train image", split_counts(splits),
        cross_split.num_rows,
    )
    return split_tables(root, splits, cross_split)
