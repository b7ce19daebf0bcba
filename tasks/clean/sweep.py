"""Threshold sweep: precision and recall of pHash grouping against ground-truth pairs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from tv100.tasks.clean.config import HASH_BITS, NearDupConfig
from tv100.tasks.clean.groups import UnionFind, image_meta, match_edges


@dataclass(frozen=True)
class SweepPoint:
    """Grouping quality at one pHash threshold (pairs counted over groups).

    Attributes:
        threshold: the pHash threshold.
        predicted_pairs: pairs of images grouped together.
        true_pairs: pairs ground truth links (through any chain).
        tp: predicted pairs that are true; fp, fn: the others of each side.
        precision: tp / predicted_pairs (1.0 when nothing is predicted).
        recall: tp / true_pairs (1.0 when nothing is true).
        f1: their harmonic mean (0.0 when both are 0).
    """

    threshold: int
    predicted_pairs: int
    true_pairs: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


def sweep_thresholds(
    hashes: pa.Table,
    truth_pairs: Iterable[tuple[str, str]],
    thresholds: Iterable[int] = range(0, 21),
) -> list[SweepPoint]:
    """Precision and recall of exact + pHash grouping at each pHash threshold.

    Pairs are counted over groups (transitive closure) on both sides: two images are a
    predicted pair when they land in one group, a true pair when ground truth links them
    through any chain (e.g. two copies of one original). Counting is by group overlap,
    so a large group costs nothing extra.

    Args:
        hashes: image_id, sha256, phash (other `find_duplicates` columns ignored).
        truth_pairs: ``(image_id, image_id)`` pairs that are duplicates in truth; ids not
            in `hashes` are ignored.
        thresholds: pHash thresholds to evaluate (each 0..32).

    Returns:
        One `SweepPoint` per threshold, in increasing order.
    """
    ts = sorted(set(thresholds))
    for t in ts:
        if not 0 <= t <= 32:
            raise ValueError(f"threshold {t!r} is invalid; expected 0..32")
    meta = image_meta(hashes.select([c for c in ("image_id", "sha256", "phash")]), None)
    n = len(meta)
    row_of = {image_id: r for r, image_id in enumerate(meta.ids)}
    truth = UnionFind(n)
    for a, b in truth_pairs:
        if a in row_of and b in row_of:
            truth.union(row_of[a], row_of[b])
    truth_root = [truth.find(r) for r in range(n)]
    true_pairs = _pairs_in(truth_root)
    cfg = NearDupConfig(
        phash_threshold=max(ts, default=0), dhash_threshold=None, dhash_phash_max=HASH_BITS
    )
    edges = match_edges(meta, cfg)
    by_distance = sorted(edges.items(), key=lambda e: e[1][1])
    pred = UnionFind(n)
    out = []
    k = 0
    for t in ts:
        while k < len(by_distance) and by_distance[k][1][1] <= t:
            pred.union(*by_distance[k][0])
            k += 1
        pred_root = [pred.find(r) for r in range(n)]
        predicted = _pairs_in(pred_root)
        tp = _pairs_in(list(zip(pred_root, truth_root, strict=True)))
        precision = tp / predicted if predicted else 1.0
        recall = tp / true_pairs if true_pairs else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append(
            SweepPoint(
                threshold=t,
                predicted_pairs=predicted,
                true_pairs=true_pairs,
                tp=tp,
                fp=predicted - tp,
                fn=true_pairs - tp,
                precision=precision,
                recall=recall,
                f1=f1,
            )
        )
    return out


def _pairs_in(labels: Sequence[Hashable]) -> int:
    counts: dict[Hashable, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    return sum(c * (c - 1) // 2 for c in counts.values())
