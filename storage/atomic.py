"""Atomic writes on local disk: the one temp-then-rename helper every writer uses.

A writer gets a temp path beside its target (same folder, so the rename is atomic), writes
a file or builds a folder there, and the path is renamed onto the target only when the
block succeeds; on an error the temp is removed. A kill in between leaves a
``.tmp-<random>-<name>`` entry, which `sweep_temp` (at every build's start, through
`tv100.storage.root.remove_temp_files`) deletes. A file that had to be written under a temp
name of its own first (a download resumed across runs) is moved into place by `adopt_file`.

Root-relative writes (any fsspec filesystem) are in `tv100.storage.root`; these helpers are
for files that must be local: dataset downloads DuckDB reads, exports, model folders and
user-named outputs such as ``tv100 dedupe --out``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

TEMP_PREFIX = ".tmp-"


def temp_name(name: str) -> str:
    """A fresh temp name for `name`: ``.tmp-<random>-<name>``."""
    return f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"


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


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextmanager
def atomic_path(final: str | os.PathLike[str], *, replace_dir: bool = False) -> Iterator[str]:
    """Yield a temp path beside `final`; rename it onto `final` when the block succeeds.

    The block writes a file, or makes a folder, at the yielded path. Files are fsynced
    before the rename, so a crash right after leaves the old content or the new, whole.

    Args:
        final: the target path (its parent folder is created).
        replace_dir: when `final` is an existing folder, replace it (the old one is moved
            aside to a temp name first and removed after; a crash in between leaves the
            old folder under a temp name, which the sweep removes).

    Raises:
        Whatever the block raised (the temp is removed first).
    """
    final = os.path.abspath(os.fspath(final))
    parent, name = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, temp_name(name))
    try:
        yield tmp
        if os.path.isfile(tmp):
            _fsync_file(tmp)
        if replace_dir and os.path.isdir(final):
            old = os.path.join(parent, temp_name(name))
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
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


def sweep_temp(folder: str | os.PathLike[str], older_than_s: float = 0.0) -> int:
    """Delete the temp files and folders `atomic_path` left under `folder`; return how many.

    Args:
        folder: where to look (recursively); a missing folder holds none.
        older_than_s: only those not modified for this long (for folders that another
            process may be writing into right now, e.g. a shared download cache).
    """
    cutoff = time.time() - older_than_s
    n = 0
    for parent, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            if not is_temp(name):
                continue
            path = os.path.join(parent, name)
            try:
                if older_than_s and os.path.getmtime(path) >= cutoff:
                    continue
            except OSError:  # gone meanwhile
                continue
            _remove(path)
            n += 1
        dirs[:] = [d for d in dirs if not is_temp(d)]
    return n


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a local file, streamed in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
