"""tasks/clean/folder.py: ``tv100 dedupe <folder>``, its groups and its Parquet output."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.tasks.clean.records import jpeg
from tv100.sandbox.imagegen import encode, make_photo
from tv100.storage.schemas import DEDUPE_FOLDER
from tv100.tasks.clean.folder import FolderGroup, Unreadable, dedupe_folder
from tv100.tasks.clean.hashing import MAX_IMAGE_BYTES


def test_dedupe_folder_groups_copies_and_lists_unreadable_files(tmp_path):
    top = tmp_path / "photos"
    (top / "a").mkdir(parents=True)
    (top / "b").mkdir()
    orig = jpeg(make_photo(31), 92)
    (top / "a" / "orig1.jpg").write_bytes(orig)
    (top / "a" / "orig1_copy.jpg").write_bytes(orig)
    (top / "b" / "orig1_small.png").write_bytes(
        encode(Image.open(io.BytesIO(orig)).resize((320, 240)), "PNG")
    )
    (top / "orig2.jpg").write_bytes(jpeg(make_photo(32)))
    (top / "orig3.webp").write_bytes(encode(make_photo(33), "WEBP"))
    (top / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF broken")
    (top / "notes.txt").write_text("not an image")
    (top / ".hidden.jpg").write_bytes(jpeg(make_photo(32)))  # would pair with orig2
    out = tmp_path / "out" / "dedupe.parquet"

    results = list(dedupe_folder(top, threshold=10, out=out, workers=2))
    unreadable = [r for r in results if isinstance(r, Unreadable)]
    groups = [r for r in results if isinstance(r, FolderGroup)]
    assert len(unreadable) + len(groups) == len(results)
    assert [u.unreadable for u in unreadable] == [os.path.join(top, "corrupt.jpg")]
    assert unreadable[0].reason
    assert len(groups) == 1
    g = groups[0]
    assert g.kept == os.path.join(top, "a", "orig1.jpg")
    assert {d.path: d.kind for d in g.duplicates} == {
        os.path.join(top, "a", "orig1_copy.jpg"): "exact",
        os.path.join(top, "b", "orig1_small.png"): "phash",
    }
    assert g.kind == "exact,phash" and 0 <= g.distance <= 10
    # What `tv100 dedupe` prints: the fields as JSON keys, in order.
    assert list(dataclasses.asdict(g)) == ["group", "kept", "duplicates", "kind", "distance"]
    assert list(dataclasses.asdict(g.duplicates[0])) == ["path", "kind", "distance", "matched"]
    assert list(dataclasses.asdict(unreadable[0])) == ["unreadable", "reason"]

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


#: What `special_files_folder` makes that is not a regular image file, and why it is refused.
SPECIAL_FILES = {
    "a_pipe.jpg": "FIFO",  # sorts first: code that blocks on it never meets /dev/zero
    "zero.jpg": "character device",
    "huge.png": f"expected at most {MAX_IMAGE_BYTES // 2**20} MiB",
}


def special_files_folder(top: Path) -> Path:
    """`top` holding `SPECIAL_FILES` (a FIFO, a symlink to /dev/zero, a sparse over-cap
    file) beside two copies of one photo, ``orig.jpg`` and ``orig_copy.jpg``."""
    top.mkdir()
    os.mkfifo(top / "a_pipe.jpg")
    (top / "zero.jpg").symlink_to("/dev/zero")
    with open(top / "huge.png", "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)
    photo = jpeg(make_photo(41))
    (top / "orig.jpg").write_bytes(photo)
    (top / "orig_copy.jpg").write_bytes(photo)
    return top


@pytest.mark.timeout(60)
def test_dedupe_folder_reports_fifo_device_and_over_cap_files_without_reading_them(tmp_path):
    """Not regular files, or too large: each is a row and an `Unreadable`, and the run ends."""
    top = special_files_folder(tmp_path / "photos")
    out = tmp_path / "dedupe.parquet"

    results = list(dedupe_folder(top, out=out, workers=1))
    reasons = {os.path.basename(r.unreadable): r.reason for r in results
               if isinstance(r, Unreadable)}
    assert set(reasons) == set(SPECIAL_FILES)
    for name, needle in SPECIAL_FILES.items():
        assert needle in reasons[name], (name, reasons[name])
    (group,) = [r for r in results if isinstance(r, FolderGroup)]
    assert os.path.basename(group.kept) == "orig.jpg"
    rows = {os.path.basename(r["path"]): r for r in pq.read_table(out).to_pylist()}
    for name, reason in reasons.items():
        assert rows[name]["status"] == "decode_error" and rows[name]["error_message"] == reason
        assert rows[name]["sha256"] is None and rows[name]["group"] is None
