"""storage/atomic.py: temp beside the target, renamed into place on success, removed on
error; the sweep of temps a killed run left."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import stat
import time

import pytest

from tv100.storage import atomic
from tv100.storage.atomic import (
    adopt_file,
    atomic_path,
    is_temp,
    sha256_file,
    sweep_temp,
    sync_files,
    temp_name,
    write_file_atomic,
)


def test_temp_names_are_fresh_and_recognised():
    a, b = temp_name("x.parquet"), temp_name("x.parquet")
    assert a != b and a.endswith("-x.parquet") and is_temp(a) and is_temp(b)
    assert not is_temp("x.parquet") and not is_temp("tmp-x")


def test_file_appears_whole_on_success(tmp_path):
    final = tmp_path / "deep" / "f.bin"
    with atomic_path(final) as tmp:
        assert os.path.dirname(tmp) == str(final.parent) and is_temp(os.path.basename(tmp))
        with open(tmp, "wb") as f:
            f.write(b"new")
        assert not final.exists(), "nothing at the target before the block ends"
    assert final.read_bytes() == b"new" and os.listdir(final.parent) == ["f.bin"]


def test_error_keeps_the_old_file_and_removes_the_temp(tmp_path):
    final = tmp_path / "f.bin"
    write_file_atomic(final, b"old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("killed")
    assert final.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_folder_replaces_a_folder_whole(tmp_path):
    final = tmp_path / "model"
    for content in (b"v1", b"v2"):
        with atomic_path(final, replace_dir=True) as tmp:
            os.makedirs(tmp)
            (tmp_path / tmp / "w.bin").write_bytes(content)
    assert (final / "w.bin").read_bytes() == b"v2"
    assert os.listdir(tmp_path) == ["model"], "the old folder is removed, no temp is left"
    with pytest.raises(RuntimeError), atomic_path(final, replace_dir=True) as tmp:
        os.makedirs(tmp)
        raise RuntimeError("killed")
    assert (final / "w.bin").read_bytes() == b"v2" and os.listdir(tmp_path) == ["model"]


def _folder(path, content: bytes) -> None:
    path.mkdir()
    (path / "w.bin").write_bytes(content)


def test_exchange_swaps_two_folders(tmp_path):
    _folder(tmp_path / "a", b"a")
    _folder(tmp_path / "b", b"b")
    if not atomic._exchange(str(tmp_path / "a"), str(tmp_path / "b")):
        pytest.skip("no atomic exchange on this system (the fallback is tested below)")
    assert (tmp_path / "a" / "w.bin").read_bytes() == b"b"
    assert (tmp_path / "b" / "w.bin").read_bytes() == b"a"


def test_folder_replacement_without_an_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    final = tmp_path / "model"
    for content in (b"v1", b"v2"):
        with atomic_path(final, replace_dir=True) as tmp:
            _folder(tmp_path / tmp, content)
    assert (final / "w.bin").read_bytes() == b"v2" and os.listdir(tmp_path) == ["model"]


def test_a_crash_between_the_renames_is_undone_by_the_sweep(tmp_path, monkeypatch):
    """Without an exchange, a crash after the old folder went aside and before the new one
    came in leaves no folder at the target: the sweep puts the old one back, whole."""
    final = tmp_path / "model"
    with atomic_path(final, replace_dir=True) as tmp:
        _folder(tmp_path / tmp, b"old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    renames = []
    real_replace = os.replace

    def replace_then_die(src, dst):
        renames.append((src, dst))
        if len(renames) == 2:
            raise KeyboardInterrupt  # the process dies here
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt), atomic_path(final, replace_dir=True) as tmp:
        _folder(tmp_path / tmp, b"new")
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert not final.exists() and len(os.listdir(tmp_path)) == 1  # only the old, aside
    assert sweep_temp(tmp_path) == 0  # restored, not removed
    assert (final / "w.bin").read_bytes() == b"old" and os.listdir(tmp_path) == ["model"]


def test_the_sweep_keeps_whichever_folder_is_in_place(tmp_path):
    """A kill leaves the new folder under a temp name and the old one aside, or the new one
    in place and the old one aside: the sweep leaves one whole folder at the target."""
    hex_ = "0" * 32
    _folder(tmp_path / f".tmp-{hex_}~model", b"old")
    _folder(tmp_path / f".tmp-{'1' * 32}-model", b"new, never renamed in")
    sweep_temp(tmp_path)
    assert os.listdir(tmp_path) == ["model"]
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"old"
    _folder(tmp_path / f".tmp-{'2' * 32}~model", b"older")
    assert sweep_temp(tmp_path) == 1  # the target is there: the aside one is removed
    assert (tmp_path / "model" / "w.bin").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model"]


def test_sweep_removes_temps_and_keeps_the_rest(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / temp_name("t.parquet")).write_bytes(b"x")
    folder = tmp_path / temp_name("dir")
    folder.mkdir()
    (folder / "inside").write_bytes(b"x")
    (tmp_path / "a" / "kept.parquet").write_bytes(b"x")
    assert sweep_temp(tmp_path) == 2  # the temp folder counts once, with what is inside
    assert sweep_temp(tmp_path) == 0
    assert sweep_temp(tmp_path / "missing") == 0
    assert [p.name for p in tmp_path.rglob("*")] == ["a", "kept.parquet"]


def test_sweep_older_than_spares_fresh_temps(tmp_path):
    old, fresh = tmp_path / temp_name("old"), tmp_path / temp_name("fresh")
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert sweep_temp(tmp_path, older_than_s=600) == 1
    assert not old.exists() and fresh.exists()


def test_sha256_file_streams(tmp_path):
    data = os.urandom((1 << 20) + 17)  # more than one block
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_adopt_file_replaces_the_target_whole(tmp_path):
    final = tmp_path / "title.akas.tsv.gz"
    write_file_atomic(final, b"old version")
    src = tmp_path / temp_name("partial-title.akas.tsv.gz")
    src.write_bytes(b"new version, written elsewhere first")
    adopt_file(src, final)
    assert final.read_bytes() == b"new version, written elsewhere first"
    assert os.listdir(tmp_path) == ["title.akas.tsv.gz"]  # the source is gone, no temp left
    fresh = tmp_path / "sub" / "g"
    fresh.parent.mkdir()
    other = tmp_path / "sub" / temp_name("g")
    other.write_bytes(b"g")
    adopt_file(str(other), str(fresh))  # str paths, no earlier target
    assert fresh.read_bytes() == b"g" and os.listdir(fresh.parent) == ["g"]


def test_adopt_file_syncs_the_file_before_and_the_folder_after_the_rename(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    final, src = tmp_path / "f.bin", tmp_path / temp_name("f.bin")
    src.write_bytes(b"data")
    src_inode = src.stat().st_ino
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            assert os.path.samestat(st, os.stat(tmp_path))
            events.append("fsync folder")
        else:
            assert st.st_ino == src_inode
            events.append("fsync file")
        real_fsync(fd)

    def replace(a: str, b: str) -> None:
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    adopt_file(src, final)
    assert events == ["fsync file", "rename", "fsync folder"]
    assert final.read_bytes() == b"data"


def test_adopt_file_refuses_what_it_cannot_move_and_keeps_the_target(tmp_path):
    final = tmp_path / "f.bin"
    write_file_atomic(final, b"kept")
    with pytest.raises(FileNotFoundError):
        adopt_file(tmp_path / "missing", final)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="not folders"):
        adopt_file(folder, final)
    src = tmp_path / "src"
    src.write_bytes(b"x")
    with pytest.raises(IsADirectoryError, match="not folders"):
        adopt_file(src, folder)
    assert final.read_bytes() == b"kept" and src.read_bytes() == b"x"


@pytest.mark.parametrize("url", ["local", "memory://tv100-nested-sweep"])
def test_a_build_sweep_leaves_a_nested_data_root_alone(tmp_path, url):
    """``./data/demo`` inside ``./data``: the outer root's sweep never enters the demo's
    root, whose runs hold their own lock and may be writing right now."""
    from tv100.storage.root import DataRoot, remove_temp_files

    outer = DataRoot(str(tmp_path / "data") if url == "local" else url).ensure()
    inner = DataRoot(outer.uri("demo")).ensure()
    mine = outer.path("tables", temp_name("series.parquet"))
    theirs = inner.path("tables", temp_name("series.parquet"))
    for path in (mine, theirs):
        outer.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with outer.fs.open(path, "wb") as f:
            f.write(b"x")
    time.sleep(0.05)  # both older than the sweep's hold
    assert remove_temp_files(outer) == 1
    assert not outer.fs.exists(mine) and outer.fs.exists(theirs)
    assert remove_temp_files(inner) == 1 and not outer.fs.exists(theirs)


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """os.fsync recorded as ("file" | "folder", inode), then done."""
    events: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        events.append(("folder" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return events


class _Every(dict[tuple[int, int], str]):
    """A mount table in which every device is a filesystem of one type."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def get(self, key: object, default: object = None) -> str:  # type: ignore[override]
        return self.kind


def _on(monkeypatch: pytest.MonkeyPatch, kind: str | None) -> list[int]:
    """Every device reported as filesystem `kind` (None: unknown); syncfs calls recorded
    (the folder's device each), then made."""
    calls: list[int] = []
    real = atomic._SYNCFS
    if real is None:  # pragma: no cover - Linux with glibc everywhere this runs
        pytest.skip("no syncfs in this libc")

    def syncfs(fd: int) -> int:
        calls.append(os.fstat(fd).st_dev)
        return int(real(fd))

    monkeypatch.setattr(atomic, "_SYNCFS", syncfs)
    monkeypatch.setattr(
        atomic, "mount_types", lambda: _Every(kind) if kind else {}
    )
    return calls


def _unsynced(tmp_path) -> tuple[os.PathLike[str], os.PathLike[str]]:
    a, b = tmp_path / "x" / "a.bin", tmp_path / "y" / "b.bin"
    for path, data in ((a, b"a"), (b, b"b")):
        with atomic_path(path, sync=False) as tmp, open(tmp, "wb") as f:
            f.write(data)
    return a, b


@pytest.mark.skipif(not os.path.exists("/proc/self/mountinfo"), reason="not Linux")
def test_the_mount_table_names_the_filesystem_of_a_device(tmp_path):
    types = atomic.mount_types()
    assert types and all(isinstance(v, str) and v for v in types.values())
    dev = os.stat("/proc").st_dev  # procfs: always its own mount, listed by number
    assert types.get((os.major(dev), os.minor(dev))) == "proc"


def test_on_a_journalled_local_filesystem_one_syncfs_replaces_the_fsyncs(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    calls = _on(monkeypatch, "ext4")
    events = _record_fsyncs(monkeypatch)
    a, b = _unsynced(tmp_path)
    assert sync_files([a, str(b), a]) == 2
    assert events == [] and calls == [os.stat(tmp_path).st_dev]  # one per filesystem


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EINVAL])
def test_a_refused_syncfs_falls_back_to_fsyncs(err, tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(atomic, "mount_types", lambda: _Every("xfs"))

    def refused(fd: int) -> int:
        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(atomic, "_SYNCFS", refused)
    events = _record_fsyncs(monkeypatch)
    a, b = _unsynced(tmp_path)
    assert sync_files([a, b]) == 2
    assert [kind for kind, _ in events] == ["file", "file", "folder", "folder"]


def test_a_write_back_error_from_syncfs_is_raised(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(atomic, "mount_types", lambda: _Every("ext4"))

    def failed(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(atomic, "_SYNCFS", failed)
    a, _ = _unsynced(tmp_path)
    with pytest.raises(OSError, match="syncfs") as err:
        sync_files([a])
    assert err.value.errno == errno.EIO


@pytest.mark.parametrize("fs", [None, "overlay", "nfs4", "fuse.sshfs"])
def test_an_unsynced_write_is_whole_and_waits_for_sync_files(
    fs, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """Overlay, network and FUSE filesystems (and unknown ones): each file fsynced."""
    calls = _on(monkeypatch, fs)
    events = _record_fsyncs(monkeypatch)
    a, b = tmp_path / "x" / "a.bin", tmp_path / "y" / "b.bin"
    for path, data in ((a, b"a"), (b, b"b")):
        with atomic_path(path, sync=False) as tmp, open(tmp, "wb") as f:
            f.write(data)
    assert events == []
    assert a.read_bytes() == b"a" and os.listdir(a.parent) == ["a.bin"]
    assert sync_files([a, str(b), a]) == 2  # a path named twice is synced once
    files = sorted(i for kind, i in events if kind == "file")
    folders = sorted(i for kind, i in events if kind == "folder")
    assert files == sorted([a.stat().st_ino, b.stat().st_ino])
    assert folders == sorted([a.parent.stat().st_ino, b.parent.stat().st_ino])
    assert [kind for kind, _ in events] == ["file", "file", "folder", "folder"]
    assert calls == []


@pytest.mark.parametrize("kind", [None, "ext4"])
def test_sync_files_refuses_a_missing_file(kind, tmp_path, monkeypatch: pytest.MonkeyPatch):
    _on(monkeypatch, kind)
    with pytest.raises(FileNotFoundError):
        sync_files([tmp_path / "gone.bin"])
