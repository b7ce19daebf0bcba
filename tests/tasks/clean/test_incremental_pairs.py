"""Incremental near-duplicate search: value pairs carried between runs give a cold run's result."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.tasks.clean.records import rec, table
from tv100.storage.root import DataRoot
from tv100.storage.tables import to_parquet_bytes
from tv100.tasks.clean import mihindex
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.groups import PairCache, find_duplicates
from tv100.tasks.clean.mihindex import MihIndex
from tv100.tasks.clean.pairs import (
    MIH_MIN,
    ValuePairs,
    _rows_by_value,
    _unique,
    code_values,
    cross_pairs,
    hamming_pairs,
    incremental_hamming_pairs,
    mih_cross_pairs,
)
from tv100.tasks.clean.pairstore import PAIRS_PATH, pairs_table, read_pairs, write_pairs
from tv100.tasks.clean.steps import find_root_duplicates


def _flips(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    """`n` masks of `bits` distinct random bits each."""
    cols = np.argsort(rng.random((n, 64)), axis=1)[:, :bits].astype(np.uint64)
    return np.bitwise_or.reduce(np.uint64(1) << cols, axis=1)


def _codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` codes as FAISS rows: random ones, near copies (1-12 bits off) and repeated values."""
    base = rng.integers(0, 2**64 - 1, n - n // 5, dtype=np.uint64, endpoint=True)
    near = base[rng.integers(0, len(base), n // 10)]
    near ^= np.concatenate([_flips(rng, 1, b) for b in rng.integers(1, 13, len(near))])
    same = base[rng.integers(0, len(base), n // 5 - n // 10)]  # repeated values
    x = np.concatenate([base, near, same])
    rng.shuffle(x)
    return np.ascontiguousarray(x.astype(">u8")).view(np.uint8).reshape(-1, 8)


def _assert_same(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def _assert_same_values(got: ValuePairs, want: ValuePairs) -> None:
    assert got.threshold == want.threshold
    for name in ("values", "a", "b", "distance"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


# Sizes and settings on both sides of the switches: FAISS flat, FAISS multi-hash, MIH.
SEARCHES = [
    pytest.param(3_000, {}, id="faiss-flat"),
    pytest.param(3_000, {"flat_max": 1_000}, id="faiss-multihash"),
    pytest.param(MIH_MIN + 2_000, {}, id="mih"),
]


@pytest.mark.parametrize("threshold", [10, 8])
@pytest.mark.parametrize(("n", "kwargs"), SEARCHES)
@pytest.mark.parametrize("scenario", ["none", "added", "removed", "same", "other_threshold"])
def test_equals_hamming_pairs(scenario: str, n: int, kwargs: dict, threshold: int) -> None:
    rng = np.random.default_rng([n, threshold, len(scenario)])
    codes = _codes(rng, n)
    want = hamming_pairs(codes, threshold, **kwargs)
    assert (want[2] == 0).any(), "repeated values give distance-0 pairs"
    previous = None
    if scenario == "added":  # 5% of the rows new
        previous = incremental_hamming_pairs(codes[: n * 95 // 100], threshold, **kwargs)[1]
    elif scenario == "removed":  # and some values of the last run gone
        gone = _codes(rng, n // 20)
        before = np.concatenate([codes[: n * 95 // 100], gone])
        previous = incremental_hamming_pairs(before, threshold, **kwargs)[1]
        assert len(np.setdiff1d(previous.values, code_values(codes)))
    elif scenario == "same":
        previous = incremental_hamming_pairs(codes[::-1], threshold, **kwargs)[1]
    elif scenario == "other_threshold":  # not reused: another threshold's pairs
        previous = incremental_hamming_pairs(codes, threshold + 1, **kwargs)[1]
    got, pairs = incremental_hamming_pairs(codes, threshold, previous, **kwargs)
    _assert_same(got, want)
    _assert_same_values(pairs, incremental_hamming_pairs(codes, threshold, **kwargs)[1])


def test_small_and_empty_inputs() -> None:
    for n in (0, 1, 2):
        codes = np.zeros((n, 8), np.uint8)
        got, pairs = incremental_hamming_pairs(codes, 10)
        _assert_same(got, hamming_pairs(codes, 10))
        again, _ = incremental_hamming_pairs(codes, 10, pairs)
        _assert_same(again, hamming_pairs(codes, 10))


def test_mih_cross_pairs_equals_faiss_range_search() -> None:
    rng = np.random.default_rng(5)
    values = np.unique(code_values(_codes(rng, 4_000)))
    queries = values[rng.integers(0, len(values), 300)]
    for t in (8, 10):
        _assert_same(mih_cross_pairs(queries, values, t), cross_pairs(queries, values, t))


def _clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` uint64 codes whose chunks take few values (as real pHash codes do): buckets of
    hundreds of codes, spanning many rows of a `MihIndex` table, and repeated codes."""
    parts = [rng.choice(np.array(v, np.uint64), n) << np.uint64(s)
             for v, s in (([0, 1, 3, 0xFF00], 0), ([0, 7], 16), (range(40), 32), ([5], 48))]
    x = np.bitwise_or.reduce(parts) ^ (_flips(rng, n, 1) * (rng.random(n) < 0.5))
    return x.astype(np.uint64)


def _brute_cross(queries: np.ndarray, codes: np.ndarray, t: int) -> tuple[np.ndarray, ...]:
    d = np.bitwise_count(queries[:, None] ^ codes[None, :])
    k, m = np.nonzero(d <= t)
    return k.astype(np.int64), m.astype(np.int64), d[k, m].astype(np.float64)


@pytest.mark.parametrize("threshold", [0, 2, 3, 8, 10, 12])
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_mih_index_equals_brute_force(monkeypatch, kind: str, threshold: int) -> None:
    """Every flip budget (-1 to 3), buckets of many rows, steps of a few rows and lookups."""
    rng = np.random.default_rng([threshold, len(kind)])
    if kind == "random":
        codes = code_values(_codes(rng, 3_000))
    else:
        codes = _clustered(rng, 3_000)
    queries = np.concatenate([codes[rng.integers(0, len(codes), 100)], _clustered(rng, 100),
                              code_values(_codes(rng, 100))])
    want = _brute_cross(queries, codes, threshold)
    assert len(want[0]) >= 100  # the first 100 queries are codes
    index = MihIndex(codes, threshold)
    if kind == "clustered":
        assert max(table.rows.max() for table in index.tables) > 10  # buckets of many rows
    _assert_same(index.query(queries), want)
    monkeypatch.setattr(mihindex, "_ROWS", 7)
    monkeypatch.setattr(mihindex, "_LOOKUPS", 50)
    _assert_same(MihIndex(codes, threshold).query(queries), want)
    _assert_same(MihIndex(codes, threshold).query(queries[:0]), _brute_cross(queries[:0], codes, 1))
    _assert_same(MihIndex(codes[:0], threshold).query(queries), _brute_cross(queries, codes[:0], 1))


@pytest.mark.parametrize("threshold", [10, 8])
@pytest.mark.parametrize("scenario", ["added", "removed", "same"])
def test_clustered_codes_equal_hamming_pairs(scenario: str, threshold: int) -> None:
    """Codes whose low chunk takes few values (real pHash codes cluster), above `MIH_MIN`;
    40 random high bits keep the pairs few."""
    rng = np.random.default_rng([threshold, len(scenario), 7])
    n = MIH_MIN + 2_000
    high = rng.integers(0, 1 << 40, n, dtype=np.uint64) << np.uint64(24)
    x = (_clustered(rng, n) & np.uint64((1 << 24) - 1)) | high
    x[: n // 20] = x[n // 20 : n // 10] ^ _flips(rng, n // 20, 3)  # and near copies
    codes = np.ascontiguousarray(x.astype(">u8")).view(np.uint8).reshape(-1, 8)
    before = {
        "added": codes[: n * 95 // 100],
        "removed": np.concatenate([codes[: n * 95 // 100], codes[::50] ^ np.uint8(0x10)]),
        "same": codes[::-1],
    }[scenario]
    previous = incremental_hamming_pairs(before, threshold)[1]
    got, pairs = incremental_hamming_pairs(codes, threshold, previous)
    _assert_same(got, hamming_pairs(codes, threshold))
    _assert_same_values(pairs, incremental_hamming_pairs(codes, threshold)[1])


@pytest.mark.parametrize("n", [0, 1, 2, 50, 5_000])
def test_unique_and_rows_by_value_equal_numpy(n: int) -> None:
    x = np.random.default_rng(n).integers(0, max(n // 3, 1), n).astype(np.uint64)
    values, inverse = _unique(x)
    want_values, want_inverse = np.unique(x, return_inverse=True)
    _assert_same((values, inverse), (want_values, want_inverse.reshape(-1)))
    count = np.bincount(inverse, minlength=len(values))
    order = _rows_by_value(inverse, count, np.cumsum(count) - count)
    _assert_same((order,), (np.argsort(inverse, kind="stable"),))


def _hashes_table(rng: np.random.Generator, n: int, prefix: str) -> list[dict]:
    """Rows with pHash near pairs and dHash grey-zone pairs (pHash 11-20 off, dHash close)."""
    p = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    d = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = n // 4
    src = rng.integers(0, n, 2 * k)
    p[:k] = p[src[:k]] ^ _flips(rng, k, 6)  # pHash copies
    p[k : 2 * k] = p[src[k:]] ^ _flips(rng, k, 14)  # grey zone ...
    d[k : 2 * k] = d[src[k:]] ^ _flips(rng, k, 3)  # ... that dHash confirms
    return [
        rec(f"{prefix}{r:05d}", f"{int(p[r]):016x}", dhash=f"{int(d[r]):016x}",
            series=f"s{r % 7}", w=100 + r % 13, rank=r % 5)
        for r in range(n)
    ]


def _sorted(rows: list[dict]) -> pa.Table:
    return table(sorted(rows, key=lambda r: r["image_id"]))


@pytest.mark.parametrize("dhash", [8, None], ids=["dhash", "phash-only"])
def test_find_duplicates_with_cache_equals_cold(dhash: int | None) -> None:
    cfg = NearDupConfig(dhash_threshold=dhash)
    rng = np.random.default_rng(11)
    old = _hashes_table(rng, 1_200, "m")
    # New rows that sort first and take over existing pHash codes with other dHash codes
    # (the dHash search then runs over other rows), plus new images of their own.
    takers = [
        {**r, "image_id": "a" + r["image_id"], "sha256": "new-" + r["sha256"],
         "dhash": old[(i * 37) % len(old)]["dhash"], "series_id": "s0"}
        for i, r in enumerate(old[::40])
    ]
    new = old[50:] + takers + _hashes_table(rng, 60, "z")  # and 50 rows gone
    cache: PairCache = {}
    first = find_duplicates(_sorted(old), cfg, cache=cache)
    assert first.equals(find_duplicates(_sorted(old), cfg))
    assert set(cache) == ({"phash", "dhash"} if dhash else {"phash"})
    warm = find_duplicates(_sorted(new), cfg, cache=cache)
    cold_cache: PairCache = {}
    cold = find_duplicates(_sorted(new), cfg, cache=cold_cache)
    assert cold.equals(find_duplicates(_sorted(new), cfg))
    assert to_parquet_bytes(warm) == to_parquet_bytes(cold)
    assert set(warm.column("kind").to_pylist()) >= ({"phash", "dhash"} if dhash else {"phash"})
    assert pairs_table(cache).equals(pairs_table(cold_cache))


def test_pair_cache_round_trip_and_no_rewrite(tmp_path) -> None:
    root = DataRoot(str(tmp_path))
    rng = np.random.default_rng(3)
    candidates = _sorted(_hashes_table(rng, 400, "m"))
    cfg = NearDupConfig()
    assert read_pairs(root) == {}  # none yet: a full search
    dups = find_root_duplicates(candidates, cfg, root)
    path = tmp_path / PAIRS_PATH
    data, stamp = path.read_bytes(), path.stat().st_mtime_ns
    cache = read_pairs(root)
    assert set(cache) == {"phash", "dhash"}
    assert pairs_table(cache).equals(pairs_table(cache))
    assert to_parquet_bytes(pairs_table(cache)) == data
    assert not write_pairs(root, cache)
    assert find_root_duplicates(candidates, cfg, root).equals(dups)
    assert path.read_bytes() == data and path.stat().st_mtime_ns == stamp  # nothing rewritten
    assert find_root_duplicates(candidates, cfg).equals(dups)
    # Another threshold reuses nothing and gives its own cold table.
    other = NearDupConfig(phash_threshold=8, dhash_threshold=6)
    assert find_root_duplicates(candidates, other, root).equals(find_duplicates(candidates, other))
    assert {p.threshold for p in read_pairs(root).values()} == {8, 6}


@pytest.mark.parametrize(
    "damage",
    [b"", b"not parquet at all", "truncated", "wrong distance", "other format"],
)
def test_damaged_cache_means_full_search(tmp_path, damage) -> None:
    root = DataRoot(str(tmp_path))
    candidates = _sorted(_hashes_table(np.random.default_rng(4), 300, "m"))
    cfg = NearDupConfig()
    want = find_root_duplicates(candidates, cfg, root)
    path = tmp_path / PAIRS_PATH
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage in ("wrong distance", "other format"):
        t = pairs_table(read_pairs(root))
        if damage == "wrong distance":
            d = t.column("distance").to_pylist()
            k = next(i for i, v in enumerate(d) if v is not None)
            d[k] = (d[k] + 1) % 3
            t = t.set_column(4, "distance", pa.array(d, pa.uint8()))
        else:
            t = t.replace_schema_metadata({b"tv100.neardup_pairs_format": b"0"})
        path.write_bytes(to_parquet_bytes(t))
    else:
        path.write_bytes(damage)
    assert read_pairs(root) == {}
    assert find_root_duplicates(candidates, cfg, root).equals(want)
    assert path.read_bytes() == good  # repaired by the run
