"""tasks/clean/pairs.py: FAISS range and k-NN search, multi-index hashing, the GPU branch."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from PIL import ImageOps

from tests.tasks.clean.records import (
    ZERO,
    by_id,
    fake_embeddings,
    flip,
    hashed,
    jpeg,
    rec,
    table,
)
from tv100.tasks.clean import pairs
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.groups import find_duplicates
from tv100.tasks.clean.hashing import codes_array
from tv100.tasks.clean.pairs import (
    binary_index,
    gpu_available,
    hamming_pairs,
    knn_range_pairs,
    mih_budgets,
    mih_pairs,
    range_pairs,
)


@pytest.mark.parametrize("flat_max", [50_000, 1], ids=["IndexBinaryFlat", "IndexBinaryMultiHash"])
def test_threshold_is_inclusive_although_faiss_radius_is_strict(flat_max):
    t = 10
    codes = codes_array(
        [
            ZERO,
            flip(ZERO, *range(0, 9)),  # distance 9
            flip(ZERO, *range(16, 26)),  # distance 10 == t
            flip(ZERO, *range(32, 43)),  # distance 11
        ]
    )
    index = binary_index(codes, t, flat_max)
    assert type(index).__name__ == ("IndexBinaryFlat" if flat_max > 1 else "IndexBinaryMultiHash")
    lims, dist, _ = index.range_search(codes[:1], t)
    assert 10 not in dist[lims[0] : lims[1]], "FAISS itself excludes distance == radius"
    i, j, d = hamming_pairs(codes, t, flat_max)
    assert sorted(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == [
        (0, 1, 9.0),
        (0, 2, 10.0),
    ]
    dups = by_id(
        find_duplicates(
            table(
                [
                    rec(f"r{k}", h, w=100 - k)
                    for k, h in enumerate(
                        [ZERO, flip(ZERO, *range(16, 26)), flip(ZERO, *range(32, 43))]
                    )
                ]
            ),
            NearDupConfig(phash_threshold=t, dhash_threshold=None, flat_max=flat_max),
        )
    )
    assert set(dups) == {"r1"} and dups["r1"]["distance"] == 10.0


def as_set(pairs) -> set[tuple[int, int, float]]:
    return set(zip(*(a.tolist() for a in pairs), strict=True))


def _clustered_codes(n_base: int = 300, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n_base, 8), dtype=np.uint8)
    out = [base]
    for _ in range(3):
        bits = np.unpackbits(base, axis=1)
        for row in bits:
            row[rng.choice(64, int(rng.integers(0, 17)), replace=False)] ^= 1
        out.append(np.packbits(bits, axis=1))
    return np.concatenate(out)


@pytest.mark.parametrize("t", [0, 3, 8, 10, 15], ids=lambda t: f"t={t}")
def test_multihash_is_exact_not_approximate(t):
    codes = _clustered_codes()
    flat = hamming_pairs(codes, t, flat_max=10**9)
    multi = hamming_pairs(codes, t, flat_max=1)
    assert as_set(flat) == as_set(multi)
    if t >= 3:
        assert len(flat[0]) > 0, "the data must contain pairs for the comparison to mean much"


def _brute_pairs(codes: np.ndarray, t: int) -> set[tuple[int, int, float]]:
    x = np.ascontiguousarray(codes).view(np.uint64).reshape(-1)
    d = np.bitwise_count(x[:, None] ^ x[None, :])
    i, j = np.nonzero(np.triu(d <= t, k=1))
    return set(zip(i.tolist(), j.tolist(), d[i, j].astype(float).tolist(), strict=True))


def _mih_codes() -> np.ndarray:
    """~3,000 codes: 1,500 uniform, the clustered set, and a block of exact copies."""
    rng = np.random.default_rng(7)
    uniform = rng.integers(0, 256, (1500, 8), dtype=np.uint8)
    clustered = _clustered_codes()
    return np.concatenate([uniform, clustered, np.repeat(clustered[:1], 20, axis=0)])


@pytest.mark.parametrize("t", [0, 1, 5, 10, 12], ids=lambda t: f"t={t}")
def test_mih_pairs_equal_brute_force(t):
    codes = _mih_codes()
    budgets = mih_budgets(t)
    assert sum(b + 1 for b in budgets) == t + 1 and len(budgets) == 4
    got = mih_pairs(codes, t)
    assert as_set(got) == _brute_pairs(codes, t)
    assert len(got[0]) == len(as_set(got)), "no pair twice"
    assert np.all(got[0] < got[1])
    assert np.array_equal(np.lexsort((got[1], got[0])), np.arange(len(got[0]))), "(i, j) order"
    if t >= 5:
        assert len(got[0]) > 100, "the data must contain pairs for the comparison to mean much"


@pytest.mark.parametrize("t", [0, 10, 15], ids=lambda t: f"t={t}")
def test_hamming_pairs_mih_and_faiss_paths_give_identical_output(t):
    codes = _clustered_codes()
    faiss_out = hamming_pairs(codes, t, use_gpu=False, mih_min=10**9)
    mih_out = hamming_pairs(codes, t, use_gpu=False, mih_min=1)
    multi_out = hamming_pairs(codes, t, flat_max=1, use_gpu=False, mih_min=10**9)
    for a, b, c in zip(faiss_out, mih_out, multi_out, strict=True):
        assert a.dtype == b.dtype == c.dtype
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_knn_path_used_on_gpu_finds_every_pair_even_in_big_clusters():
    codes = _clustered_codes(50)
    codes = np.concatenate([codes, np.repeat(codes[:1], 12, axis=0)])  # a 15+ cluster
    cpu = binary_index(codes, 10)
    expected = range_pairs(cpu, codes, 11)
    got = knn_range_pairs(cpu, codes, 4, lambda d: d <= 10, cpu, 11)
    assert as_set(got) == as_set(expected)
    assert len(got[0]) == len(expected[0]), "no pair twice"


def test_gpu_branch_gives_the_cpu_result(monkeypatch, originals):
    """The GPU wiring (k-NN + CPU fallback), with CPU indexes standing in for GPU ones."""
    rows, base_of = [], {}
    for i, img in enumerate(originals[:6]):
        flipped = jpeg(ImageOps.mirror(img))  # found by the clip signal only
        rows += [hashed(f"o{i}", jpeg(img)), hashed(f"c{i}", flipped, rank=2)]
        base_of[f"o{i}"] = base_of[f"c{i}"] = i
    # 300 distinct codes within 2 bits of each other's centre: more matches than k=256.
    near = [flip(ZERO, a, b) for a in range(64) for b in range(a + 1, 64)][:300]
    rows += [rec(f"blank{i}", code, w=10 + i) for i, code in enumerate(near)]
    emb = fake_embeddings({**base_of, **{f"blank{i}": 99 for i in range(300)}})
    meta = table(rows)
    expected = find_duplicates(meta, embeddings=emb)

    monkeypatch.setattr(pairs, "gpu_available", lambda use_gpu=None: True)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_binary_cpu_to_gpu", lambda r, d, i: i, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda r, d, i: i, raising=False)
    assert find_duplicates(meta, embeddings=emb).equals(expected)
    assert expected.num_rows == 6 + 299
    assert by_id(expected)["c0"]["kind"] == "clip"


def test_gpu_is_never_required():
    assert gpu_available(False) is False
    if not hasattr(faiss, "StandardGpuResources"):
        assert gpu_available(None) is False
        assert gpu_available(True) is False  # warns, falls back
