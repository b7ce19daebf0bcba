"""Multi-index hashing of 64-bit codes: the chunk budgets, and an index that new codes query.

Chunks and budgets. The 64 bits are cut into four 16-bit chunks with flip budgets ``b_k``
summing (as ``b_k + 1``) to t + 1 (`mih_budgets`), so every pair within t bits is within
``b_k`` bits in some chunk k. The self-join (`tv100.tasks.clean.pairs.mih_pairs`) and the
index here share them.

The index (`MihIndex`, used by `mih_cross_pairs`) answers the incremental search: a few new
codes against all the codes of a run. A query looks up, per chunk, its own bucket and those
of its flips, as the self-join does; what differs is what a candidate costs. On 1,060,500
codes with 50,500 queries (t=10) there are 345 M candidates, a tenth of the self-join's
3.7 G, and checking each as the self-join does (an index per candidate, then a gather in
query order, not bucket order) cost 13 ns a candidate against the self-join's 7: 4.5 s, 0.19
of the full search. Here each bucket is stored as rows of `ROW_CODES` slots, each slot the
32 bits that follow the chunk (cyclically): a query reads whole rows (one ``take`` of 32
bytes per 8 codes; queries sorted by chunk value, so rows are read about in order) and
compares them with its own 32 bits. A code in bucket ``u ^ flip`` is popcount(flip) bits
off in the chunk, so those 32 bits may be at most ``t - popcount(flip)`` apart, which all
but a few per cent of random candidates are not; only the rest are checked on all 64 bits.
The same search takes 1.3-1.7 s. Building the tables is O(n) (a radix sort of the 16-bit
chunk values, 0.1-0.15 s at 1 M codes), so nothing of them is kept between runs.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from tv100.tasks.clean.config import HASH_BITS

MIH_CHUNKS = 4
MIH_CHUNK_BITS = HASH_BITS // MIH_CHUNKS
ROW_CODES = 8  # slots per row: 8 uint32 = one 32-byte element to `np.take`
# Work per numpy step, small enough for the steps' arrays to stay in cache (1 MiB of rows:
# 15-25% faster than 8 MiB at 1 M codes).
_LOOKUPS = 1 << 17  # (query, bucket) lookups
_ROWS = 1 << 15  # rows compared

PairArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def mih_budgets(threshold: int) -> tuple[int, ...]:
    """Per-chunk flip budgets ``b_k`` (-1: chunk unused) with ``sum(b_k + 1) == t + 1``.

    Pigeonhole: a pair more than ``b_k`` bits apart in every chunk k is at least
    ``sum(b_k + 1) = t + 1`` bits apart, so every pair within t is within ``b_k`` of
    chunk k for some k, and is found by enumerating those flips.
    """
    q, r = divmod(threshold + 1, MIH_CHUNKS)
    return tuple(q + (1 if k < r else 0) - 1 for k in range(MIH_CHUNKS))


def flip_masks(width: int, radius: int) -> list[int]:
    """Every mask of 1 to `radius` of the low `width` bits, by number of bits."""
    return [
        sum(1 << b for b in bits)
        for k in range(1, radius + 1)
        for bits in combinations(range(width), k)
    ]


class _ChunkTable:
    """Chunk k (16 bits at ``offset``) with its flip `budget`: the codes of chunk value u fill
    rows ``first[u] ...`` (``rows[u]`` of them), `ROW_CODES` slots a row, each
    the 32 bits that follow the chunk (cyclically: `word`); ``ids`` names each slot's code
    (-1: padding after a bucket's last code)."""

    def __init__(self, x: np.ndarray, k: int, budget: int) -> None:
        self.offset, self.budget = k * MIH_CHUNK_BITS, budget
        key = self.key(x)
        order = np.argsort(key, kind="stable")  # uint16: a radix sort
        count = np.bincount(key, minlength=1 << MIH_CHUNK_BITS)
        self.rows = -(-count // ROW_CODES)
        self.first = np.cumsum(self.rows) - self.rows
        start = np.cumsum(count) - count
        slot = (self.first * ROW_CODES - start)[key[order]] + np.arange(len(x))
        size = int(self.rows.sum()) * ROW_CODES
        words = np.zeros(size, np.uint32)
        words[slot] = self.word(x[order])
        self.words = words.view(np.dtype((np.void, 4 * ROW_CODES)))
        self.ids = np.full(size, -1, np.int64)
        self.ids[slot] = order

    def key(self, x: np.ndarray) -> np.ndarray:
        """The chunk's value of each code (uint16)."""
        return (x >> np.uint64(self.offset)).astype(np.uint16)  # keeps the low 16 bits

    def word(self, x: np.ndarray) -> np.ndarray:
        """The 32 bits that follow the chunk, cyclically (uint32)."""
        s = (self.offset + MIH_CHUNK_BITS) % HASH_BITS
        if s:
            x = (x >> np.uint64(s)) | (x << np.uint64(HASH_BITS - s))
        return x.astype(np.uint32)


class MihIndex:
    """Uint64 codes (repeats allowed), indexed for `query` within `threshold` bits.

    Args:
        codes: ``(n,)`` uint64.
        threshold: the Hamming threshold (inclusive) of every query.
    """

    def __init__(self, codes: np.ndarray, threshold: int) -> None:
        self.codes = np.asarray(codes, np.uint64)
        self.threshold = threshold
        self.tables = [
            _ChunkTable(self.codes, k, b)
            for k, b in enumerate(mih_budgets(threshold))
            if b >= 0
        ]
        self._ar = np.arange(_ROWS + 1)  # a step's row offsets (grown for a bucket of more)

    def query(self, queries: np.ndarray) -> PairArrays:
        """Every ``(k, m)`` with ``queries[k]`` and ``codes[m]`` within the threshold, with
        their distance, sorted by ``(k, m)``."""
        q = np.asarray(queries, np.uint64)
        out: list[PairArrays] = []
        if len(q) and len(self.codes):
            for table in self.tables:
                self._query_chunk(q, table, out)
        if not out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
        i, j, d = (np.concatenate([p[n] for p in out]) for n in range(3))
        _, keep = np.unique(i * len(self.codes) + j, return_index=True)  # once per chunk
        return i[keep], j[keep], d[keep].astype(np.float64)

    def _query_chunk(self, q: np.ndarray, table: _ChunkTable, out: list) -> None:
        qkey = table.key(q).astype(np.int64)
        qo = np.argsort(qkey, kind="stable")  # each step then reads the rows in order
        qk, qword = qkey[qo], table.word(q[qo])
        masks = np.array([0, *flip_masks(MIH_CHUNK_BITS, table.budget)], np.int64)
        flips = np.bitwise_count(masks)
        step = max(1, _LOOKUPS // len(q))
        for p in range(table.budget + 1):
            # A code in bucket qkey ^ mask is popcount(mask) bits off in the chunk, so its
            # word may be at most the rest of the threshold away.
            same = masks[flips == p]
            for s in range(0, len(same), step):
                kk = (same[s : s + step, None] ^ qk[None, :]).reshape(-1)
                r = table.rows[kk]
                hit = np.flatnonzero(r)
                look = (hit % len(q), kk[hit], r[hit])
                self._compare(q, qo, qword, look, table, self.threshold - p, out)

    def _compare(
        self,
        q: np.ndarray,
        qo: np.ndarray,
        qword: np.ndarray,
        look: tuple[np.ndarray, np.ndarray, np.ndarray],
        table: _ChunkTable,
        limit: int,
        out: list,
    ) -> None:
        """Query ``qo[n]`` (word ``qword[n]``) against all ``r`` rows of bucket ``kk``, for
        every ``(n, kk, r)`` of `look`, in steps of about `_ROWS` rows."""
        n, kk, r = look
        csum = np.cumsum(r)
        lo = 0
        while lo < len(r):
            base = int(csum[lo - 1]) if lo else 0
            hi = max(int(np.searchsorted(csum, base + _ROWS, "right")), lo + 1)
            rr, c = r[lo:hi], csum[lo:hi] - base
            if c[-1] >= len(self._ar):
                self._ar = np.arange(int(c[-1]) + 1)
            rows = np.repeat(table.first[kk[lo:hi]] - (c - rr), rr) + self._ar[: c[-1]]
            words = np.take(table.words, rows).view(np.uint32).reshape(-1, ROW_CODES)
            words ^= np.repeat(qword[n[lo:hi]], rr)[:, None]
            slot = np.flatnonzero(np.bitwise_count(words).reshape(-1) <= limit)
            row = slot // ROW_CODES
            m = table.ids[rows[row] * ROW_CODES + slot % ROW_CODES]
            qm = qo[n[lo:hi][np.searchsorted(c, row, "right")]]
            m, qm = m[m >= 0], qm[m >= 0]
            d = np.bitwise_count(q[qm] ^ self.codes[m])
            ok = d <= self.threshold
            out.append((qm[ok].astype(np.int64), m[ok], d[ok]))
            lo = hi


def mih_cross_pairs(queries: np.ndarray, codes: np.ndarray, threshold: int) -> PairArrays:
    """Every ``(k, m)`` with ``queries[k]`` and ``codes[m]`` within `threshold` bits, by a
    `MihIndex` of `codes`. Sorted by ``(k, m)``.

    Args:
        queries, codes: ``(n,)`` uint64.
    """
    return MihIndex(codes, threshold).query(queries)
