"""Near-duplicate search: encode (sha256, pHash, dHash, optional CLIP), then search (numpy, FAISS).

Signals, strongest first (a pair's ``kind`` is the strongest one that holds):

- ``exact``: equal sha256 (distance 0).
- ``phash``: pHash Hamming distance <= `NearDupConfig.phash_threshold`.
- ``dhash``: pHash misses (distance > t) but is still within a grey zone
  (<= `NearDupConfig.dhash_phash_max`) *and* dHash distance <= `NearDupConfig.dhash_threshold`.
  dHash is used only to confirm, never alone: on flat, low-texture images most dHash bits
  compare near-equal neighbours and flip on noise, so dHash alone links unrelated graphics;
  two independent hashes both being close is much stronger evidence than either. On 150
  generated 640x480 photos it added 14% of 10% centre crops to the 47% pHash catches at
  t=10, and linked none of the 11,175 distinct pairs (dHash alone at <= 12 linked two).
- ``clip``: cosine similarity of L2-normalised CLIP embeddings > `NearDupConfig.clip_threshold`
  (an `IndexFlatIP` range search); catches crops and flips the hashes cannot.

Search. Exact copies are collapsed first (one row per sha256), then identical pHash codes
(one per code), so a thousand copies of one placeholder cost one index entry, not a million
pairs. On the CPU, more than `MIH_MIN` (10,000) codes with t <= 15 are joined by `mih_pairs`,
exact multi-index hashing in numpy: the 64 bits are cut into four 16-bit chunks with flip
budgets ``b_k`` summing (as ``b_k + 1``) to t + 1 (t=10: 2, 2, 2, 1), so by the pigeonhole
principle every pair within t is within ``b_k`` bits in some chunk k; per chunk the codes are
sorted by chunk value, bucket u is joined with bucket ``u ^ mask`` for every mask of at most
``b_k`` bits, candidates are kept when popcount(xor) <= t, and pairs found by several chunks
are deduplicated. On 1,010,000 uniform codes at t=10 (2 cores) it takes about 22 s where the
FAISS flat scan took 508 s; it also beats the flat scan from a few thousand codes up. Smaller
sets, t > 15 (the flips per chunk grow as C(16, t // 4)) and GPU runs use FAISS:
`IndexBinaryFlat` up to `NearDupConfig.flat_max` codes and
`IndexBinaryMultiHash` (4 tables of 16 bits, ``nflip = t // 4``) above: by the pigeonhole
principle a pair within t bits differs in at most ``t // 4`` bits of one of the 4 disjoint
16-bit chunks, so the multi-hash search is exact, not approximate (for t <= 15; above, flat
is used). The switch defaults to 2,000,000 because faiss 1.15's multi-hash range search was
slower than the flat scan at every size measured (2 cores, t=10, uniform codes, extrapolated
from 4,000 queries: 110k codes flat 7 s vs 26 s; 400k 105 s vs 362 s; 1M 309 s vs 1,344 s),
and real pHash codes, being clustered, fill its buckets even less evenly. FAISS range search is
strict (``distance < radius``), so ``t + 1`` is passed to include distance == t. On a GPU
(faiss built with GPU support *and* ``torch.cuda.is_available()``) a k-NN search replaces
the range search (GPU indexes have none); rows whose k-th neighbour is still within the
threshold are re-searched on the CPU index, so results are identical. Every path returns
the pairs sorted by ``(i, j)``.

Groups are the connected components of all pairs (union-find). One representative per
group: largest resolution (w*h), then best search rank (lowest), then image_id. Every other
member is a row of the `duplicates` table. A group whose members come from several series
has an ambiguous label: with ``drop_cross_series`` (default) every member is dropped, the
representative included, with ``kept_id = null`` (nothing is kept; ``group_id`` still names
the representative). ``matched_id``/``kind``/``distance`` describe one concrete pair: the
kept image when the dropped one matches it directly, else its strongest neighbour in the
group (a transitive member, e.g. A~B~C with A, C far apart).
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from tv100.storage.schemas import DUPLICATES
from tv100.tasks.clean.hashing import HASH_BITS, HASHES, HashConfig, codes_array, hash_files

log = logging.getLogger(__name__)


#: One row per file of `dedupe_folder`'s ``out`` Parquet: its hashes and its group.
DEDUPE_FOLDER = pa.schema(
    [f for f in HASHES if f.name != "image_id"]
    + [
        pa.field("path", pa.string(), nullable=False),
        pa.field("group", pa.int32()),  # null: no duplicate
        pa.field("kept", pa.bool_()),
        pa.field("kept_path", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("distance", pa.float64()),
    ]
)

KINDS = ("exact", "phash", "dhash", "clip")
_KIND_RANK = {k: r for r, k in enumerate(KINDS)}
LEAKAGE_ACTIONS = ("move_to_train", "drop")
MULTIHASH_TABLES = 4
MULTIHASH_BITS = HASH_BITS // MULTIHASH_TABLES
MULTIHASH_MAX_THRESHOLD = 15  # nflip <= 3: beyond, it enumerates > 2,500 buckets per table
GPU_K = 256
_BATCH = 8192


@dataclass(frozen=True)
class NearDupConfig:
    """Knobs of near-duplicate search.

    Attributes:
        phash_threshold: max pHash Hamming distance of a ``phash`` pair (0..32). 10 is a
            placeholder until `sweep_thresholds` on the sandbox ground truth picks one.
        dhash_threshold: max dHash distance of a ``dhash`` pair (0..32); None disables.
        dhash_phash_max: a ``dhash`` pair's pHash distance must still be <= this
            (phash_threshold..64).
        clip_threshold: cosine similarity a ``clip`` pair must exceed (0 < x < 1).
        flat_max: largest set FAISS searches with `IndexBinaryFlat` (>= 1); above,
            multi-hash (see the module docstring for why the default is high). On the CPU,
            sets above `MIH_MIN` codes use `mih_pairs` instead (t <= 15).
        use_gpu: None = when available; False = never; True = when available, warning
            if not.
        drop_cross_series: drop every member of a group spanning several series.
        leakage_action: what `leakage_check` does to a held-out image near a train image:
            ``move_to_train`` or ``drop``.
        train_split: the value of ``split`` naming the training set.
    """

    phash_threshold: int = 10
    dhash_threshold: int | None = 8
    dhash_phash_max: int = 20
    clip_threshold: float = 0.95
    flat_max: int = 2_000_000
    use_gpu: bool | None = None
    drop_cross_series: bool = True
    leakage_action: str = "move_to_train"
    train_split: str = "train"

    def __post_init__(self) -> None:
        if not 0 <= self.phash_threshold <= 32:
            raise ValueError(
                f"NearDupConfig.phash_threshold={self.phash_threshold!r}; expected 0..32"
            )
        if self.dhash_threshold is not None and not 0 <= self.dhash_threshold <= 32:
            raise ValueError(
                f"NearDupConfig.dhash_threshold={self.dhash_threshold!r}; expected 0..32 or None"
            )
        if not self.phash_threshold <= self.dhash_phash_max <= HASH_BITS:
            raise ValueError(
                f"NearDupConfig.dhash_phash_max={self.dhash_phash_max!r}; expected "
                f"phash_threshold ({self.phash_threshold})..{HASH_BITS}"
            )
        if not 0.0 < self.clip_threshold < 1.0:
            raise ValueError(
                f"NearDupConfig.clip_threshold={self.clip_threshold!r}; expected 0 < x < 1"
            )
        if self.flat_max < 1:
            raise ValueError(f"NearDupConfig.flat_max={self.flat_max!r}; expected >= 1")
        if self.leakage_action not in LEAKAGE_ACTIONS:
            raise ValueError(
                f"NearDupConfig.leakage_action={self.leakage_action!r}; expected one of "
                f"{', '.join(LEAKAGE_ACTIONS)}"
            )
        if not self.train_split:
            raise ValueError("NearDupConfig.train_split is empty; expected e.g. 'train'")


# ---------------------------------------------------------------------------- search


def gpu_available(use_gpu: bool | None = None) -> bool:
    """Whether FAISS should run on a GPU: faiss has GPU support and torch sees CUDA."""
    if use_gpu is False:
        return False
    ok = hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0
    if ok:
        try:
            import torch  # only imported when faiss itself has GPU support

            ok = bool(torch.cuda.is_available())
        except Exception:  # a broken torch install must not break deduplication
            ok = False
    if use_gpu and not ok:
        log.warning("use_gpu=True but faiss has no GPU support or CUDA is unavailable; using CPU")
    return ok


PairArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _empty_pairs() -> PairArrays:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)


def _self_pairs(q: np.ndarray, j: np.ndarray, d: np.ndarray) -> PairArrays:
    keep = j > q  # a self-join finds each pair twice and every item itself
    return q[keep].astype(np.int64), j[keep].astype(np.int64), d[keep].astype(np.float64)


def range_pairs(index: Any, x: np.ndarray, radius: float) -> PairArrays:
    """Pairs ``i < j`` of a self-join by FAISS ``range_search`` (x is what `index` holds).

    The radius is FAISS's: binary indexes keep ``distance < radius``; inner-product indexes
    keep ``similarity > radius``. Queries run in batches to bound memory.
    """
    parts = [_empty_pairs()]
    for start in range(0, len(x), _BATCH):
        lims, dist, ids = index.range_search(x[start : start + _BATCH], radius)
        q = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        parts.append(_self_pairs(q, ids, dist))
    return _concat(parts)


def _concat(parts: Sequence[PairArrays]) -> PairArrays:
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def knn_range_pairs(
    index: Any,
    x: np.ndarray,
    k: int,
    within: Callable[[np.ndarray], np.ndarray],
    fallback: Any,
    radius: float,
) -> PairArrays:
    """`range_pairs` through k-NN search, for indexes without range search (FAISS GPU).

    Args:
        index: searched with ``index.search(x, k)``.
        x: the vectors/codes `index` holds.
        k: neighbours per query.
        within: mask of the k-NN distances that count as a match.
        fallback: a CPU index over the same data, range-searched (with `radius`) for the
            rows whose k-th neighbour still matches: they may have more than k matches.
        radius: FAISS range-search radius for `fallback`.
    """
    n = len(x)
    if n < 2:
        return _empty_pairs()
    k = min(k, n)
    parts = [_empty_pairs()]
    redo = [np.zeros(0, np.int64)]
    for start in range(0, n, _BATCH):
        dist, ids = index.search(x[start : start + _BATCH], k)
        ok = within(dist) & (ids >= 0)
        rows = np.arange(start, start + len(dist))
        saturated = ok[:, -1]  # the k-th neighbour matches: there may be more
        redo.append(rows[saturated])
        ok[saturated] = False
        q = np.broadcast_to(rows[:, None], ids.shape)[ok]
        parts.append(_self_pairs(q, ids[ok], dist[ok]))
    again = np.concatenate(redo)
    for start in range(0, len(again), _BATCH):
        rows = again[start : start + _BATCH]
        lims, dist, ids = fallback.range_search(x[rows], radius)
        parts.append(_self_pairs(np.repeat(rows, np.diff(lims).astype(np.int64)), ids, dist))
    # Each pair i < j comes from query i alone: its k-NN hold all its matches unless
    # saturated, and then the range search does. np.unique only sorts the result.
    i, j, d = _concat(parts)
    _, first = np.unique(i * n + j, return_index=True)
    return i[first], j[first], d[first]


# Multi-index hashing (MIH): an exact Hamming self-join in numpy, no index structure.
MIH_CHUNKS = 4
MIH_CHUNK_BITS = HASH_BITS // MIH_CHUNKS
MIH_MIN = 10_000  # below, about as fast as the FAISS flat scan (t=10: equal at ~2-5k codes)
_MIH_BUDGET = 1 << 22  # candidate pairs verified per numpy step (bounds memory)


def mih_budgets(threshold: int) -> tuple[int, ...]:
    """Per-chunk flip budgets ``b_k`` (-1: chunk unused) with ``sum(b_k + 1) == t + 1``.

    Pigeonhole: a pair more than ``b_k`` bits apart in every chunk k is at least
    ``sum(b_k + 1) = t + 1`` bits apart, so every pair within t is within ``b_k`` of
    chunk k for some k, and is found by enumerating those flips.
    """
    q, r = divmod(threshold + 1, MIH_CHUNKS)
    return tuple(q + (1 if k < r else 0) - 1 for k in range(MIH_CHUNKS))


def _flip_masks(width: int, radius: int) -> list[int]:
    return [
        sum(1 << b for b in bits)
        for k in range(1, radius + 1)
        for bits in combinations(range(width), k)
    ]


def _mih_verify(
    xs: np.ndarray,
    order: np.ndarray,
    left: np.ndarray,
    rep: np.ndarray,
    vstart: np.ndarray,
    t: int,
    out: list[PairArrays],
    ar: np.ndarray,
) -> None:
    """Sorted position ``left[k]`` against ``xs[vstart[k] : vstart[k] + rep[k]]``."""
    csum = np.cumsum(rep)
    lo = 0
    while lo < len(left):
        base = int(csum[lo - 1]) if lo else 0
        hi = max(int(np.searchsorted(csum, base + _MIH_BUDGET, "right")), lo + 1)
        r = rep[lo:hi]
        c = csum[lo:hi] - base
        total = int(c[-1])
        if total:
            xu = np.repeat(xs[left[lo:hi]], r)
            v = np.repeat(vstart[lo:hi] - (c - r), r)
            v += ar[:total]
            d = np.bitwise_count(xu ^ xs[v])
            hit = np.flatnonzero(d <= t)
            if len(hit):
                li = np.searchsorted(c, hit, side="right")
                out.append((order[left[lo:hi][li]], order[v[hit]], d[hit]))
        lo = hi


def _mih_chunk(
    x: np.ndarray, t: int, offset: int, budget: int, ar: np.ndarray
) -> list[PairArrays]:
    """Candidate pairs within `budget` bits of each other in one chunk, verified to t."""
    out: list[PairArrays] = []
    w = MIH_CHUNK_BITS
    key = ((x >> np.uint64(offset)) & np.uint64((1 << w) - 1)).astype(np.int64)
    order = np.argsort(key, kind="stable")
    xs = x[order]
    uniq, first, counts = np.unique(key[order], return_index=True, return_counts=True)
    pos_of = np.full(1 << w, -1, np.int64)
    pos_of[uniq] = np.arange(len(uniq))
    # Equal chunk: each element pairs with the later ones of its bucket.
    pos = np.arange(len(x))
    rep = np.repeat(first + counts, counts) - pos - 1
    _mih_verify(xs, order, pos, rep, pos + 1, t, out, ar)
    # Chunk values `mu` apart: bucket u (with u's highest bit of mu clear) joins u ^ mu.
    by_bit: dict[int, np.ndarray] = {}
    for mu in _flip_masks(w, budget):
        hb = 1 << (mu.bit_length() - 1)
        if hb not in by_bit:
            by_bit[hb] = np.flatnonzero((uniq & hb) == 0)
        ia = by_bit[hb]
        ib = pos_of[uniq[ia] ^ mu]
        ok = ib >= 0
        ia, ib = ia[ok], ib[ok]
        if not len(ia):
            continue
        ca, cb = counts[ia], counts[ib]
        left = np.repeat(first[ia] - (np.cumsum(ca) - ca), ca) + ar[: int(ca.sum())]
        _mih_verify(xs, order, left, np.repeat(cb, ca), np.repeat(first[ib], ca), t, out, ar)
    return out


def mih_pairs(codes: np.ndarray, threshold: int) -> PairArrays:
    """All pairs ``i < j`` of 64-bit codes within `threshold` bits, by multi-index hashing.

    Exact for any threshold (see `mih_budgets`), but the flips enumerated per chunk grow
    as C(16, t // 4), so it pays up to about t = 15. Sorted by ``(i, j)``.

    Args:
        codes: ``(n, 8)`` uint8 rows (as FAISS takes them) or ``(n,)`` uint64.
    """
    c = np.ascontiguousarray(codes)
    x = c.view(np.uint64).reshape(-1) if c.dtype == np.uint8 else c.astype(np.uint64)
    n = len(x)
    if n < 2:
        return _empty_pairs()
    ar = np.arange(max(n, _MIH_BUDGET), dtype=np.int64)
    out: list[PairArrays] = []
    for k, budget in enumerate(mih_budgets(threshold)):
        if budget >= 0:
            out += _mih_chunk(x, threshold, k * MIH_CHUNK_BITS, budget, ar)
    if not out:
        return _empty_pairs()
    i, j, d = _concat(out)
    a, b = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    _, keep = np.unique(a * n + b, return_index=True)  # found once per matching chunk
    return a[keep], b[keep], d[keep].astype(np.float64)


def binary_index(codes: np.ndarray, threshold: int, flat_max: int = 2_000_000) -> Any:
    """A CPU FAISS binary index over 64-bit codes, chosen for an exact search within t bits."""
    index: Any
    if len(codes) > flat_max and threshold <= MULTIHASH_MAX_THRESHOLD:
        index = faiss.IndexBinaryMultiHash(HASH_BITS, MULTIHASH_TABLES, MULTIHASH_BITS)
        index.nflip = threshold // MULTIHASH_TABLES  # pigeonhole: exact recall
    else:
        index = faiss.IndexBinaryFlat(HASH_BITS)
    index.add(np.ascontiguousarray(codes, dtype=np.uint8))
    return index


def hamming_pairs(
    codes: np.ndarray,
    threshold: int,
    flat_max: int = 2_000_000,
    use_gpu: bool | None = None,
    mih_min: int = MIH_MIN,
) -> PairArrays:
    """All pairs ``i < j`` of 64-bit codes within `threshold` bits (inclusive).

    On the CPU, more than `mih_min` codes with ``threshold <= 15`` go to `mih_pairs`;
    otherwise (and on a GPU) FAISS searches (`binary_index`). Both give the same pairs.

    Returns:
        ``(i, j, distance)`` arrays, sorted by ``(i, j)``.
    """
    if len(codes) < 2:
        return _empty_pairs()
    gpu_ok = gpu_available(use_gpu)
    if not gpu_ok and len(codes) > mih_min and threshold <= MULTIHASH_MAX_THRESHOLD:
        return mih_pairs(codes, threshold)
    i, j, d = _faiss_hamming_pairs(codes, threshold, flat_max, gpu_ok)
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


def _faiss_hamming_pairs(
    codes: np.ndarray, threshold: int, flat_max: int, gpu_ok: bool
) -> PairArrays:
    cpu = binary_index(codes, threshold, flat_max)
    if gpu_ok:
        res: Any = faiss.StandardGpuResources()
        flat = faiss.IndexBinaryFlat(HASH_BITS)
        flat.add(codes)
        if hasattr(faiss, "index_binary_cpu_to_gpu"):
            gpu = faiss.index_binary_cpu_to_gpu(res, 0, flat)
        else:  # older faiss GPU builds only have the class
            gpu = faiss.GpuIndexBinaryFlat(res, flat)
        return knn_range_pairs(gpu, codes, GPU_K, lambda d: d <= threshold, cpu, threshold + 1)
    # FAISS keeps distance < radius: + 1 so that distance == threshold is a match.
    return range_pairs(cpu, codes, threshold + 1)


def cosine_pairs(vectors: np.ndarray, threshold: float, use_gpu: bool | None = None) -> PairArrays:
    """All pairs ``i < j`` of L2-normalised vectors with cosine similarity > `threshold`.

    Returns:
        ``(i, j, similarity)`` arrays.
    """
    if len(vectors) < 2:
        return _empty_pairs()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    cpu = faiss.IndexFlatIP(x.shape[1])
    cpu.add(x)
    if gpu_available(use_gpu):
        res: Any = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(res, 0, cpu)
        return knn_range_pairs(gpu, x, GPU_K, lambda s: s > threshold, cpu, threshold)
    return range_pairs(cpu, x, threshold)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings have shape {x.shape}; expected (n, dim)")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


# ---------------------------------------------------------------------------- graph


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra

    def groups(self) -> list[list[int]]:
        """Sets of two or more, each sorted, ordered by their smallest member."""
        by_root: dict[int, list[int]] = defaultdict(list)
        for a in range(len(self.parent)):
            by_root[self.find(a)].append(a)
        return sorted((m for m in by_root.values() if len(m) > 1), key=lambda m: m[0])


@dataclass
class _Meta:
    ids: list[str]
    series: list[str | None]
    split: list[str | None] | None
    sha: list[str | None]
    phash: list[str | None]
    dhash: list[str | None]
    area: list[int]
    rank: list[float]
    pint: dict[int, int] = field(default_factory=dict)  # row -> pHash as int
    dint: dict[int, int] = field(default_factory=dict)
    vec: dict[int, np.ndarray] = field(default_factory=dict)  # row -> unit embedding

    def __len__(self) -> int:
        return len(self.ids)


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * len(table)


def _meta(table: pa.Table, embeddings: tuple[Sequence[str], np.ndarray] | None) -> _Meta:
    for required in ("image_id", "sha256", "phash"):
        if required not in table.column_names:
            raise ValueError(
                f"near-duplicate input lacks column {required!r}; expected image_id, series_id, "
                "sha256, phash, dhash, width, height, rank (and optionally split)"
            )
    ids = [str(i) for i in table.column("image_id").to_pylist()]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise ValueError(f"near-duplicate input has image_id {dup!r} twice; expected unique ids")
    widths, heights = _column(table, "width"), _column(table, "height")
    ranks = _column(table, "rank")
    meta = _Meta(
        ids=ids,
        series=_column(table, "series_id"),
        split=table.column("split").to_pylist() if "split" in table.column_names else None,
        sha=_column(table, "sha256"),
        phash=_column(table, "phash"),
        dhash=_column(table, "dhash"),
        area=[(w or 0) * (h or 0) for w, h in zip(widths, heights, strict=True)],
        rank=[float(r) if r is not None else float("inf") for r in ranks],
    )
    for name, values, ints in (("phash", meta.phash, meta.pint), ("dhash", meta.dhash, meta.dint)):
        for row, h in enumerate(values):
            if h is None:
                continue
            if len(h) != HASH_BITS // 4:
                raise ValueError(
                    f"{name} {h!r} of image {ids[row]!r} is invalid; expected 16 hex digits"
                )
            ints[row] = int(h, 16)
    if embeddings is not None:
        emb_ids, vectors = embeddings
        unit = normalize(vectors)
        if len(emb_ids) != len(unit):
            raise ValueError(
                f"embeddings have {len(emb_ids)} ids and {len(unit)} vectors; expected equal"
            )
        row_of = {image_id: r for r, image_id in enumerate(ids)}
        for image_id, v in zip(emb_ids, unit, strict=True):
            r = row_of.get(str(image_id))
            if r is not None and np.any(v):
                meta.vec[r] = v
    return meta


Edges = dict[tuple[int, int], tuple[int, float]]  # (a < b) -> (kind rank, distance)


def _add_edge(edges: Edges, a: int, b: int, kind: str, distance: float) -> None:
    key = (a, b) if a < b else (b, a)
    new = (_KIND_RANK[kind], float(distance))
    old = edges.get(key)
    if old is None or new < old:
        edges[key] = new


def _edges(meta: _Meta, cfg: NearDupConfig) -> Edges:
    """A sparse edge set with the same connected components as all matching pairs."""
    edges: Edges = {}
    # Exact: a star per sha256 connects a copy set as well as all its pairs would.
    first_of_sha: dict[str, int] = {}
    for row, sha in enumerate(meta.sha):
        if sha is None:
            continue
        first = first_of_sha.setdefault(sha, row)
        if first != row:
            _add_edge(edges, first, row, "exact", 0.0)
    distinct = [r for r, s in enumerate(meta.sha) if s is None or first_of_sha[s] == r]

    # pHash: one entry per distinct code; identical codes joined by a star.
    by_code: dict[int, list[int]] = defaultdict(list)
    for row in distinct:
        if row in meta.pint:
            by_code[meta.pint[row]].append(row)
    code_firsts = [rows[0] for rows in by_code.values()]
    for rows in by_code.values():
        for row in rows[1:]:
            _add_edge(edges, rows[0], row, "phash", 0.0)
    pcodes = codes_array([meta.phash[r] or "" for r in code_firsts])
    for i, j, d in zip(
        *hamming_pairs(pcodes, cfg.phash_threshold, cfg.flat_max, cfg.use_gpu), strict=True
    ):
        _add_edge(edges, code_firsts[i], code_firsts[j], "phash", d)

    # dHash confirms pairs pHash puts in its grey zone (see the module docstring).
    if cfg.dhash_threshold is not None:
        firsts = [r for r in code_firsts if r in meta.dint]
        dcodes = codes_array([meta.dhash[r] or "" for r in firsts])
        i_s, j_s, d_s = hamming_pairs(dcodes, cfg.dhash_threshold, cfg.flat_max, cfg.use_gpu)
        if len(i_s):
            p = np.array([meta.pint[r] for r in firsts], dtype=np.uint64)
            pd = np.bitwise_count(p[i_s] ^ p[j_s])
            keep = (pd > cfg.phash_threshold) & (pd <= cfg.dhash_phash_max)
            for i, j, d in zip(i_s[keep], j_s[keep], d_s[keep], strict=True):
                _add_edge(edges, firsts[i], firsts[j], "dhash", d)

    # CLIP: cosine on unit embeddings of one row per sha256.
    if meta.vec:
        rows = [r for r in distinct if r in meta.vec]
        if len(rows) > 1:
            x = np.stack([meta.vec[r] for r in rows])
            for i, j, s in zip(*cosine_pairs(x, cfg.clip_threshold, cfg.use_gpu), strict=True):
                _add_edge(edges, rows[i], rows[j], "clip", max(0.0, 1.0 - float(s)))
    return edges


def _relation(meta: _Meta, a: int, b: int, cfg: NearDupConfig) -> tuple[str, float] | None:
    """The strongest signal linking rows a and b directly, with its distance."""
    if meta.sha[a] is not None and meta.sha[a] == meta.sha[b]:
        return "exact", 0.0
    pa_, pb = meta.pint.get(a), meta.pint.get(b)
    if pa_ is not None and pb is not None:
        pd = (pa_ ^ pb).bit_count()
        if pd <= cfg.phash_threshold:
            return "phash", float(pd)
        da, db = meta.dint.get(a), meta.dint.get(b)
        if (
            cfg.dhash_threshold is not None
            and da is not None
            and db is not None
            and pd <= cfg.dhash_phash_max
        ):
            dd = (da ^ db).bit_count()
            if dd <= cfg.dhash_threshold:
                return "dhash", float(dd)
    va, vb = meta.vec.get(a), meta.vec.get(b)
    if va is not None and vb is not None:
        sim = float(np.dot(va, vb))
        if sim > cfg.clip_threshold:
            return "clip", max(0.0, 1.0 - sim)
    return None


def _representative(meta: _Meta, members: Iterable[int]) -> int:
    return min(members, key=lambda r: (-meta.area[r], meta.rank[r], meta.ids[r]))


def _best_neighbour(
    adjacency: dict[int, list[tuple[int, int, float]]], row: int
) -> tuple[int, str, float] | None:
    """The neighbour `row` is linked to by the strongest signal, then smallest distance."""
    best: tuple[int, float, int] | None = None
    for other, rank, dist in adjacency.get(row, ()):
        cand = (rank, dist, other)
        if best is None or cand < best:
            best = cand
    if best is None:
        return None
    return best[2], KINDS[best[0]], best[1]


def _adjacency(edges: Edges) -> dict[int, list[tuple[int, int, float]]]:
    adj: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
    for (a, b), (rank, dist) in edges.items():
        adj[a].append((b, rank, dist))
        adj[b].append((a, rank, dist))
    return adj


@dataclass(frozen=True)
class _Group:
    members: list[int]
    rep: int
    kept: int | None
    scope: str
    # (row, matched row, kind, distance) per dropped member, in row order
    dropped: list[tuple[int, int, str, float]]


def _groups(meta: _Meta, cfg: NearDupConfig) -> list[_Group]:
    """Connected components, their representative, scope and one row per dropped member."""
    edges = _edges(meta, cfg)
    uf = UnionFind(len(meta))
    for a, b in edges:
        uf.union(a, b)
    adj = _adjacency(edges)
    out = []
    for members in uf.groups():
        rep = _representative(meta, members)
        cross_series = len({meta.series[r] for r in members}) > 1
        splits = {meta.split[r] for r in members} - {None} if meta.split is not None else set()
        if cross_series:
            scope = "cross_series"
        elif len(splits) > 1:
            scope = "cross_split"
        else:
            scope = "within_series"
        kept = None if cross_series and cfg.drop_cross_series else rep
        dropped = []
        for row in members:
            if row == kept:
                continue
            rel = _relation(meta, row, rep, cfg) if row != rep else None
            if rel is not None:
                dropped.append((row, rep, rel[0], rel[1]))
                continue
            nb = _best_neighbour(adj, row)
            if nb is None:  # cannot happen: every member of a group has an edge
                raise AssertionError(f"group member {meta.ids[row]!r} has no edge")
            dropped.append((row, nb[0], nb[1], nb[2]))
        out.append(_Group(members, rep, kept, scope, dropped))
    return out


# ---------------------------------------------------------------------------- API


def find_duplicates(
    meta_hashes: pa.Table,
    config: NearDupConfig | None = None,
    embeddings: tuple[Sequence[str], np.ndarray] | None = None,
) -> pa.Table:
    """Group duplicates and record every image to drop.

    Args:
        meta_hashes: one row per image: image_id, series_id, sha256, phash, dhash, width,
            height, rank (optional: split). image_id, sha256 and phash are required; other
            missing columns count as null. Rows with a null hash (decode errors) take part
            only through the hashes they have.
        config: thresholds and policies.
        embeddings: optional ``(image_ids, vectors)``, vectors ``(n, dim)``; ids absent
            from `meta_hashes` are ignored.

    Returns:
        The `duplicates` table (`DUPLICATES`), rows in input order, ``action="drop"``.
    """
    cfg = config or NearDupConfig()
    meta = _meta(meta_hashes, embeddings)
    groups = _groups(meta, cfg)
    rows: list[tuple[int, dict[str, Any]]] = []
    for g in groups:
        for row, matched, kind, dist in g.dropped:
            rows.append(
                (
                    row,
                    {
                        "image_id": meta.ids[row],
                        "kept_id": meta.ids[g.kept] if g.kept is not None else None,
                        "group_id": meta.ids[g.rep],
                        "matched_id": meta.ids[matched],
                        "kind": kind,
                        "distance": dist,
                        "scope": g.scope,
                        "series_id": meta.series[row],
                        "action": "drop",
                    },
                )
            )
    rows.sort(key=lambda r: r[0])
    return pa.Table.from_pylist([r for _, r in rows], schema=DUPLICATES)


def kept_ids(meta_hashes: pa.Table, duplicates: pa.Table) -> list[str]:
    """Image ids of `meta_hashes` (in order) that no ``action="drop"`` row removes."""
    actions = duplicates.column("action").to_pylist()
    dropped = {
        i
        for i, a in zip(duplicates.column("image_id").to_pylist(), actions, strict=True)
        if a == "drop"
    }
    return [i for i in meta_hashes.column("image_id").to_pylist() if i not in dropped]


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
    meta = _meta(hashes_with_split, embeddings)
    assert meta.split is not None
    edges = _edges(meta, cfg)
    uf = UnionFind(len(meta))
    for a, b in edges:
        uf.union(a, b)
    rows: list[tuple[int, dict[str, Any]]] = []
    for members in uf.groups():
        train = {r for r in members if meta.split[r] == cfg.train_split}
        held = [r for r in members if meta.split[r] not in (None, cfg.train_split)]
        if not train or not held:
            continue
        rep = _representative(meta, members)
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
    meta: _Meta, row: int, candidates: Sequence[int], cfg: NearDupConfig
) -> tuple[int, str, float] | None:
    """The candidate `row` matches directly by the strongest signal, then distance, then id."""
    best: tuple[int, float, str, int] | None = None
    for other in candidates:
        rel = _relation(meta, row, other, cfg)
        if rel is not None:
            cand = (_KIND_RANK[rel[0]], rel[1], meta.ids[other], other)
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


def sweep_thresholds(
    hashes: pa.Table,
    truth_pairs: Iterable[tuple[str, str]],
    thresholds: Iterable[int] = range(0, 21),
) -> list[dict[str, Any]]:
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
        One dict per threshold: threshold, predicted_pairs, true_pairs, tp, fp, fn,
        precision (1.0 when nothing is predicted), recall (1.0 when nothing is true), f1.
    """
    ts = sorted(set(thresholds))
    for t in ts:
        if not 0 <= t <= 32:
            raise ValueError(f"threshold {t!r} is invalid; expected 0..32")
    meta = _meta(hashes.select([c for c in ("image_id", "sha256", "phash")]), None)
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
    edges = _edges(meta, cfg)
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
            {
                "threshold": t,
                "predicted_pairs": predicted,
                "true_pairs": true_pairs,
                "tp": tp,
                "fp": predicted - tp,
                "fn": true_pairs - tp,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return out


def _pairs_in(labels: Sequence[Any]) -> int:
    counts: dict[Any, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    return sum(c * (c - 1) // 2 for c in counts.values())


# ---------------------------------------------------------------------------- dedupe CLI core


def _image_files(directory: str, extensions: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
    files: list[str] = []
    errors: list[tuple[str, str]] = []

    def onerror(err: OSError) -> None:
        errors.append((err.filename or directory, f"{type(err).__name__}: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(directory, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                files.append(os.path.join(dirpath, name))
    return files, errors


def dedupe_folder(
    directory: str | os.PathLike[str],
    threshold: int = 10,
    out: str | os.PathLike[str] | None = None,
    workers: int = 2,
) -> Iterator[dict[str, Any]]:
    """Find duplicate images in any folder (recursively); the core of ``tv100 dedupe``.

    Files are those with an image extension Pillow knows (hidden files and folders are
    skipped). Within a group the largest image (w*h) is kept, ties broken by path.

    Args:
        directory: the folder.
        threshold: pHash Hamming threshold (0..32).
        out: a ``.parquet`` path: one `DEDUPE_FOLDER` row per file (hashes, group, kept),
            written atomically (temp file + rename) before the first dict is yielded.
        workers: hashing processes.

    Yields:
        First ``{"unreadable": path, "reason": message}`` per file that could not be
        read or decoded (these never stop the run), then one dict per group:
        ``{"group": n, "kept": path, "duplicates": [{"path", "kind", "distance",
        "matched"}], "kind": "exact,phash" (the kinds present, strongest first),
        "distance": the largest distance among the duplicates}``.

    Raises:
        NotADirectoryError: when `directory` is not a folder.
        ValueError: for an invalid threshold, workers or out path.
    """
    top = os.fspath(directory)
    if not os.path.isdir(top):
        raise NotADirectoryError(f"dedupe: {top!r} is not a folder; expected a folder of images")
    if out is not None and not os.fspath(out).endswith(".parquet"):
        raise ValueError(f"dedupe: out={os.fspath(out)!r}; expected a path ending in .parquet")
    cfg = NearDupConfig(
        phash_threshold=threshold,
        dhash_phash_max=max(threshold, NearDupConfig.dhash_phash_max),
        drop_cross_series=False,
    )
    hcfg = HashConfig(workers=workers)
    return _dedupe_folder(top, cfg, hcfg, None if out is None else os.fspath(out))


def _dedupe_folder(
    top: str, cfg: NearDupConfig, hcfg: HashConfig, out: str | None
) -> Iterator[dict[str, Any]]:
    extensions = {e.lower() for e in Image.registered_extensions()}
    paths, walk_errors = _image_files(top, extensions)
    hashes = hash_files([(p, p) for p in paths], hcfg)
    # Unreadable files are reported as such, not grouped (even byte-identical ones).
    ok = pc.equal(hashes.column("status"), "ok")
    sha = pc.if_else(ok, hashes.column("sha256"), pa.scalar(None, pa.string()))
    meta = _meta(hashes.set_column(hashes.schema.get_field_index("sha256"), "sha256", sha), None)
    groups = _groups(meta, cfg)

    per_file: dict[int, dict[str, Any]] = {}
    for n, g in enumerate(groups):
        assert g.kept is not None  # drop_cross_series is off: every group keeps one
        per_file[g.kept] = {"group": n, "kept": True, "kept_path": paths[g.kept]}
        for row, _matched, kind, dist in g.dropped:
            per_file[row] = {
                "group": n,
                "kept": False,
                "kept_path": paths[g.kept],
                "kind": kind,
                "distance": dist,
            }
    if out is not None:
        rows = []
        for r, rec in enumerate(hashes.to_pylist()):
            rec.pop("image_id")
            rows.append(
                {
                    **rec,
                    "path": paths[r],
                    "group": None,
                    "kept": None,
                    "kept_path": None,
                    "kind": None,
                    "distance": None,
                    **per_file.get(r, {}),
                }
            )
        _write_parquet_atomic(pa.Table.from_pylist(rows, schema=DEDUPE_FOLDER), out)

    for path, reason in walk_errors:
        yield {"unreadable": path, "reason": reason}
    for r, (status, err) in enumerate(
        zip(
            hashes.column("status").to_pylist(),
            hashes.column("error_message").to_pylist(),
            strict=True,
        )
    ):
        if status != "ok":
            yield {"unreadable": paths[r], "reason": err}
    for n, g in enumerate(groups):
        assert g.kept is not None
        dups: list[dict[str, Any]] = [
            {"path": paths[row], "kind": kind, "distance": dist, "matched": paths[m]}
            for row, m, kind, dist in g.dropped
        ]
        kinds = sorted({d["kind"] for d in dups}, key=_KIND_RANK.__getitem__)
        yield {
            "group": n,
            "kept": paths[g.kept],
            "duplicates": dups,
            "kind": ",".join(kinds),
            "distance": max(d["distance"] for d in dups),
        }


def _write_parquet_atomic(table: pa.Table, path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
