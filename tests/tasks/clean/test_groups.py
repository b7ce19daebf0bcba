"""tasks/clean/groups.py: signals, union-find groups, representatives, scopes, bad input.

Property style: a resized or re-encoded copy must fall inside the threshold and distinct
images outside it.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from tests.tasks.clean.records import (
    N_BASE,
    ZERO,
    T,
    by_id,
    fake_embeddings,
    flip,
    hashed,
    jpeg,
    rec,
    table,
)
from tv100.sandbox.imagegen import encode, make_photo
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.groups import UnionFind, find_duplicates, kept_ids
from tv100.tasks.clean.hashing import hamming

TRANSFORMS = {
    "resize-half": lambda im: jpeg(im.resize((im.width // 2, im.height // 2))),
    "jpeg-q30": lambda im: jpeg(im, 30),
    "grayscale": lambda im: jpeg(im.convert("L")),
    "brightness+15%": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.15)),
    "brightness-15%": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(0.85)),
    "png-reencode": lambda im: encode(im, "PNG"),
}


@pytest.mark.parametrize("name", list(TRANSFORMS), ids=list(TRANSFORMS))
def test_copy_falls_inside_threshold_and_is_grouped_with_its_original(originals, name):
    rows, pairs = [], []
    for i, img in enumerate(originals):
        orig = hashed(f"o{i}", jpeg(img))
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
    rows = [hashed(f"d{i}", jpeg(make_photo(9000 + i))) for i in range(40)]
    phashes = [r["phash"] for r in rows]
    nearest = min(hamming(a, b) for i, a in enumerate(phashes) for b in phashes[i + 1 :])
    assert nearest > T, "generator made two distinct images look alike"
    assert find_duplicates(table(rows)).num_rows == 0


def _crop10(im: Image.Image) -> bytes:
    dx, dy = im.width // 20, im.height // 20  # 5% off each side = 10% per dimension
    return jpeg(im.crop((dx, dy, im.width - dx, im.height - dy)))


@pytest.mark.parametrize(
    "name, make, hash_catch_all",
    [
        ("crop-10%", _crop10, False),
        ("horizontal-flip", lambda im: jpeg(ImageOps.mirror(im)), False),
    ],
    ids=["crop-10%", "horizontal-flip"],
)
def test_hashes_miss_some_transforms_that_the_clip_signal_catches(
    originals, name, make, hash_catch_all, record_property
):
    cfg = NearDupConfig()
    rows, base_of = [], {}
    for i, img in enumerate(originals):
        rows += [hashed(f"o{i}", jpeg(img)), hashed(f"c{i}", make(img), rank=2)]
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

    with_clip = by_id(find_duplicates(meta, cfg, embeddings=fake_embeddings(base_of)))
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


def test_group_spanning_splits_has_scope_cross_split():
    rows = [rec("a", ZERO, split="train", w=200), rec("b", flip(ZERO, 3), split="test")]
    assert by_id(find_duplicates(table(rows)))["b"]["scope"] == "cross_split"


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
