"""Splits: per-series stratified train/val/test, leakage-checked, exported.

Assignment is by a seeded hash of each image id, not by a shuffled position, so adding
images to a series later moves none of the existing ones between splits.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tv100.storage.schemas import SPLITS
from tv100.tasks.clean.neardup import NearDupConfig, apply_leakage, leakage_check

SPLIT_NAMES = ("train", "val", "test")
#: The caption open_clip's trainer reads for each image (the paper's zero-shot prompt).
CAPTION = "a photo of the TV series {}"


@dataclass(frozen=True)
class SplitConfig:
    """Split ratios and seed.

    Args:
        test_ratio: share of each series' images held out for test (at least one image).
        val_ratio: share carved from the rest for validation (model selection, sweeps).
        seed: changes which images land where, deterministically.
    """

    test_ratio: float = 0.2
    val_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("test_ratio", "val_ratio"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0 <= v < 1:
                raise ValueError(f"SplitConfig.{name}={v!r} is invalid; expected 0 <= x < 1")
        if self.test_ratio + self.val_ratio >= 1:
            raise ValueError(
                f"SplitConfig test_ratio + val_ratio = {self.test_ratio + self.val_ratio} "
                "leaves nothing to train on; expected a sum < 1"
            )


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


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return s[:60] or "series"


def class_dirname(class_index: int, title: str) -> str:
    """Folder name of a class in the exported layout: ``007_The_Jade_Lantern``."""
    return f"{class_index:03d}_{_slug(title)}"


def export_imagefolder(
    data_dir: str, splits: pa.Table, images: pa.Table, titles: dict[str, str], out_dir: str
) -> dict[str, int]:
    """Write ``<out>/<split>/<class>/<image_id>.jpg`` (what the TV100 archive ships) and
    ``<out>/<split>.csv`` (tab-separated ``filepath``/``title``: open_clip's CSV format).

    Files are hard links into the image store when possible (no extra space), else copies.
    The CSVs are written last, through temp + rename, so a complete CSV means a complete
    folder.
    """
    path_of = dict(
        zip(images.column("image_id").to_pylist(), images.column("path").to_pylist(),
            strict=True)
    )
    counts: dict[str, int] = {}
    by_split: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in splits.to_pylist():
        title = titles[r["series_id"]]
        folder = os.path.join(out_dir, r["split"], class_dirname(r["class_index"], title))
        os.makedirs(folder, exist_ok=True)
        dst = os.path.join(folder, f"{r['image_id']}.jpg")
        src = os.path.join(data_dir, path_of[r["image_id"]])
        if not os.path.exists(dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        by_split[r["split"]].append((os.path.abspath(dst), CAPTION.format(title)))
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    for split, rows in by_split.items():
        final = os.path.join(out_dir, f"{split}.csv")
        tmp = final + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["filepath", "title"])
            w.writerows(sorted(rows))
        os.replace(tmp, final)
    return counts
