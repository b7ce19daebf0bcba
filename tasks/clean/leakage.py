"""Train/test leakage: held-out images that near-duplicate a training image, and the fix.

`leakage_check` finds them with the signals of `tv100.tasks.clean.groups`; `apply_leakage`
moves them into the training split or drops them, as `NearDupConfig.leakage_action` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tv100.storage.schemas import DUPLICATES
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.groups import (
    KIND_RANK,
    KINDS,
    ImageMeta,
    UnionFind,
    image_meta,
    match_edges,
    relation,
    representative,
)


def leakage_check(
    hashes_with_split: pa.Table,
    config: NearDupConfig | None = None,
    embeddings: tuple[Sequence[str], np.ndarray] | None = None,
) -> pa.Table:
    """Held-out images (split != train) that are near duplicates of training images.

    With ``leakage_action="drop"`` a held-out image is dropped when it matches a train
    image directly. With ``"move_to_train"`` moving it makes it a train image, so every
    held-out image connected to the training set through any chain of matches is moved
    (the fixed point of moving direct matches repeatedly).

    Args:
        hashes_with_split: the `find_duplicates` input plus a ``split`` column.
        config: thresholds; `leakage_action` and `train_split` apply here.
        embeddings: optional ``(image_ids, vectors)`` for the clip signal.

    Returns:
        `DUPLICATES` rows with ``scope="cross_split"``, ``action`` the configured one and
        ``kept_id`` the train (or, for a chain, already moved) image it matches.

    Raises:
        ValueError: when the table has no ``split`` column.
    """
    cfg = config or NearDupConfig()
    if "split" not in hashes_with_split.column_names:
        raise ValueError("leakage_check needs a 'split' column; expected e.g. train/test")
    meta = image_meta(hashes_with_split, embeddings)
    assert meta.split is not None
    edges = match_edges(meta, cfg)
    uf = UnionFind(len(meta))
    for a, b in edges:
        uf.union(a, b)
    rows: list[tuple[int, dict[str, Any]]] = []
    for members in uf.groups():
        train = {r for r in members if meta.split[r] == cfg.train_split}
        held = [r for r in members if meta.split[r] not in (None, cfg.train_split)]
        if not train or not held:
            continue
        rep = representative(meta, members)
        # Exact copies first through a dict: a placeholder copied into thousands of rows
        # must not cost thousands x thousands pair checks.
        train_sha: dict[str, int] = {}
        for r in sorted(train, key=lambda r: meta.ids[r]):
            sha = meta.sha[r]
            if sha is not None:
                train_sha.setdefault(sha, r)
        hits: dict[int, tuple[int, str, float]] = {}
        for row in held:
            sha = meta.sha[row]
            if sha is not None and sha in train_sha:
                hits[row] = (train_sha[sha], "exact", 0.0)
                continue
            best = _best_direct(meta, row, sorted(train), cfg)
            if best is not None:
                hits[row] = best
        if cfg.leakage_action == "move_to_train":
            # Breadth-first from the directly leaking rows: each later row matches one
            # that is already (moved to) train.
            frontier = list(hits)
            pending = [r for r in held if r not in hits]
            while frontier and pending:
                moved = sorted(hits)
                frontier = []
                for row in pending:
                    best = _best_direct(meta, row, moved, cfg)
                    if best is not None:
                        hits[row] = best
                        frontier.append(row)
                pending = [r for r in pending if r not in hits]
        for row in sorted(hits):
            matched, kind, dist = hits[row]
            rows.append(
                (
                    row,
                    {
                        "image_id": meta.ids[row],
                        "kept_id": meta.ids[matched],
                        "group_id": meta.ids[rep],
                        "matched_id": meta.ids[matched],
                        "kind": kind,
                        "distance": dist,
                        "scope": "cross_split",
                        "series_id": meta.series[row],
                        "action": cfg.leakage_action,
                    },
                )
            )
    rows.sort(key=lambda r: r[0])
    return pa.Table.from_pylist([r for _, r in rows], schema=DUPLICATES)


def _best_direct(
    meta: ImageMeta, row: int, candidates: Sequence[int], cfg: NearDupConfig
) -> tuple[int, str, float] | None:
    """The candidate `row` matches directly by the strongest signal, then distance, then id."""
    best: tuple[int, float, str, int] | None = None
    for other in candidates:
        rel = relation(meta, row, other, cfg)
        if rel is not None:
            cand = (KIND_RANK[rel[0]], rel[1], meta.ids[other], other)
            if best is None or cand < best:
                best = cand
    if best is None:
        return None
    return best[3], KINDS[best[0]], best[1]


def apply_leakage(
    hashes_with_split: pa.Table, moves: pa.Table, train_split: str = "train"
) -> pa.Table:
    """Apply `leakage_check` rows: moved images get ``split=train_split``, dropped ones go."""
    action = dict(
        zip(moves.column("image_id").to_pylist(), moves.column("action").to_pylist(), strict=True)
    )
    ids = hashes_with_split.column("image_id").to_pylist()
    split = [
        train_split if action.get(i) == "move_to_train" else s
        for i, s in zip(ids, hashes_with_split.column("split").to_pylist(), strict=True)
    ]
    idx = hashes_with_split.schema.get_field_index("split")
    fld = hashes_with_split.schema.field(idx)
    out = hashes_with_split.set_column(idx, fld, pa.array(split, fld.type))
    return out.filter(pa.array([action.get(i) != "drop" for i in ids]))
