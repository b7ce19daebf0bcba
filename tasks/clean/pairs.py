"""Pair searches: every pair ``i < j`` of codes within t bits, or of vectors above a cosine.

Hamming pairs. On the CPU, more than `MIH_MIN` (10,000) codes with t <= 15 are joined by
`mih_pairs`, exact multi-index hashing in numpy: the 64 bits are cut into four 16-bit chunks
with flip budgets ``b_k`` summing (as ``b_k + 1``) to t + 1 (t=10: 2, 2, 2, 1), so by the
pigeonhole principle every pair within t is within ``b_k`` bits in some chunk k; per chunk the
codes are sorted by chunk value, bucket u is joined with bucket ``u ^ mask`` for every mask of
at most ``b_k`` bits, candidates are kept when popcount(xor) <= t, and pairs found by several
chunks are deduplicated. On 1,010,000 uniform codes at t=10 (2 cores) it takes about 22 s
where the FAISS flat scan took 508 s; it also beats the flat scan from a few thousand codes
up. Smaller sets, t > 15 (the flips per chunk grow as C(16, t // 4)) and GPU runs use FAISS:
`IndexBinaryFlat` up to `NearDupConfig.flat_max` codes and `IndexBinaryMultiHash` (4 tables
of 16 bits, ``nflip = t // 4``) above: by the pigeonhole principle a pair within t bits
differs in at most ``t // 4`` bits of one of the 4 disjoint 16-bit chunks, so the multi-hash
search is exact, not approximate (for t <= 15; above, flat is used). The switch defaults to
2,000,000 because faiss 1.15's multi-hash range search was slower than the flat scan at every
size measured (2 cores, t=10, uniform codes, extrapolated from 4,000 queries: 110k codes flat
7 s vs 26 s; 400k 105 s vs 362 s; 1M 309 s vs 1,344 s), and real pHash codes, being
clustered, fill its buckets even less evenly. FAISS range search is strict
(``distance < radius``), so ``t + 1`` is passed to include distance == t.

Incremental search (`incremental_hamming_pairs`). The pairs within t among a set of distinct
values depend on the values alone, not on rows or their order, so a run keeps them by value
(`ValuePairs`) and the next one keeps those whose two values are still present and searches
only the values that are new, against all present ones (`cross_pairs`: `mih_cross_pairs`, a
`tv100.tasks.clean.mihindex.MihIndex` of all values that the new ones query, else a FAISS
range search); rows of equal value pair at distance 0: the result is `hamming_pairs`' own.
The index is rebuilt each run (O(n): a radix sort per chunk) rather than stored: the cost
of a refresh is in checking candidates, which the index makes cheap (see its module). On
1,060,500 codes (t=10), 50,500 of them new, the refresh takes 1.6-2.3 s where the full
search takes 26-29 s (0.06-0.08, 2 busy cores; `bench/neardup.py --refresh-only`); checking
candidates one by one, as the self-join does, it took 4.0 s against 21 s (0.19).

Cosine pairs: an `IndexFlatIP` range search over L2-normalised vectors.

GPU. When faiss is built with GPU support *and* ``torch.cuda.is_available()``, a k-NN
search replaces the range search (GPU indexes have none); rows whose k-th neighbour is
still within the threshold are re-searched on the CPU index, so results are identical.
Every Hamming path returns the pairs sorted by ``(i, j)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import faiss
except ImportError as err:  # pragma: no cover - one of the extras is always installed by make
    raise ImportError(
        "tv100 needs FAISS: install it with `pip install 'tv100[cpu]'` (faiss-cpu) or "
        "`pip install 'tv100[gpu]'` (faiss-gpu-cu12), not both"
    ) from err

from tv100.tasks.clean.config import HASH_BITS, NearDupConfig
from tv100.tasks.clean.mihindex import (
    MIH_CHUNK_BITS,
    flip_masks,
    mih_budgets,
    mih_cross_pairs,
)

log = logging.getLogger(__name__)

MULTIHASH_TABLES = 4
MULTIHASH_BITS = HASH_BITS // MULTIHASH_TABLES
MULTIHASH_MAX_THRESHOLD = 15  # nflip <= 3: beyond, it enumerates > 2,500 buckets per table
GPU_K = 256
_BATCH = 8192


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
MIH_MIN = 10_000  # below, about as fast as the FAISS flat scan (t=10: equal at ~2-5k codes)
_MIH_BUDGET = 1 << 22  # candidate pairs verified per numpy step (bounds memory)


def _mih_verify(
    qv: np.ndarray,
    qid: np.ndarray,
    rep: np.ndarray,
    vstart: np.ndarray,
    xs: np.ndarray,
    order: np.ndarray,
    t: int,
    out: list[PairArrays],
    ar: np.ndarray,
) -> None:
    """Query k (code ``qv[k]``, id ``qid[k]``) against ``xs[vstart[k] : vstart[k] + rep[k]]``
    (ids ``order[...]``); appends the pairs within t bits."""
    csum = np.cumsum(rep)
    lo = 0
    while lo < len(qv):
        base = int(csum[lo - 1]) if lo else 0
        hi = max(int(np.searchsorted(csum, base + _MIH_BUDGET, "right")), lo + 1)
        r = rep[lo:hi]
        c = csum[lo:hi] - base
        total = int(c[-1])
        if total:
            xu = np.repeat(qv[lo:hi], r)
            v = np.repeat(vstart[lo:hi] - (c - r), r)
            v += ar[:total]
            d = np.bitwise_count(xu ^ xs[v])
            hit = np.flatnonzero(d <= t)
            if len(hit):
                li = np.searchsorted(c, hit, side="right")
                out.append((qid[lo:hi][li], order[v[hit]], d[hit]))
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
    _mih_verify(xs, order, rep, pos + 1, xs, order, t, out, ar)
    # Chunk values `mu` apart: bucket u (with u's highest bit of mu clear) joins u ^ mu.
    by_bit: dict[int, np.ndarray] = {}
    for mu in flip_masks(w, budget):
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
        rep, vstart = np.repeat(cb, ca), np.repeat(first[ib], ca)
        _mih_verify(xs[left], order[left], rep, vstart, xs, order, t, out, ar)
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


def binary_index(codes: np.ndarray, threshold: int, flat_max: int = NearDupConfig.flat_max) -> Any:
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
    flat_max: int = NearDupConfig.flat_max,
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


# Incremental search: pairs keyed by code values, not rows, carried from one run to the next.
#: Above this share of new values, a fresh self-join is cheaper than querying the new ones.
REJOIN_SHARE = 0.5


@dataclass(frozen=True, eq=False)  # arrays: compare their fields
class ValuePairs:
    """Every pair of distinct code values within `threshold` bits: a search result that
    depends on the values alone (not on rows or their order), so a later run can keep it.

    Attributes:
        threshold: the Hamming threshold (inclusive) of the search.
        values: the distinct codes searched, sorted (uint64, the hex hash read as a number).
        a, b: the pairs' values, ``a < b`` (uint64), sorted by ``(a, b)``.
        distance: Hamming distance of each pair (uint8).
    """

    threshold: int
    values: np.ndarray
    a: np.ndarray
    b: np.ndarray
    distance: np.ndarray


def code_values(codes: np.ndarray) -> np.ndarray:
    """``(n,)`` uint64 codes from ``(n, 8)`` uint8 rows (the hex hash as a number) or uint64."""
    c = np.ascontiguousarray(codes)
    if c.dtype == np.uint8:
        return c.reshape(-1, 8).view(">u8").reshape(-1).astype(np.uint64)
    return c.astype(np.uint64).reshape(-1)


def _code_rows(values: np.ndarray) -> np.ndarray:
    """The ``(n, 8)`` uint8 rows FAISS takes for uint64 `values` (inverse of `code_values`)."""
    return np.ascontiguousarray(values.astype(">u8")).view(np.uint8).reshape(-1, 8)


def _isin(x: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_values, x)
    pos[pos == len(sorted_values)] = 0
    return sorted_values[pos] == x if len(sorted_values) else np.zeros(len(x), bool)


def cross_pairs(
    queries: np.ndarray,
    codes: np.ndarray,
    threshold: int,
    flat_max: int = NearDupConfig.flat_max,
    mih_min: int = MIH_MIN,
) -> PairArrays:
    """Every ``(k, m)`` of uint64 ``queries[k]`` and ``codes[m]`` within `threshold` bits,
    sorted by ``(k, m)``: `mih_cross_pairs` above `mih_min` codes (t <= 15), else a FAISS
    range search of the queries over `binary_index` (CPU: GPU indexes have none)."""
    if len(codes) > mih_min and threshold <= MULTIHASH_MAX_THRESHOLD:
        return mih_cross_pairs(queries, codes, threshold)
    if not len(queries) or not len(codes):
        return _empty_pairs()
    index = binary_index(_code_rows(codes), threshold, flat_max)
    rows = _code_rows(queries)
    parts = [_empty_pairs()]
    for start in range(0, len(rows), _BATCH):
        lims, dist, ids = index.range_search(rows[start : start + _BATCH], threshold + 1)
        q = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        parts.append((q, ids.astype(np.int64), dist.astype(np.float64)))
    i, j, d = _concat(parts)
    o = np.lexsort((j, i))
    return i[o], j[o], d[o]


def _value_pairs(
    values: np.ndarray,
    threshold: int,
    previous: ValuePairs | None,
    flat_max: int,
    use_gpu: bool | None,
    mih_min: int,
) -> PairArrays:
    """Pairs ``i < j`` of indexes into the distinct sorted `values`, sorted by ``(i, j)``."""
    n = len(values)
    added = ~_isin(values, previous.values) if previous is not None else np.ones(n, bool)
    if previous is None or added.sum() > REJOIN_SHARE * n:
        if previous is not None:
            log.info("near-dup pairs: %d of %d codes new, searching all", added.sum(), n)
        return hamming_pairs(_code_rows(values), threshold, flat_max, use_gpu, mih_min)
    keep = _isin(previous.a, values) & _isin(previous.b, values)
    old_i = np.searchsorted(values, previous.a[keep])
    old_j = np.searchsorted(values, previous.b[keep])
    new_rows = np.flatnonzero(added)
    log.info("near-dup pairs: %d of %d codes new, %d pairs kept", len(new_rows), n, keep.sum())
    k, m, d = cross_pairs(values[new_rows], values, threshold, flat_max, mih_min)
    q = new_rows[k]
    lo, hi = np.minimum(q, m), np.maximum(q, m)
    # Distinct values: distance 0 is each new value itself; two new values meet twice.
    _, first = np.unique(lo * n + hi, return_index=True)
    first = first[lo[first] != hi[first]]
    i = np.concatenate([old_i, lo[first]]).astype(np.int64)
    j = np.concatenate([old_j, hi[first]]).astype(np.int64)
    dist = np.concatenate([previous.distance[keep].astype(np.float64), d[first]])
    o = np.argsort(i * n + j)  # old pairs join two old values, new ones a new value: no repeats
    return i[o], j[o], dist[o]


def _unique(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(x, return_inverse=True)`` by an unstable argsort (SIMD: ~4x faster)."""
    order = np.argsort(x)
    xs = x[order]
    new = np.ones(len(xs), bool)
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    inverse = np.empty(len(xs), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return xs[new], inverse


def _rows_by_value(inverse: np.ndarray, count: np.ndarray, start: np.ndarray) -> np.ndarray:
    """``np.argsort(inverse, kind="stable")`` in O(n) but for the rows of repeated values
    (few): those are sorted, every other row goes straight to its value's place."""
    order = np.empty(len(inverse), np.int64)
    single = count[inverse] == 1
    rows = np.flatnonzero(single)
    order[start[inverse[rows]]] = rows
    rows = np.flatnonzero(~single)
    rows = rows[np.argsort(inverse[rows], kind="stable")]
    value = inverse[rows]
    order[start[value] + np.arange(len(rows)) - np.searchsorted(value, value)] = rows
    return order


def _row_pairs(inverse: np.ndarray, vi: np.ndarray, vj: np.ndarray, vd: np.ndarray) -> PairArrays:
    """Value pairs as row pairs ``i < j`` (row r holds value ``inverse[r]``), sorted by
    ``(i, j)``: every row of one value with every row of the other, and rows of equal value
    with each other at distance 0, as a search over the rows finds them."""
    count = np.bincount(inverse, minlength=int(inverse.max(initial=-1)) + 1)
    if count.max(initial=0) <= 1:  # distinct codes (the pHash search): one row per value
        row = np.empty(len(count), np.int64)
        row[inverse] = np.arange(len(inverse))
        i, j, d = row[vi], row[vj], vd.astype(np.float64)
    else:
        start = np.cumsum(count) - count
        order = _rows_by_value(inverse, count, start)
        many = np.flatnonzero(count > 1)
        parts = []
        for u, v, dd, within in (
            (vi, vj, vd.astype(np.float64), False),
            (many, many, np.zeros(len(many)), True),
        ):
            cu, cv = count[u], count[v]
            m = cu * cv
            k = np.repeat(np.arange(len(m)), m)
            local = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
            a, b = local // cv[k], local % cv[k]
            if within:  # rows of one value: each pair once
                k, a, b = k[a < b], a[a < b], b[a < b]
            parts.append((order[start[u][k] + a], order[start[v][k] + b], dd[k]))
        i, j, d = _concat(parts)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    o = np.lexsort((hi, lo))
    return lo[o], hi[o], d[o]


def incremental_hamming_pairs(
    codes: np.ndarray,
    threshold: int,
    previous: ValuePairs | None = None,
    flat_max: int = NearDupConfig.flat_max,
    use_gpu: bool | None = None,
    mih_min: int = MIH_MIN,
) -> tuple[PairArrays, ValuePairs]:
    """`hamming_pairs` of `codes`, searching only the values `previous` lacks.

    The pairs among a set of distinct values are a function of the values alone, so the
    last run's pairs whose two values are still present stay valid; only the new values
    are searched, against all present ones (`cross_pairs`). Without `previous` (or with
    another threshold, or over `REJOIN_SHARE` new values) every value is searched.

    Args:
        codes: ``(n, 8)`` uint8 rows or ``(n,)`` uint64; values may repeat.
        threshold: the Hamming threshold (inclusive).
        previous: the value pairs a former call returned, or None.

    Returns:
        exactly what ``hamming_pairs(codes, threshold)`` returns (``(i, j, distance)``,
        sorted by ``(i, j)``), and the value pairs of `codes` for the next call.
    """
    values, inverse = _unique(code_values(codes))
    if previous is not None and previous.threshold != threshold:
        previous = None
    vi, vj, vd = _value_pairs(values, threshold, previous, flat_max, use_gpu, mih_min)
    pairs = ValuePairs(threshold, values, values[vi], values[vj], vd.astype(np.uint8))
    return _row_pairs(inverse.reshape(-1), vi, vj, vd), pairs


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


