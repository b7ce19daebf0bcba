"""tasks/neardup.py: FAISS search, union-find groups, representatives, scopes, leakage, dedupe.

Property style: a resized or re-encoded copy must fall inside the threshold and distinct
images outside it.
"""

from __future__ import annotations

import io
import os

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageEnhance, ImageOps

from tests.test_hashing import encode, make_photo
from tv100.tasks.clean.hashing import codes_array, hamming, hash_bytes
from tv100.tasks.clean.neardup import (
    DEDUPE_FOLDER,
    DUPLICATES,
    NearDupConfig,
    UnionFind,
    apply_leakage,
    binary_index,
    dedupe_folder,
    find_duplicates,
    gpu_available,
    hamming_pairs,
    kept_ids,
    knn_range_pairs,
    leakage_check,
    mih_budgets,
    mih_pairs,
    range_pairs,
    sweep_thresholds,
)

T = NearDupConfig().phash_threshold
ZERO = "0" * 16


def flip(hex_hash: str, *bits: int) -> str:
    """`hex_hash` with the given bit positions (0 = least significant) inverted."""
    value = int(hex_hash, 16)
    for b in bits:
        value ^= 1 << b
    return f"{value:016x}"


def rec(image_id, phash, *, dhash=None, sha=None, series="s1", w=100, h=100, rank=1, split=None):
    return {
        "image_id": image_id,
        "series_id": series,
        "sha256": sha or f"sha-{image_id}",
        "phash": phash,
        "dhash": dhash,
        "width": w,
        "height": h,
        "rank": rank,
        "split": split,
    }


def table(rows) -> pa.Table:
    return pa.Table.from_pylist(rows)


def by_id(dups: pa.Table) -> dict[str, dict]:
    assert dups.schema.equals(DUPLICATES)
    return {r["image_id"]: r for r in dups.to_pylist()}


# ----------------------------------------------------------------- images and transforms


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    return encode(img.convert("RGB"), quality=quality)


TRANSFORMS = {
    "resize-half": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2))),
    "jpeg-q30": lambda im: _jpeg(im, 30),
    "grayscale": lambda im: _jpeg(im.convert("L")),
    "brightness+15%": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.15)),
    "brightness-15%": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(0.85)),
    "png-reencode": lambda im: encode(im, "PNG"),
}
N_BASE = 12


@pytest.fixture(scope="module")
def originals() -> list[Image.Image]:
    return [make_photo(7000 + i) for i in range(N_BASE)]


def hashed(image_id: str, data: bytes, series: str = "s1", rank: int = 1) -> dict:
    row = hash_bytes(data)
    assert row["status"] == "ok"
    return {"image_id": image_id, "series_id": series, "rank": rank, **row}


@pytest.mark.parametrize("name", list(TRANSFORMS), ids=list(TRANSFORMS))
def test_copy_falls_inside_threshold_and_is_grouped_with_its_original(originals, name):
    rows, pairs = [], []
    for i, img in enumerate(originals):
        orig = hashed(f"o{i}", _jpeg(img))
        copy = hashed(f"c{i}", TRANSFORMS[name](img), rank=2)
        assert hamming(orig["phash"], copy["phash"]) <= T, f"{name} of image {i}"
        rows += [orig, copy]
        pairs.append((f"o{i}", f"c{i}"))
    dups = by_id(find_duplicates(table(rows)))
    assert len(dups) == N_BASE, "exactly one of each pair is dropped, nothing else"
    for o, c in pairs:
        dropped = c if c in dups else o
        other = o if dropped == c else c
        assert dups[dropped]["kept_id"] == other
        assert dups[dropped]["kind"] == "phash" and dups[dropped]["distance"] <= T
        assert dups[dropped]["scope"] == "within_series"
    if name == "resize-half":  # larger resolution wins
        assert set(dups) == {c for _, c in pairs}


def test_distinct_images_are_never_grouped():
    rows = [hashed(f"d{i}", _jpeg(make_photo(9000 + i))) for i in range(40)]
    phashes = [r["phash"] for r in rows]
    nearest = min(hamming(a, b) for i, a in enumerate(phashes) for b in phashes[i + 1 :])
    assert nearest > T, "generator made two distinct images look alike"
    assert find_duplicates(table(rows)).num_rows == 0


def _fake_embeddings(ids_by_base: dict[str, int], dim: int = 64, seed: int = 0):
    """Per original a random direction; a copy is its original's direction plus noise."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((max(ids_by_base.values()) + 1, dim))
    ids = list(ids_by_base)
    vecs = np.stack([base[ids_by_base[i]] + 0.05 * rng.standard_normal(dim) for i in ids])
    return ids, vecs.astype(np.float32)


def _crop10(im: Image.Image) -> bytes:
    dx, dy = im.width // 20, im.height // 20  # 5% off each side = 10% per dimension
    return _jpeg(im.crop((dx, dy, im.width - dx, im.height - dy)))


@pytest.mark.parametrize(
    "name, make, hash_catch_all",
    [
        ("crop-10%", _crop10, False),
        ("horizontal-flip", lambda im: _jpeg(ImageOps.mirror(im)), False),
    ],
    ids=["crop-10%", "horizontal-flip"],
)
def test_hashes_miss_some_transforms_that_the_clip_signal_catches(
    originals, name, make, hash_catch_all, record_property
):
    cfg = NearDupConfig()
    rows, base_of = [], {}
    for i, img in enumerate(originals):
        rows += [hashed(f"o{i}", _jpeg(img)), hashed(f"c{i}", make(img), rank=2)]
        base_of[f"o{i}"] = base_of[f"c{i}"] = i
    meta = table(rows)
    hashes_only = by_id(find_duplicates(meta, cfg))
    h = {r["image_id"]: r for r in rows}
    caught = 0
    for i in range(N_BASE):
        dp = hamming(h[f"o{i}"]["phash"], h[f"c{i}"]["phash"])
        dd = hamming(h[f"o{i}"]["dhash"], h[f"c{i}"]["dhash"])
        rule = dp <= cfg.phash_threshold or (
            dp <= cfg.dhash_phash_max and dd <= (cfg.dhash_threshold or 0)
        )
        found = f"c{i}" in hashes_only or f"o{i}" in hashes_only
        assert found == rule, f"{name} {i}: pHash {dp} dHash {dd}"
        caught += found
    record_property(f"{name} caught by pHash/dHash at defaults", f"{caught}/{N_BASE}")
    if name == "horizontal-flip":
        assert caught == 0, "pHash is not flip-invariant; a flip is a clip-signal case"
    assert (caught == N_BASE) is hash_catch_all

    with_clip = by_id(find_duplicates(meta, cfg, embeddings=_fake_embeddings(base_of)))
    assert len(with_clip) == N_BASE
    for i in range(N_BASE):
        dropped = with_clip.get(f"c{i}") or with_clip[f"o{i}"]
        assert dropped["kind"] in ("phash", "dhash", "clip")
        if f"c{i}" not in hashes_only and f"o{i}" not in hashes_only:
            assert dropped["kind"] == "clip" and 0.0 <= dropped["distance"] < 0.05


def test_dhash_only_confirms_pairs_in_the_phash_grey_zone():
    grey = flip(ZERO, *range(14))  # pHash 14: above t=10, within dhash_phash_max=20
    far = flip(ZERO, *range(22))  # pHash 22: beyond the grey zone
    d0, d6 = ZERO, flip(ZERO, *range(6))
    rows = [
        rec("a", ZERO, dhash=d0, w=200),
        rec("b", grey, dhash=d6),
        rec("x", flip(ZERO, *range(40, 64)), dhash="f" * 16, w=200),
        rec("y", flip(flip(ZERO, *range(40, 64)), *range(22)), dhash=flip("f" * 16, 1, 2, 3)),
    ]
    dups = by_id(find_duplicates(table(rows)))
    assert set(dups) == {"b"}
    assert dups["b"]["kind"] == "dhash" and dups["b"]["distance"] == 6.0
    assert hamming(ZERO, far) == 22
    off = NearDupConfig(dhash_threshold=None)
    assert find_duplicates(table(rows), off).num_rows == 0


# ----------------------------------------------------------------- FAISS search


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
    import tv100.tasks.clean.neardup as nd

    rows, base_of = [], {}
    for i, img in enumerate(originals[:6]):
        flipped = _jpeg(ImageOps.mirror(img))  # found by the clip signal only
        rows += [hashed(f"o{i}", _jpeg(img)), hashed(f"c{i}", flipped, rank=2)]
        base_of[f"o{i}"] = base_of[f"c{i}"] = i
    # 300 distinct codes within 2 bits of each other's centre: more matches than k=256.
    near = [flip(ZERO, a, b) for a in range(64) for b in range(a + 1, 64)][:300]
    rows += [rec(f"blank{i}", code, w=10 + i) for i, code in enumerate(near)]
    emb = _fake_embeddings({**base_of, **{f"blank{i}": 99 for i in range(300)}})
    meta = table(rows)
    expected = find_duplicates(meta, embeddings=emb)

    monkeypatch.setattr(nd, "gpu_available", lambda use_gpu=None: True)
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


# ----------------------------------------------------------------- groups


def test_union_find_groups_transitively():
    uf = UnionFind(6)
    uf.union(0, 1)
    uf.union(4, 5)
    uf.union(1, 2)
    assert uf.groups() == [[0, 1, 2], [4, 5]]
    assert uf.find(2) == uf.find(0) != uf.find(3)


def test_chain_is_one_group_and_far_member_records_its_real_neighbour():
    a, b = ZERO, flip(ZERO, *range(6))
    c = flip(b, *range(16, 22))  # 6 from b, 12 from a
    rows = [rec("a", a, w=300), rec("b", b, w=200), rec("c", c, w=100)]
    dups = by_id(find_duplicates(table(rows), NearDupConfig(dhash_threshold=None)))
    assert set(dups) == {"b", "c"}
    assert all(d["kept_id"] == "a" and d["group_id"] == "a" for d in dups.values())
    assert dups["b"]["matched_id"] == "a" and dups["b"]["distance"] == 6.0
    assert dups["c"]["matched_id"] == "b" and dups["c"]["distance"] == 6.0


@pytest.mark.parametrize(
    "members, kept",
    [
        ([("x", 100, 100, 1), ("y", 200, 100, 5)], "y"),
        ([("x", 100, 100, 3), ("y", 100, 100, 2)], "y"),
        ([("y", 100, 100, 1), ("x", 100, 100, 1)], "x"),
        ([("x", 100, 100, None), ("y", 100, 100, 9)], "y"),
        ([("x", None, None, 1), ("y", 10, 10, 2)], "y"),
    ],
    ids=[
        "largest-resolution",
        "then-best-rank",
        "then-image-id",
        "missing-rank-is-worst",
        "missing-size-is-smallest",
    ],
)
def test_representative_choice(members, kept):
    rows = [
        rec(i, flip(ZERO, k), sha="same", w=w, h=h, rank=r)
        for k, (i, w, h, r) in enumerate(members)
    ]
    dups = find_duplicates(table(rows))
    assert kept_ids(table(rows), dups) == [kept]
    assert by_id(dups)[({"x", "y"} - {kept}).pop()]["kind"] == "exact"


def test_many_exact_copies_are_one_index_entry():
    rows = [rec(f"copy{i:03d}", ZERO, sha="blank-placeholder", w=50) for i in range(400)]
    rows.append(rec("big", flip(ZERO, 1, 2), w=500))
    dups = by_id(find_duplicates(table(rows)))
    assert len(dups) == 400
    assert {d["kept_id"] for d in dups.values()} == {"big"}
    assert {d["kind"] for d in dups.values()} == {"phash"}


def test_cross_series_groups_are_dropped_from_every_series():
    rows = [
        rec("a1", ZERO, series="s1", w=300),
        rec("a2", flip(ZERO, 1), series="s2", w=200),
        rec("a3", flip(ZERO, 2), series="s1", w=100),
        rec("b1", flip(ZERO, *range(32, 64)), series="s1", w=300),
        rec("b2", flip(ZERO, *range(32, 64), 0), series="s1", w=100),
    ]
    dups = by_id(find_duplicates(table(rows)))
    assert set(dups) == {"a1", "a2", "a3", "b2"}
    for i in ("a1", "a2", "a3"):
        assert dups[i]["scope"] == "cross_series"
        assert dups[i]["kept_id"] is None and dups[i]["group_id"] == "a1"
    assert dups["a1"]["matched_id"] in ("a2", "a3"), "the representative names a neighbour"
    assert dups["b2"]["scope"] == "within_series" and dups["b2"]["kept_id"] == "b1"

    keep = by_id(find_duplicates(table(rows), NearDupConfig(drop_cross_series=False)))
    assert set(keep) == {"a2", "a3", "b2"}
    assert keep["a2"]["kept_id"] == "a1" and keep["a2"]["scope"] == "cross_series"


# ----------------------------------------------------------------- leakage


def _split_rows():
    a = ZERO
    b = flip(a, *range(8))  # 8 from a
    c = flip(b, *range(16, 24))  # 8 from b, 16 from a
    return [
        rec("train-a", a, split="train"),
        rec("test-b", b, split="test"),
        rec("test-c", c, split="test"),
        rec("test-d", flip(ZERO, *range(32, 64)), split="test"),
        rec("val-e", a, sha="sha-train-a", split="val"),  # an exact copy in val
    ]


def test_leakage_moves_every_connected_held_out_image_to_train():
    rows = _split_rows()
    moves = by_id(leakage_check(table(rows), NearDupConfig(dhash_threshold=None)))
    assert set(moves) == {"test-b", "test-c", "val-e"}
    assert moves["test-b"]["kept_id"] == "train-a" and moves["test-b"]["kind"] == "phash"
    assert moves["test-c"]["kept_id"] == "test-b", "c leaks through b once b is train"
    assert moves["val-e"]["kind"] == "exact"
    assert {m["scope"] for m in moves.values()} == {"cross_split"}
    assert {m["action"] for m in moves.values()} == {"move_to_train"}
    after = apply_leakage(table(rows), leakage_check(table(rows)))
    assert after.column("split").to_pylist() == ["train", "train", "train", "test", "train"]
    assert leakage_check(after).num_rows == 0, "after the moves nothing leaks"


def test_leakage_drop_removes_only_direct_matches():
    rows = _split_rows()
    cfg = NearDupConfig(leakage_action="drop", dhash_threshold=None)
    drops = by_id(leakage_check(table(rows), cfg))
    assert set(drops) == {"test-b", "val-e"}
    assert {d["action"] for d in drops.values()} == {"drop"}
    after = apply_leakage(table(rows), leakage_check(table(rows), cfg))
    assert after.column("image_id").to_pylist() == ["train-a", "test-c", "test-d"]
    assert leakage_check(after, cfg).num_rows == 0


def test_leakage_needs_a_split_column():
    with pytest.raises(ValueError, match="'split'"):
        leakage_check(table([rec("a", ZERO)]).drop_columns(["split"]))


def test_group_spanning_splits_has_scope_cross_split():
    rows = [rec("a", ZERO, split="train", w=200), rec("b", flip(ZERO, 3), split="test")]
    assert by_id(find_duplicates(table(rows)))["b"]["scope"] == "cross_split"


# ----------------------------------------------------------------- inputs and config


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"phash_threshold": 33}, "phash_threshold"),
        ({"phash_threshold": -1}, "phash_threshold"),
        ({"dhash_threshold": 40}, "dhash_threshold"),
        ({"dhash_phash_max": 5}, "dhash_phash_max"),
        ({"clip_threshold": 1.0}, "clip_threshold"),
        ({"flat_max": 0}, "flat_max"),
        ({"leakage_action": "ignore"}, "leakage_action"),
    ],
    ids=[
        "phash-33",
        "phash-negative",
        "dhash-40",
        "grey-zone-below-t",
        "clip-1",
        "flat-0",
        "unknown-action",
    ],
)
def test_config_rejects_out_of_range(kwargs, field):
    with pytest.raises(ValueError, match=f"NearDupConfig.{field}=.*expected"):
        NearDupConfig(**kwargs)


@pytest.mark.parametrize(
    "rows, match",
    [
        ([{"image_id": "a", "phash": ZERO}], "sha256"),
        ([rec("a", ZERO), rec("a", ZERO)], "'a' twice"),
        ([rec("a", "abc")], "16 hex digits"),
    ],
    ids=["missing-column", "duplicate-id", "bad-hex"],
)
def test_bad_input_is_named(rows, match):
    with pytest.raises(ValueError, match=match):
        find_duplicates(table(rows))


def test_embeddings_must_match_their_ids():
    with pytest.raises(ValueError, match="expected equal"):
        find_duplicates(table([rec("a", ZERO)]), embeddings=(["a", "b"], np.ones((1, 4))))


def test_sweep_thresholds_counts_pairs_over_groups():
    o1, o2, o3 = ZERO, flip(ZERO, *range(20, 44)), flip(ZERO, *range(40, 64))
    rows = [
        rec("o1", o1),
        rec("o1c", flip(o1, *range(4))),  # 4
        rec("o2", o2),
        rec("o2c", flip(o2, *range(0, 9))),  # 9
        rec("o3", o3),
        rec("o3c", flip(o3, *range(0, 15))),  # 15
        rec("x", flip(o1, *range(4, 16))),  # 12 from o1, a false match
        rec("e", ZERO, sha="exact"),
        rec("ec", ZERO, sha="exact"),
    ]
    truth = [("o1", "o1c"), ("o2", "o2c"), ("o3c", "o3"), ("e", "ec"), ("o1", "not-there")]
    got = {r["threshold"]: r for r in sweep_thresholds(table(rows), truth, [0, 4, 9, 12, 15])}
    # e/ec share o1's pHash, so at any threshold they sit in o1's group: the sweep is honest
    # about that: e-o1 and e-o1c count as false pairs.
    assert got[0]["true_pairs"] == 4
    assert (got[0]["tp"], got[0]["predicted_pairs"]) == (1, 3)  # {o1, e, ec}
    assert (got[4]["tp"], got[4]["predicted_pairs"]) == (2, 6)  # {o1, o1c, e, ec}
    assert (got[9]["tp"], got[9]["predicted_pairs"]) == (3, 7)
    assert (got[12]["tp"], got[12]["predicted_pairs"]) == (3, 11)  # x joins o1's group
    assert got[15]["recall"] == 1.0 and got[15]["fn"] == 0
    assert got[15]["precision"] == pytest.approx(4 / 12)
    with pytest.raises(ValueError, match="0..32"):
        sweep_thresholds(table(rows), truth, [40])


# ----------------------------------------------------------------- dedupe_folder


def test_dedupe_folder_groups_copies_and_lists_unreadable_files(tmp_path):
    top = tmp_path / "photos"
    (top / "a").mkdir(parents=True)
    (top / "b").mkdir()
    orig = _jpeg(make_photo(31), 92)
    (top / "a" / "orig1.jpg").write_bytes(orig)
    (top / "a" / "orig1_copy.jpg").write_bytes(orig)
    (top / "b" / "orig1_small.png").write_bytes(
        encode(Image.open(io.BytesIO(orig)).resize((320, 240)), "PNG")
    )
    (top / "orig2.jpg").write_bytes(_jpeg(make_photo(32)))
    (top / "orig3.webp").write_bytes(encode(make_photo(33), "WEBP"))
    (top / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF broken")
    (top / "notes.txt").write_text("not an image")
    (top / ".hidden.jpg").write_bytes(_jpeg(make_photo(32)))  # would pair with orig2
    out = tmp_path / "out" / "dedupe.parquet"

    results = list(dedupe_folder(top, threshold=10, out=out, workers=2))
    unreadable = [r for r in results if "unreadable" in r]
    groups = [r for r in results if "group" in r]
    assert [u["unreadable"] for u in unreadable] == [os.path.join(top, "corrupt.jpg")]
    assert unreadable[0]["reason"]
    assert len(groups) == 1
    g = groups[0]
    assert g["kept"] == os.path.join(top, "a", "orig1.jpg")
    assert {d["path"]: d["kind"] for d in g["duplicates"]} == {
        os.path.join(top, "a", "orig1_copy.jpg"): "exact",
        os.path.join(top, "b", "orig1_small.png"): "phash",
    }
    assert g["kind"] == "exact,phash" and 0 <= g["distance"] <= 10

    written = pq.read_table(out)
    assert written.schema.equals(DEDUPE_FOLDER)
    assert written.num_rows == 6, "five images and the corrupt file; no txt, no hidden file"
    rows = {os.path.basename(r["path"]): r for r in written.to_pylist()}
    assert rows["orig1.jpg"]["kept"] is True and rows["orig1_copy.jpg"]["kept"] is False
    assert rows["orig2.jpg"]["group"] is None
    assert rows["corrupt.jpg"]["status"] == "decode_error"
    assert os.listdir(out.parent) == ["dedupe.parquet"], "no temp file left behind"


def test_dedupe_folder_rejects_bad_arguments(tmp_path):
    with pytest.raises(NotADirectoryError):
        dedupe_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match=".parquet"):
        dedupe_folder(tmp_path, out=tmp_path / "x.csv")
    with pytest.raises(ValueError, match="phash_threshold"):
        dedupe_folder(tmp_path, threshold=40)
