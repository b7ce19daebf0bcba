"""tasks/clean/hashing.py: sha256 + pHash/dHash, the JPEG draft fast path, the process pool."""

from __future__ import annotations

import hashlib
import io

import imagehash
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from tv100.sandbox.imagegen import encode, make_photo
from tv100.storage.catalog import connect
from tv100.storage.schemas import HASHES
from tv100.storage.tables import write_table
from tv100.tasks.clean.config import HashConfig
from tv100.tasks.clean.hashing import (
    codes_array,
    hamming,
    hash_bytes,
    hash_file,
    hash_files,
    perceptual_hashes,
)


def reference(data: bytes) -> tuple[str, str]:
    """Plain imagehash on the fully decoded image."""
    with Image.open(io.BytesIO(data)) as img:
        return str(imagehash.phash(img)), str(imagehash.dhash(img))


# ----------------------------------------------------------------- the draft fast path


def test_draft_really_decodes_jpeg_at_reduced_scale():
    data = encode(make_photo(1, 1280, 960), quality=90)
    with Image.open(io.BytesIO(data)) as img:
        perceptual_hashes(img, fast=True, draft_size=96)
        # min(1280 // 96, 960 // 96) = 10 -> libjpeg scale 1/8 -> 160 x 120, grey only.
        assert img.size == (160, 120)
        assert img.mode == "L"
    row = hash_bytes(data)
    assert (row["width"], row["height"]) == (1280, 960), "the row reports the full size"


def test_draft_agrees_with_imagehash_on_200_varied_jpegs():
    rng = np.random.default_rng(2024)
    dp, dd = [], []
    for i in range(200):
        w, h = (int(v) for v in rng.integers(320, 1281, 2))
        data = encode(
            make_photo(10_000 + i, w, h),
            quality=int(rng.integers(50, 96)),
            subsampling=int(rng.integers(0, 3)),
            progressive=bool(rng.random() < 0.3),
        )
        row = hash_bytes(data)
        ref_p, ref_d = reference(data)
        assert row["status"] == "ok" and (row["width"], row["height"]) == (w, h)
        dp.append(hamming(row["phash"], ref_p))
        dd.append(hamming(row["dhash"], ref_d))
    dp_a, dd_a = np.array(dp), np.array(dd)
    assert (dp_a <= 2).mean() >= 0.95, f"pHash agreement {(dp_a <= 2).mean():.3f}"
    assert (dd_a <= 2).mean() >= 0.95, f"dHash agreement {(dd_a <= 2).mean():.3f}"
    # Not trivially equal either: the fast path really took a different decode.
    assert dp_a.sum() + dd_a.sum() > 0


def _rgba(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    return rgba


@pytest.mark.parametrize(
    "fmt, convert, kwargs",
    [
        ("PNG", None, {}),
        ("PNG", _rgba, {}),
        ("PNG", lambda im: im.convert("P", palette=Image.Palette.ADAPTIVE), {}),
        ("WEBP", None, {"quality": 80}),
        ("GIF", None, {}),
        ("BMP", lambda im: im.convert("L"), {}),
    ],
    ids=["png-rgb", "png-rgba", "png-palette", "webp-lossy", "gif", "bmp-grey"],
)
def test_non_jpeg_hashes_equal_imagehash_exactly(fmt, convert, kwargs):
    for seed in range(5):
        img = make_photo(seed, 500 + 37 * seed, 333 + 11 * seed)
        data = encode(convert(img) if convert else img, fmt, **kwargs)
        row = hash_bytes(data)
        assert row["status"] == "ok"
        assert (row["phash"], row["dhash"]) == reference(data)


def test_slow_path_equals_imagehash_exactly_on_jpeg():
    for seed in range(5):
        data = encode(make_photo(seed, 800, 600), quality=85)
        row = hash_bytes(data, HashConfig(fast=False))
        assert (row["phash"], row["dhash"]) == reference(data)


# ----------------------------------------------------------------- rows and errors


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"<html><body>blocked</body></html>",
        encode(make_photo(3), quality=90)[:2000],
    ],
    ids=["empty", "garbage", "html", "truncated-jpeg"],
)
def test_undecodable_bytes_are_a_row_not_an_exception(data):
    row = hash_bytes(data)
    assert row["status"] == "decode_error"
    assert row["error_message"] and " at 0x" not in row["error_message"], "must be reproducible"
    assert row["phash"] is None and row["dhash"] is None
    assert row["sha256"] == hashlib.sha256(data).hexdigest()


def test_missing_file_is_a_decode_error_row(tmp_path):
    row = hash_file(tmp_path / "nope.jpg")
    assert row["status"] == "decode_error"
    assert "FileNotFoundError" in row["error_message"]
    assert row["sha256"] is None


def test_hash_files_keeps_input_order_and_reports_unreadable_files(tmp_path):
    items = []
    for i in range(10):
        path = tmp_path / f"img{i}.jpg"
        path.write_bytes(encode(make_photo(100 + i, 320 + 10 * i, 240), quality=80))
        items.append((f"id-{i:02d}", path))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    items.insert(3, ("broken", tmp_path / "broken.jpg"))
    items.insert(7, ("missing", tmp_path / "missing.jpg"))
    items.reverse()  # order must follow the input, not names or completion

    table = hash_files(items, HashConfig(workers=2, chunksize=1))
    assert table.schema.equals(HASHES)
    assert table.column("image_id").to_pylist() == [i for i, _ in items]
    by_id = {r["image_id"]: r for r in table.to_pylist()}
    assert by_id["broken"]["status"] == "decode_error" and by_id["broken"]["error_message"]
    assert by_id["missing"]["status"] == "decode_error"
    assert "FileNotFoundError" in by_id["missing"]["error_message"]
    for image_id, path in items:
        if image_id.startswith("id-"):
            expected = {"image_id": image_id, **hash_file(path)}
            assert by_id[image_id] == expected
            assert by_id[image_id]["width"] == Image.open(path).width


def test_hashes_table_supports_hamming_in_duckdb(data_root):
    rows = []
    for i in range(6):
        data = encode(make_photo(200 + i), quality=85)
        rows.append({"image_id": f"i{i}", **hash_bytes(data)})
    # a near copy, so that one distance is small
    rows.append({"image_id": "i0-q30", **hash_bytes(encode(make_photo(200), quality=30))})
    table = pa.Table.from_pylist(rows, schema=HASHES)
    write_table(data_root, "hashes", table, schema=HASHES)
    con = connect(data_root)
    got = con.sql(
        """
        SELECT a.image_id AS a, b.image_id AS b,
               bit_count(xor(('0x' || a.phash)::UBIGINT, ('0x' || b.phash)::UBIGINT)) AS dp,
               bit_count(xor(('0x' || a.dhash)::UBIGINT, ('0x' || b.dhash)::UBIGINT)) AS dd
        FROM hashes a JOIN hashes b ON a.image_id < b.image_id
        """
    ).fetchall()
    con.close()
    assert len(got) == 7 * 6 // 2
    hashes = {r["image_id"]: r for r in rows}
    for a, b, dp, dd in got:
        assert dp == hamming(hashes[a]["phash"], hashes[b]["phash"])
        assert dd == hamming(hashes[a]["dhash"], hashes[b]["dhash"])
    assert min(dp for a, b, dp, _ in got if {a, b} == {"i0", "i0-q30"}) <= 2


def test_codes_array_round_trips_and_rejects_bad_hex():
    codes = codes_array(["0123456789abcdef", "ffffffffffffffff"])
    assert codes.shape == (2, 8) and codes.dtype == np.uint8
    assert codes[0].tobytes().hex() == "0123456789abcdef"
    with pytest.raises(ValueError, match="expected 16 hex digits"):
        codes_array(["abc"])
