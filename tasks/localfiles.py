"""Local files a user names: only regular files are opened, and never more than a cap is read.

A path a user hands to tv100 (a folder for ``tv100 dedupe``, a saved page for ``tv100
inspect``, an exclusion list, a folder of IMDb dataset files) may name a FIFO, which blocks
the first ``open()`` until a writer comes, or a device such as ``/dev/zero`` (often behind an
innocent ``x.jpg`` symlink), which never ends. Every such read goes through this module:

1. ``os.stat`` (following symlinks) must say regular file and at most the cap, so a device is
   never even opened (opening some has side effects);
2. the file is opened with ``O_NONBLOCK``, so a FIFO swapped in after the check cannot block
   the ``open()`` itself, and the *descriptor* is checked again with ``os.fstat``: what is read
   is what was checked;
3. at most ``cap + 1`` bytes are read, so a file that grows meanwhile is still refused.

Anything else raises `LocalFileError` (an `OSError`, so callers that already turn ``OSError``
into an error row or a one-line error need nothing new).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from tv100.tasks.web.config import MIB

#: ``os.open`` flags: read-only, never block on a FIFO, never become a controlling terminal.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class LocalFileError(OSError):
    """A local file that is not read: not a regular file, or larger than its cap."""


def size_text(n: int) -> str:
    """A byte count for messages: ``"20 MiB"`` for whole MiB, else ``"1234 bytes"``."""
    return f"{n // MIB} MiB" if n >= MIB and n % MIB == 0 else f"{n} bytes"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_stat(path: str, st: os.stat_result, max_bytes: int) -> os.stat_result:
    """`st` if it is a regular file of at most `max_bytes`; else `LocalFileError` naming `path`.

    Args:
        path: the path `st` belongs to (for the message).
        st: its ``os.stat`` (symlinks followed) or ``os.fstat``.
        max_bytes: the largest size accepted.
    """
    if not stat.S_ISREG(st.st_mode):
        raise LocalFileError(f"{path!r} is {_kind(st.st_mode)}; expected a regular file")
    if st.st_size > max_bytes:
        raise LocalFileError(
            f"{path!r} is {st.st_size} bytes; expected at most {size_text(max_bytes)}"
        )
    return st


def regular_file_stat(path: str | os.PathLike[str], max_bytes: int) -> os.stat_result:
    """Check that `path` (symlinks followed) is a regular file of at most `max_bytes`.

    For files read later by another library (DuckDB, pyarrow): nothing is opened here.

    Args:
        path: a local path.
        max_bytes: the largest size accepted.

    Returns:
        Its ``os.stat``.

    Raises:
        LocalFileError: not a regular file, or larger than `max_bytes`.
        OSError: it cannot be stat'ed (missing, no permission, a symlink loop, ...).
    """
    p = os.fspath(path)
    return check_stat(p, os.stat(p), max_bytes)


@contextmanager
def open_local_file(
    path: str | os.PathLike[str], max_bytes: int
) -> Iterator[io.BufferedReader]:
    """Open a local regular file of at most `max_bytes` for reading (see the module docstring).

    Args:
        path: a local path; symlinks are followed.
        max_bytes: the largest size accepted.

    Yields:
        The file, opened in binary mode (blocking again: it is a regular file).

    Raises:
        LocalFileError: not a regular file, or larger than `max_bytes`.
        OSError: it cannot be opened.
    """
    p = os.fspath(path)
    regular_file_stat(p, max_bytes)
    fd = os.open(p, _OPEN_FLAGS)
    try:
        check_stat(p, os.fstat(fd), max_bytes)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        yield f


def read_local_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a local regular file of at most `max_bytes` (see the module docstring).

    Args:
        path: a local path; symlinks are followed.
        max_bytes: the largest size accepted.

    Raises:
        LocalFileError: not a regular file, or larger than `max_bytes` (also when it grew past
            it after the check).
        OSError: it cannot be opened or read.
    """
    with open_local_file(path, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LocalFileError(
            f"{os.fspath(path)!r} grew past {size_text(max_bytes)} while being read; "
            f"expected at most {size_text(max_bytes)}"
        )
    return data
