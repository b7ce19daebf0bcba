"""storage/images.py: the content-addressed image store."""

from __future__ import annotations

import os

import pytest

from tv100.storage import atomic
from tv100.storage.atomic import is_temp
from tv100.storage.images import ImageStore, image_relpath


def test_image_store_content_addressed(data_root):
    store = ImageStore(data_root)
    sha, rel = store.put(b"\xff\xd8hello", "jpg")
    assert rel == f"images/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
    assert store.read(rel) == b"\xff\xd8hello"
    assert store.put(b"\xff\xd8hello", "jpg") == (sha, rel)
    with pytest.raises(ValueError, match="sha256"):
        image_relpath("xyz", "jpg")
    with pytest.raises(ValueError, match="extension"):
        image_relpath(sha, "../x")


def test_image_store_leaves_no_temp_file(data_root):
    store = ImageStore(data_root)
    _, rel = store.put(b"\xff\xd8one", "jpg")
    folder = os.path.dirname(data_root.path(rel))
    assert os.listdir(folder) == [os.path.basename(rel)]
    assert not any(is_temp(f) for f in os.listdir(folder))
    assert store.exists(rel) and not store.exists(rel.replace(".jpg", ".png"))


def test_an_image_put_unsynced_is_synced_with_its_folder_later(
    data_root, monkeypatch: pytest.MonkeyPatch
):
    """Where syncfs is not used (`tv100.storage.atomic.SYNCFS_TYPES`): fsync each."""
    monkeypatch.setattr(atomic, "_SYNCFS", None)
    store = ImageStore(data_root)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[-1])
    _, a = store.put(b"\xff\xd8a", "jpg", sync=False)
    _, b = store.put(b"\xff\xd8b", "jpg", sync=False)
    assert synced == [] and store.read(a) == b"\xff\xd8a"
    assert store.sync([a, b, a]) == 2
    assert len(synced) == 4  # two files, then their two folders


def test_images_on_ext4_are_synced_by_one_syncfs(data_root, monkeypatch: pytest.MonkeyPatch):
    real = atomic._SYNCFS
    if real is None:  # pragma: no cover - Linux with glibc everywhere this runs
        pytest.skip("no syncfs in this libc")
    dev = os.stat(data_root.url).st_dev
    monkeypatch.setattr(atomic, "mount_types", lambda: {(os.major(dev), os.minor(dev)): "ext4"})
    calls: list[int] = []
    monkeypatch.setattr(atomic, "_SYNCFS", lambda fd: (calls.append(fd), real(fd))[-1])
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("fsync called"))
    store = ImageStore(data_root)
    paths = [store.put(bytes([0xFF, 0xD8, i]), "jpg", sync=False)[1] for i in range(5)]
    assert store.sync(paths) == 5 and len(calls) == 1
