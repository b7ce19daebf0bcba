"""Stored image files checked against their `images` rows: missing or changed ones dropped."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from PIL import Image

from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import read_table, table_exists, write_shard, write_table
from tv100.tasks.collect.shards import pending_hits
from tv100.tasks.collect.verify import FILES_TABLE, ImageCheck, verify_images


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (seed * 37 % 256, seed * 91 % 256, 60)).save(buf, "JPEG")
    return buf.getvalue()


def image_rows(root: DataRoot, n: int) -> list[dict]:
    """`n` ok rows with their files stored, then a failed row and a duplicate of row 0's file."""
    store = ImageStore(root)
    rows = []
    for i in range(n):
        data = jpeg(i)
        sha, rel = store.put(data, "jpg")
        rows.append({"image_id": f"img{i:03d}", "series_id": "tt1", "engine": "bing",
                     "rank": i + 1, "url": f"http://x/{i}.jpg", "status": "ok",
                     "sha256": sha, "bytes": len(data), "path": rel,
                     "downloaded_at": datetime.now(UTC)})  # fmt: skip
    rows.append({"image_id": "img900", "series_id": "tt1", "engine": "bing", "rank": 900,
                 "url": "http://x/gone.jpg", "status": "http_error", "http_status": 404,
                 "error_message": "HTTP 404", "downloaded_at": datetime.now(UTC)})  # fmt: skip
    dup = dict(rows[0], image_id="img901", rank=901, url="http://y/0.jpg")
    return [*rows, dup]


@pytest.fixture
def stored(data_root) -> tuple[DataRoot, pa.Table]:
    rows = image_rows(data_root, 8)
    table = pa.Table.from_pylist(rows, schema=IMAGES).sort_by("image_id")
    write_table(data_root, "images", table)
    return data_root, read_table(data_root, "images")


def tables_bytes(root: DataRoot) -> dict[str, bytes]:
    folder = root.path("tables")
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def later(path: str) -> None:
    """Set a file's modification time well after every row's download."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_600 * 10**9))


def test_nothing_missing_changes_nothing(stored):
    root, _ = stored
    before = tables_bytes(root)
    check = verify_images(root)
    assert check == ImageCheck(files=8, hashed=0, missing=0, changed=0, rows_dropped=0)
    assert tables_bytes(root) == before
    assert not table_exists(root, FILES_TABLE)


def test_missing_and_changed_files_drop_their_rows(stored):
    root, images = stored
    rows = images.to_pylist()
    by_id = {r["image_id"]: r for r in rows}
    # Two files deleted (one of them shared by two rows), one changed in place at the same
    # size, one of another size: the last two are only seen by hashing and by size.
    os.remove(root.path(by_id["img000"]["path"]))
    os.remove(root.path(by_id["img003"]["path"]))
    same_size = root.path(by_id["img005"]["path"])
    data = bytearray(open(same_size, "rb").read())
    data[-10] ^= 0xFF
    open(same_size, "wb").write(bytes(data))
    later(same_size)
    other_size = root.path(by_id["img006"]["path"])
    open(other_size, "ab").write(b"\0")

    check = verify_images(root)
    assert check == ImageCheck(files=8, hashed=1, missing=2, changed=2, rows_dropped=5)
    after = read_table(root, "images")
    gone = {"img000", "img901", "img003", "img005", "img006"}
    assert sorted(after.column("image_id").to_pylist()) == sorted(set(by_id) - gone)
    assert after.equals(images.filter(pa.compute.invert(
        pa.compute.is_in(images.column("image_id"), pa.array(sorted(gone))))))
    # The changed files are removed: the store writes them again on the next download.
    assert not os.path.exists(same_size) and not os.path.exists(other_size)
    # The downloader's resume now plans exactly those hits again (the failed row stays).
    plan = [{"image_id": i} for i in sorted(by_id)]
    assert {h["image_id"] for h in pending_hits(plan, root)} == gone


def test_a_touched_file_is_hashed_once(stored):
    root, images = stored
    path = root.path(images.to_pylist()[2]["path"])
    later(path)  # same bytes, a later modification time (a copied data root, say)
    first = verify_images(root)
    assert (first.hashed, first.rows_dropped) == (1, 0)
    recorded = read_table(root, FILES_TABLE).to_pylist()
    assert [(r["path"], r["bytes"]) for r in recorded] == [
        (images.to_pylist()[2]["path"], os.path.getsize(path))
    ]
    before = tables_bytes(root)
    second = verify_images(root)
    assert (second.hashed, second.rows_dropped) == (0, 0)
    assert tables_bytes(root) == before
    # Changed after it was recorded: hashed again, and dropped.
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0xFF
    open(path, "wb").write(bytes(data))
    later(path)
    third = verify_images(root)
    assert (third.hashed, third.changed, third.rows_dropped) == (1, 1, 1)
    assert read_table(root, FILES_TABLE).num_rows == 0


def test_rows_still_in_shards_and_a_shard_of_the_same_hits_later(data_root):
    """Rows in done shards are folded in before the drop; a shard written afterwards for
    the same hits (same content-derived id) is read, not taken for one already folded in."""
    root = data_root
    rows = image_rows(root, 4)[:4]
    write_shard(root, "images", "s1", pa.Table.from_pylist(rows[:2], schema=IMAGES))
    write_shard(root, "images", "s2", pa.Table.from_pylist(rows[2:], schema=IMAGES))
    os.remove(root.path(rows[2]["path"]))
    os.remove(root.path(rows[3]["path"]))
    check = verify_images(root)
    assert (check.missing, check.rows_dropped) == (2, 2)
    assert read_table(root, "images").column("image_id").to_pylist() == ["img000", "img001"]
    # The download writes the same hits again as shard s2: its rows are there.
    ImageStore(root).put(jpeg(2), "jpg")
    ImageStore(root).put(jpeg(3), "jpg")
    write_shard(root, "images", "s2", pa.Table.from_pylist(rows[2:], schema=IMAGES))
    ids = sorted(read_table(root, "images").column("image_id").to_pylist())
    assert ids == ["img000", "img001", "img002", "img003"]
    assert verify_images(root).rows_dropped == 0


def test_no_images_table_is_nothing_to_check(data_root):
    assert verify_images(data_root) == ImageCheck()


def test_a_remote_root_is_checked_by_existence_and_size():
    root = DataRoot("memory://verify-h17").ensure()
    rows = image_rows(root, 3)[:3]
    write_table(root, "images", pa.Table.from_pylist(rows, schema=IMAGES))
    root.fs.rm(root.path(rows[0]["path"]))
    with root.fs.open(root.path(rows[1]["path"]), "ab") as f:
        f.write(b"\0")
    check = verify_images(root)
    assert check == ImageCheck(files=3, hashed=0, missing=1, changed=1, rows_dropped=2)
    assert read_table(root, "images").column("image_id").to_pylist() == ["img002"]
