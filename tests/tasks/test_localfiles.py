"""tasks/localfiles.py: only regular files are read, never more than a cap, never blocking.

Every test that meets a FIFO has a timeout: before the fix a FIFO blocked the ``open()``
itself, and a regression must fail, not hang. ``/dev/zero`` is only ever met by the new
code here (the old code read it until memory ran out; tests/cli/test_bounded_reads.py
runs that case in a memory-capped subprocess).
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tv100.tasks import localfiles
from tv100.tasks.clean.hashing import MAX_IMAGE_BYTES, hash_file
from tv100.tasks.collect.config import DOWNLOAD
from tv100.tasks.discover.datasets import DATASET_FILES, local_dataset_files
from tv100.tasks.localfiles import (
    LocalFileError,
    open_local_file,
    read_local_file,
    regular_file_stat,
)

CAP = 64


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "page.jpg"
    os.mkfifo(path)
    return path


def _zero_link(tmp_path, name="z.jpg"):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    return link


def test_regular_file_and_a_symlink_to_it_are_read(tmp_path):
    f = tmp_path / "a.html"
    f.write_bytes(b"x" * CAP)
    link = tmp_path / "link.html"
    link.symlink_to(f)
    assert read_local_file(f, CAP) == b"x" * CAP, "exactly the cap is accepted"
    assert read_local_file(link, CAP) == b"x" * CAP
    assert regular_file_stat(link, CAP).st_size == CAP
    with open_local_file(str(f), CAP) as fh:
        assert fh.read() == b"x" * CAP


@pytest.mark.timeout(60)
def test_fifo_is_refused_without_blocking(fifo):
    for call in (read_local_file, regular_file_stat):
        with pytest.raises(LocalFileError, match=r"FIFO .*expected a regular file") as info:
            call(fifo, CAP)
        assert str(fifo) in str(info.value)


@pytest.mark.timeout(60)
def test_device_behind_a_symlink_is_refused(tmp_path):
    link = _zero_link(tmp_path)
    with pytest.raises(LocalFileError, match="character device"):
        read_local_file(link, CAP)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: p.write_bytes(b"x" * (CAP + 1)), f"{CAP + 1} bytes; expected at most {CAP}"),
    ],
    ids=["folder", "over-cap"],
)
def test_folder_and_over_cap_file_are_refused(tmp_path, make, expected):
    p = tmp_path / "x.jpg"
    make(p)
    with pytest.raises(LocalFileError, match=expected):
        read_local_file(p, CAP)


def test_missing_file_is_a_plain_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_local_file(tmp_path / "nope.jpg", CAP)


@pytest.mark.timeout(60)
def test_the_opened_descriptor_is_checked_again(fifo, monkeypatch):
    """A path swapped for a FIFO after the stat check: the open does not block, fstat refuses."""
    monkeypatch.setattr(localfiles, "regular_file_stat", lambda path, max_bytes: None)
    with pytest.raises(LocalFileError, match="FIFO"):
        read_local_file(fifo, CAP)


def test_a_file_that_grows_past_the_cap_while_read_is_refused(tmp_path, monkeypatch):
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x" * (CAP + 10))
    real_check = localfiles.check_stat
    # The checks saw it small: only the bounded read can notice.
    monkeypatch.setattr(localfiles, "regular_file_stat", lambda path, max_bytes: None)
    monkeypatch.setattr(
        localfiles, "check_stat", lambda path, st, max_bytes: real_check(path, st, 1 << 30)
    )
    with pytest.raises(LocalFileError, match="grew past"):
        read_local_file(f, CAP)


def test_sizes_in_messages():
    assert localfiles.size_text(20 * localfiles.MIB) == "20 MiB"
    assert localfiles.size_text(1000) == "1000 bytes"


# -- the callers -------------------------------------------------------------------------------


def test_every_image_the_downloader_accepts_can_be_hashed():
    assert MAX_IMAGE_BYTES >= DOWNLOAD.http.max_bytes


@pytest.mark.timeout(60)
def test_hash_file_reports_fifo_and_over_cap_file_as_rows(fifo, tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # sparse: its size is what is refused, unread
    for path, reason in ((fifo, "FIFO"), (big, f"{MAX_IMAGE_BYTES + 1} bytes")):
        row = hash_file(path)
        assert row["status"] == "decode_error" and row["sha256"] is None
        assert row["error_message"].startswith("LocalFileError: ")
        assert reason in row["error_message"]


@pytest.mark.timeout(60)
def test_hash_file_reports_a_device_as_a_row(tmp_path):
    row = hash_file(_zero_link(tmp_path))
    assert row["status"] == "decode_error" and "character device" in row["error_message"]


def _dataset_folder(tmp_path, special: str, make) -> str:
    folder = tmp_path / "imdb"
    folder.mkdir()
    for name in DATASET_FILES:
        if name == special:
            make(folder / name)
        else:
            (folder / name).write_bytes(b"\x1f\x8b not really gzip")
    return str(folder)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("make", "expected"),
    [(os.mkfifo, "FIFO"), (lambda p: p.symlink_to("/dev/zero"), "character device")],
    ids=["fifo", "dev-zero-symlink"],
)
def test_local_dataset_folder_refuses_fifo_and_device(tmp_path, make, expected):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    folder = _dataset_folder(tmp_path, "title.basics.tsv.gz", make)
    with pytest.raises(LocalFileError, match=rf"IMDb dataset file .*title\.basics.* {expected}"):
        local_dataset_files(folder)


def test_local_dataset_folder_still_hashes_regular_files_and_names_missing_ones(tmp_path):
    folder = _dataset_folder(tmp_path, "title.akas.tsv.gz", lambda p: None)
    with pytest.raises(FileNotFoundError, match="lacks title.akas.tsv.gz"):
        local_dataset_files(folder)
    (tmp_path / "imdb" / "title.akas.tsv.gz").write_bytes(b"akas")
    files = local_dataset_files(folder)
    assert [f.name for f in files] == list(DATASET_FILES)
    assert files[2].sha256 == hashlib.sha256(b"akas").hexdigest()
    assert all(os.path.isabs(f.path) for f in files)
