"""Near-duplicate search benchmark: tv100's Hamming range search vs numpy brute force.

Inputs: `--n` random 64-bit codes plus `--planted` near duplicates, each a copy of a random
one of them with 0..6 bits flipped (uniform), shuffled together. tv100's side is
`tv100.tasks.clean.pairs.hamming_pairs`, the search the clean stage runs on pHash codes,
with its own choice of search (above `MIH_MIN` codes and t <= 15: `mih_pairs`, an exact
multi-index-hashing join in numpy; below, FAISS: `IndexBinaryFlat` up to
`NearDupConfig.flat_max` codes, a multi-hash index above) and its own radius handling
(threshold t is inclusive: FAISS gets radius t + 1 because `range_search` keeps
``distance < radius``).

Two measurements, in this order, never concurrently:

  (a) side by side on a random `--subset` of the codes: numpy brute force (popcount of
      xor over every pair i < j, in row chunks) and then tv100; both pair sets must agree.
      ``ratio`` = numpy seconds / tv100 seconds on the same subset (> 1: tv100 faster).
  (b) tv100 alone on all codes (``seconds``): every planted pair must be found
      (``recall``; the target is 1.0 in < 60 s on 2 cores). numpy's time for the full set
      is extrapolated from (a) by pair count (``numpy_full_s_extrapolated``).

  (c) a refresh (``--refresh``, default 0.05; 0 skips it): that share of new codes (random,
      a tenth of them near copies of old ones) is added to all codes, then tv100's
      incremental search (`incremental_hamming_pairs` with the pairs (b)'s codes left,
      searching only the new codes) runs against a search of every code. Both must give
      the same pairs; ``refresh.ratio`` = incremental seconds / full seconds (goal <= 0.10).
      ``refresh.cpu_ratio``: the same ratio of this process's CPU seconds.
      ``refresh.store_s``: what a refresh adds around the search, reading the last pairs
      (`tv100.tasks.clean.pairstore.read_pairs`) and writing the new ones, at this size.
      ``--refresh-only`` skips (a) and (b).

The last line printed is one JSON object.

    .venv/bin/python bench/neardup.py [--n 1000000] [--planted 10000] [--subset 100000]
        [--refresh 0.05] [--refresh-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import faiss
import numpy as np

from tv100.storage.root import DataRoot
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.pairs import (
    MIH_MIN,
    MULTIHASH_MAX_THRESHOLD,
    hamming_pairs,
    incremental_hamming_pairs,
)
from tv100.tasks.clean.pairstore import read_pairs, write_pairs

TARGET_S = 60.0
MAX_FLIP = 6


def make_codes(n: int, planted: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes uint64[n + planted], pair_a, pair_b)``: shuffled codes and the planted pairs.

    Each planted code copies a distinct random base code with 0..MAX_FLIP bits flipped;
    ``(pair_a[k], pair_b[k])`` are the positions of base and copy after the shuffle.
    """
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    src = rng.choice(n, planted, replace=False)
    flips = rng.integers(0, MAX_FLIP + 1, planted)
    masks = np.zeros(planted, np.uint64)
    for k in range(planted):
        for bit in rng.choice(64, int(flips[k]), replace=False):
            masks[k] |= np.uint64(1) << np.uint64(bit)
    codes = np.concatenate([base, base[src] ^ masks])
    perm = rng.permutation(len(codes))  # perm[new] = old
    where = np.empty_like(perm)
    where[perm] = np.arange(len(perm))  # where[old] = new
    return codes[perm], where[src], where[n + np.arange(planted)]


def index_name(count: int, threshold: int, flat_max: int) -> str:
    """The search `tv100.tasks.clean.pairs.hamming_pairs` picks on the CPU for `count` codes."""
    if count > MIH_MIN and threshold <= MULTIHASH_MAX_THRESHOLD:
        return "mih"
    if count > flat_max and threshold <= MULTIHASH_MAX_THRESHOLD:
        return "IndexBinaryMultiHash"
    return "IndexBinaryFlat"


def as_bytes(codes: np.ndarray) -> np.ndarray:
    """uint64 codes as the ``(n, 8)`` uint8 rows FAISS binary indexes take."""
    return np.ascontiguousarray(codes).view(np.uint8).reshape(len(codes), 8)


def numpy_pairs(codes: np.ndarray, threshold: int, chunk: int = 64) -> tuple[np.ndarray, ...]:
    """Brute force: popcount(a ^ b) for every pair i < j, ``chunk`` rows at a time."""
    x = np.ascontiguousarray(codes, dtype=np.uint64)
    n = len(x)
    out_i, out_j, out_d = [], [], []
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        d = np.bitwise_count(x[s:e, None] ^ x[None, s:])  # (rows, n - s): columns j >= s
        r, c = np.nonzero(d <= threshold)
        keep = c > r  # i < j only: drops i == j and the pairs among the block's own rows twice
        out_i.append(r[keep] + s)
        out_j.append(c[keep] + s)
        out_d.append(d[r[keep], c[keep]])
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def pair_keys(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    a, b = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    return np.unique(a * n + b)


def refresh(codes: np.ndarray, share: float, threshold: int, seed: int) -> dict[str, object]:
    """(c): `share` new codes added to `codes`; incremental vs full search, same pairs."""
    n_new = int(share * len(codes))
    planted = n_new // 10
    added, _, _ = make_codes(n_new - planted, planted, seed + 2)
    near = np.random.default_rng(seed + 3).choice(len(codes), planted // 2, replace=False)
    added[: len(near)] = codes[near] ^ np.uint64(0b101)  # copies of old codes, 2 bits apart
    after = np.concatenate([codes, added])
    _, previous = incremental_hamming_pairs(as_bytes(codes), threshold)
    t0, c0 = time.perf_counter(), time.process_time()
    full = hamming_pairs(as_bytes(after), threshold, use_gpu=False)
    full_s, full_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    got, pairs = incremental_hamming_pairs(as_bytes(after), threshold, previous, use_gpu=False)
    incremental_s, incremental_cpu = time.perf_counter() - t0, time.process_time() - c0
    same = all(np.array_equal(a, b) for a, b in zip(full, got, strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        root = DataRoot(tmp)
        write_pairs(root, {"phash": previous})
        t0 = time.perf_counter()
        stored = read_pairs(root).get("phash")
        wrote = write_pairs(root, {"phash": pairs})
        store_s = time.perf_counter() - t0
    same = same and stored is not None and np.array_equal(stored.values, previous.values)
    print(f"refresh +{n_new:,} codes: full {full_s:.1f} s, incremental {incremental_s:.1f} s, "
          f"same pairs: {same}; pair cache read + write {store_s:.2f} s", flush=True)
    return {
        "added": n_new,
        "full_s": round(full_s, 2),
        "incremental_s": round(incremental_s, 2),
        "ratio": round(incremental_s / full_s, 3),
        # CPU seconds of this process: less moved by other jobs than the short refresh's wall
        "cpu_ratio": round(incremental_cpu / max(full_cpu, 1e-9), 3),
        "same_pairs": same,
        "store_s": round(store_s, 3),
        "store_wrote": wrote,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000, help="random codes")
    p.add_argument("--planted", type=int, default=10_000, help="planted near duplicates")
    p.add_argument("--subset", type=int, default=100_000, help="codes for the numpy comparison")
    p.add_argument("--threshold", type=int, default=NearDupConfig.phash_threshold)
    p.add_argument("--flat-max", type=int, default=NearDupConfig.flat_max,
                   help="tv100's switch from IndexBinaryFlat to multi-hash (default: config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refresh", type=float, default=0.05,
                   help="share of new codes for the incremental search (0 skips it)")
    p.add_argument("--refresh-only", action="store_true", help="run (c) alone")
    args = p.parse_args()
    t = args.threshold

    t0 = time.perf_counter()
    codes, pa_, pb_ = make_codes(args.n, args.planted, args.seed)
    total = len(codes)
    print(f"{total:,} codes ({args.n:,} random + {args.planted:,} planted, 0..{MAX_FLIP} bits) "
          f"in {time.perf_counter() - t0:.1f} s; threshold {t} (FAISS radius {t + 1}); "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, "
          f"{os.cpu_count()} cores", flush=True)
    if args.refresh_only:
        print(json.dumps({"bench": "neardup", "n": total, "threshold": t,
                          "refresh": refresh(codes, args.refresh or 0.05, t, args.seed),
                          "cores": os.cpu_count(), "machine": platform.machine()}))
        return

    # (a) subset, side by side: numpy brute force, then tv100.
    m = min(args.subset, total)
    sub = np.sort(np.random.default_rng(args.seed + 1).choice(total, m, replace=False))
    x = codes[sub]
    t0 = time.perf_counter()
    ni, nj, _ = numpy_pairs(x, t)
    numpy_s = time.perf_counter() - t0
    sub_index = index_name(m, t, args.flat_max)
    t0 = time.perf_counter()
    ti, tj, _ = hamming_pairs(as_bytes(x), t, args.flat_max, use_gpu=False)
    tv_sub_s = time.perf_counter() - t0
    agree = bool(np.array_equal(pair_keys(ni, nj, m), pair_keys(ti, tj, m)))
    print(f"subset {m:,}: numpy {numpy_s:.2f} s ({len(ni):,} pairs), "
          f"tv100 {sub_index} {tv_sub_s:.2f} s ({len(ti):,} pairs), same pairs: {agree}",
          flush=True)

    # (b) all codes, tv100 alone.
    index_kind = index_name(total, t, args.flat_max)
    t0 = time.perf_counter()
    i, j, d = hamming_pairs(as_bytes(codes), t, args.flat_max, use_gpu=False)
    seconds = time.perf_counter() - t0
    found_keys = pair_keys(i, j, total)
    planted_keys = pair_keys(pa_, pb_, total)
    found = int(np.isin(planted_keys, found_keys, assume_unique=True).sum())
    expect_d = np.bitwise_count(codes[pa_] ^ codes[pb_])
    print(f"all {total:,}: tv100 {index_kind} {seconds:.1f} s, {len(i):,} pairs, planted found "
          f"{found:,}/{len(planted_keys):,} (planted distances {int(expect_d.min())}.."
          f"{int(expect_d.max())})", flush=True)

    pairs_sub = m * (m - 1) / 2
    pairs_all = total * (total - 1) / 2
    result = {
        "bench": "neardup",
        "n": total,
        "random": args.n,
        "planted": int(len(planted_keys)),
        "threshold": t,
        "radius": t + 1,
        "index": index_kind,
        "seconds": round(seconds, 2),
        "pairs": int(len(i)),
        "planted_found": found,
        "recall": round(found / max(len(planted_keys), 1), 6),
        "target_s": TARGET_S,
        "target_met": bool(seconds < TARGET_S and found == len(planted_keys)),
        "subset": m,
        "subset_index": sub_index,
        "tv100_subset_s": round(tv_sub_s, 3),
        "numpy_subset_s": round(numpy_s, 3),
        "subset_pairs_agree": agree,
        "ratio": round(numpy_s / tv_sub_s, 3),
        "numpy_full_s_extrapolated": round(numpy_s * pairs_all / pairs_sub, 1),
        "ratio_full_vs_numpy_extrapolated": round(numpy_s * pairs_all / pairs_sub / seconds, 3),
        "faiss_threads": faiss.omp_get_max_threads(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
    }
    if args.refresh > 0:
        result["refresh"] = refresh(codes, args.refresh, t, args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
