"""Atomic writes on local disk: the one temp-then-rename helper every writer uses.

A writer gets a temp path beside its target (same folder, so the rename is atomic), writes
a file or builds a folder there, and the path is renamed onto the target only when the
block succeeds; on an error the temp is removed. A kill in between leaves a
``.tmp-<random>-<name>`` entry, which `sweep_temp` (at every build's start, through
`tv100.storage.root.remove_temp_files`, under the data root's lock) deletes. A file that
had to be written under a temp name of its own first (a download resumed across runs) is
moved into place by `adopt_file`.

A folder replaces an existing folder by one atomic exchange of the two (Linux
``renameat2(RENAME_EXCHANGE)``), so a crash leaves the old folder or the new one in place,
whole. Where the exchange is not supported, the old folder is renamed aside under a name
`sweep_temp` recognises (``.tmp-<random>~<name>``): should a crash come before the new
folder is renamed in, the sweep puts the old one back instead of deleting it.

Root-relative writes (any fsspec filesystem) are in `tv100.storage.root`; these helpers are
for files that must be local: dataset downloads DuckDB reads, exports, model folders and
user-named outputs such as ``tv100 dedupe --out``.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import math
import os
import re
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

TEMP_PREFIX = ".tmp-"
#: An old folder moved aside by `atomic_path` without an atomic exchange: ``.tmp-<hex>~<name>``.
_ASIDE_RE = re.compile(r"^\.tmp-[0-9a-f]{32}~(.+)$")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def temp_name(name: str) -> str:
    """A fresh temp name for `name`: ``.tmp-<random>-<name>``."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"


def _aside_name(name: str) -> str:
    """A fresh temp name for the old folder `name` while a new one takes its place."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}~{name}"


def is_temp(name: str) -> bool:
    """Whether a file or folder name is one of `temp_name`'s."""
    return name.startswith(TEMP_PREFIX)


def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: str) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder: the rename still stands
        pass
    finally:
        os.close(fd)


#: Local filesystems on which one ``syncfs(2)`` makes every file written before it durable,
#: with its folder entries (their data is written back, then the journal committed).
#: Elsewhere (overlay, network and FUSE filesystems) each file is fsynced.
SYNCFS_TYPES = frozenset({"ext4", "ext3", "xfs", "btrfs", "f2fs", "tmpfs"})


def _libc_syncfs() -> Any:
    """glibc's ``syncfs``, or None (not Linux, or a libc without it)."""
    if not sys.platform.startswith("linux"):
        return None
    fn = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_SYNCFS = _libc_syncfs()


def mount_types() -> dict[tuple[int, int], str]:
    """Filesystem type by device number (major, minor), from ``/proc/self/mountinfo``."""
    types: dict[tuple[int, int], str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields, _, rest = line.partition(" - ")
                parts = fields.split()
                if len(parts) > 2 and rest and ":" in parts[2]:
                    major, minor = parts[2].split(":", 1)
                    types.setdefault((int(major), int(minor)), rest.split()[0])
    except (OSError, ValueError):
        pass
    return types


def _syncfs_at(folder: str) -> bool:
    """``syncfs`` the filesystem holding `folder`; False where it cannot be done.

    Raises:
        OSError: the filesystem reported a write-back error.
    """
    if _SYNCFS is None:
        return False
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if _SYNCFS(fd) == 0:
            return True
        err = ctypes.get_errno()
    finally:
        os.close(fd)
    if err in (errno.ENOSYS, errno.EINVAL, errno.EPERM):
        return False
    raise OSError(err, f"syncfs: {os.strerror(err)}", folder)


def sync_files(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Make files written with ``atomic_path(..., sync=False)`` durable, with their renames.

    On a local Linux filesystem of `SYNCFS_TYPES`, one ``syncfs`` per filesystem: about 15×
    less wall time and 50× less CPU than fsyncing 500 images one by one on ext4 here (each
    fsync commits the journal and flushes the disk; `bench/download.py`'s ``write``).
    Elsewhere each file is fsynced, then each of their folders once: in one batch after many
    writes, still far fewer journal commits than an fsync per write.

    Returns:
        The number of distinct files synced (a missing one raises FileNotFoundError).
    """
    files = sorted({os.path.abspath(os.fspath(p)) for p in paths})
    by_device: dict[int, list[str]] = {}
    for path in files:
        by_device.setdefault(os.stat(path).st_dev, []).append(path)
    types = mount_types() if _SYNCFS is not None and files else {}
    for device, group in by_device.items():
        kind = types.get((os.major(device), os.minor(device)))
        if kind in SYNCFS_TYPES and _syncfs_at(os.path.dirname(group[0])):
            continue
        for path in group:
            _fsync_file(path)
        for folder in sorted({os.path.dirname(p) for p in group}):
            _fsync_dir(folder)
    return len(files)


def _remove(path: str) -> bool:
    """Remove a file, link or folder tree; False if nothing was there (gone meanwhile)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    except FileNotFoundError:  # renamed or removed by another process since it was seen
        return False
    return True


def _exchange(a: str, b: str) -> bool:
    """Swap the paths `a` and `b` in one atomic step; False where the system cannot.

    Raises:
        OSError: the exchange failed for another reason than lacking support.
    """
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # not glibc >= 2.28 (musl, ...)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # an old kernel, or a filesystem without the flag (NFS, ...)
    raise OSError(err, os.strerror(err), a, None, b)


def _replace_dir(new: str, final: str) -> None:
    """Put the folder `new` at `final`, where a folder already is; the old one is removed.

    A crash at any point leaves `final` old or new and whole (after `sweep_temp`, in the
    fallback without an atomic exchange).
    """
    parent, name = os.path.split(final)
    if _exchange(new, final):
        _remove(new)  # now the old folder
        return
    old = os.path.join(parent, _aside_name(name))
    os.replace(final, old)
    os.replace(new, final)
    _remove(old)


@contextmanager
def atomic_path(
    final: str | os.PathLike[str], *, replace_dir: bool = False, sync: bool = True
) -> Iterator[str]:
    """Yield a temp path beside `final`; rename it onto `final` when the block succeeds.

    The block writes a file, or makes a folder, at the yielded path. Files are fsynced
    before the rename, so a crash right after leaves the old content or the new, whole.

    Args:
        final: the target path (its parent folder is created).
        replace_dir: when `final` is an existing folder, replace it with the new folder
            (exchanged atomically, then the old one removed; a crash leaves the old folder
            or the new one at `final`, and the other under a temp name the sweep removes).
        sync: False leaves the fsync to the caller, who must `sync_files` the file before
            anything records it as written (many small files then cost one batch of
            fsyncs, not one fsync each between writes).

    Raises:
        Whatever the block raised (the temp is removed first).
    """
    final = os.path.abspath(os.fspath(final))
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, temp_name(name))
    try:
        yield tmp
        if sync and os.path.isfile(tmp):
            _fsync_file(tmp)
        if replace_dir and os.path.isdir(final) and not os.path.islink(final):
            _replace_dir(tmp, final)
        else:
            os.replace(tmp, final)
    finally:
        _remove(tmp)


def adopt_file(src: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move a finished local file onto `final` atomically: a file written in place, adopted.

    For a file that cannot go through `atomic_path` because it was written elsewhere first
    (a download resumed across runs under its own temp name). `src` is fsynced, renamed
    onto `final` (replacing it: `final` is the old file or the new one, never part of one),
    then the folder is fsynced, so the rename survives a crash.

    Args:
        src: the finished file, on the same filesystem as `final` (best: beside it, under a
            `temp_name`, so a run killed before the move leaves a temp the sweep removes).
        final: the target path.

    Raises:
        FileNotFoundError: `src` does not exist.
        IsADirectoryError: `src` or `final` is a folder.
        OSError: the rename failed (`src` on another filesystem, say); `final` is untouched.
    """
    src, final = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(final))
    if os.path.isdir(src) or os.path.isdir(final):
        raise IsADirectoryError(f"adopt_file moves files, not folders: {src!r} -> {final!r}")
    _fsync_file(src)
    os.replace(src, final)
    _fsync_dir(os.path.dirname(final))


def write_file_atomic(final: str | os.PathLike[str], content: bytes) -> str:
    """Write `content` to the local file `final` through `atomic_path`; return the path."""
    with atomic_path(final) as tmp, open(tmp, "wb") as f:
        f.write(content)
    return os.fspath(final)


def _newest_times(path: str) -> tuple[float, float]:
    """The latest time `path`, or anything in it, was modified; and was modified or renamed.

    A rename changes an entry's ctime, not its mtime: an old folder that a writer has just
    moved aside is new by the second measure.

    Raises:
        FileNotFoundError: `path` is gone.
    """
    st = os.lstat(path)
    modified, changed = st.st_mtime, max(st.st_mtime, st.st_ctime)
    if stat.S_ISDIR(st.st_mode):
        for parent, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                try:
                    st = os.lstat(os.path.join(parent, name))
                except FileNotFoundError:
                    continue
                modified, changed = max(modified, st.st_mtime), max(changed, st.st_ctime)
    return modified, changed


def sweep_temp(
    folder: str | os.PathLike[str],
    older_than_s: float = 0.0,
    *,
    before: float | None = None,
    skip_marked: str | None = None,
) -> int:
    """Delete the temp files and folders `atomic_path` left under `folder`; return how many.

    An old folder moved aside by a replacement that a crash cut short (its target missing)
    is renamed back into place instead, and not counted. An entry that vanishes while the
    sweep looks at it (its writer renamed it into place) is left to its writer.

    Args:
        folder: where to look (recursively); a missing folder holds none.
        older_than_s: only those not modified for this long, nor anything in them (for
            folders that another process may be writing into right now, e.g. a shared
            download cache).
        before: only those that neither they nor anything in them were modified or
            renamed (mtime, ctime) since this time, on the filesystem's clock: the start
            of the run that holds the data root's lock (`tv100.storage.lock.Holder.stamp`),
            so that a temp of a run that began later is never touched.
        skip_marked: a folder below `folder` holding a file of this name is not entered
            (another data root nested in this one, e.g. the demo's ``./data/demo``: its
            runs hold their own lock).
    """
    modified_before = time.time() - older_than_s if older_than_s else math.inf
    changed_before = math.inf if before is None else before
    n = 0
    for parent, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            if not is_temp(name):
                continue
            path = os.path.join(parent, name)
            try:
                modified, changed = _newest_times(path)
                if modified >= modified_before or changed >= changed_before:
                    continue
                aside = _ASIDE_RE.match(name)
                target = os.path.join(parent, aside.group(1)) if aside else ""
                if aside and not os.path.lexists(target):
                    os.replace(path, target)
                    continue
            except FileNotFoundError:  # gone meanwhile
                continue
            n += _remove(path)
        dirs[:] = [
            d for d in dirs
            if not is_temp(d)
            and not (skip_marked and os.path.exists(os.path.join(parent, d, skip_marked)))
        ]
    return n


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a local file, streamed in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
