"""The data root: one folder (local path or fsspec URL) holding every table and file.

Layout::

    <root>/tv100.json                 schema version marker
    <root>/tables/<name>.parquet      whole tables, replaced atomically
    <root>/tables/<name>/part-*.parquet + _done/<shard>   sharded, resumable tables
    <root>/images/ab/cd/<sha256>.<ext>  content-addressed image store
    <root>/raw/...                    downloaded source files (IMDb datasets, ...)
    <root>/cache/clean/neardup_pairs.parquet  the last clean's near-dup pairs (deletable)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import posixpath
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from tv100.storage.atomic import (
    atomic_path,
    is_temp,
    sha256_file,
    sweep_temp,
    sync_files,
    temp_name,
)
from tv100.storage.schemas import SCHEMA_VERSION

DEFAULT_DATA = "./data"
ENV_VAR = "TV100_DATA"
MARKER = "tv100.json"


class DataRootError(ValueError):
    """A data root that cannot be used (unreadable, newer schema, ...)."""


@dataclass(frozen=True, eq=False)
class DataRoot:
    """A data root on any fsspec filesystem.

    Immutable and identified by its URL alone: two roots with the same URL are equal, hash
    alike, and pickle as the URL (so Prefect cache keys and Dask workers see only the URL).

    Args:
        url: local path or fsspec URL (``s3://bucket/prefix``, ``memory://x``, ...).
    """

    url: str
    fs: Any = field(init=False, repr=False, compare=False)
    base: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.url:
            raise DataRootError("data root is empty; expected a path or fsspec URL")
        try:
            fs, base = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as err:  # unknown protocol, its package missing
            raise DataRootError(
                f"data root {self.url!r} is not usable: {_one_line(err)}; expected a local "
                "path or an fsspec URL (file://, memory://, s3://bucket/prefix, ...)"
            ) from err
        if isinstance(fs, LocalFileSystem):
            base = os.path.abspath(base)
        object.__setattr__(self, "fs", fs)
        object.__setattr__(self, "base", base.rstrip("/") or "/")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataRoot) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (DataRoot, (self.url,))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    @property
    def protocol(self) -> str:
        proto = self.fs.protocol
        return proto[0] if isinstance(proto, tuple | list) else str(proto)

    def path(self, *parts: str) -> str:
        """Path of `parts` under the root, in the filesystem's own form."""
        return posixpath.join(self.base, *parts) if parts else self.base

    def uri(self, *parts: str) -> str:
        """Path with protocol, for tools (DuckDB, pyarrow) that take URLs."""
        p = self.path(*parts)
        return p if self.is_local else f"{self.protocol}://{p.lstrip('/')}"

    def ensure(self) -> DataRoot:
        """Create the root and its version marker; refuse a root written by a newer schema."""
        marker = self.path(MARKER)
        try:
            self.fs.makedirs(self.base, exist_ok=True)
            if self.fs.exists(marker):
                with self.fs.open(marker, "rb") as f:
                    version = self._marker_version(f.read())
                if version > SCHEMA_VERSION:
                    raise DataRootError(
                        f"data root {self.url!r} was written by schema version {version}; "
                        f"this tv100 reads up to {SCHEMA_VERSION}: upgrade tv100"
                    )
            else:
                write_bytes_atomic(
                    self, MARKER, json.dumps({"schema_version": SCHEMA_VERSION}).encode() + b"\n"
                )
        except (OSError, PermissionError) as err:
            raise DataRootError(f"data root {self.url!r} is not usable: {err}") from err
        return self

    def _marker_version(self, content: bytes) -> int:
        """The schema version in the marker's `content`; DataRootError if it is corrupt."""
        try:
            info = json.loads(content)
            if not isinstance(info, dict):
                raise TypeError(f"a JSON {type(info).__name__}, not an object")
            version = info.get("schema_version", 0)
            if isinstance(version, bool) or not isinstance(version, int | str):
                raise TypeError(f"schema_version is {version!r}, not a whole number")
            return int(version)
        except (ValueError, TypeError) as err:  # JSONDecodeError, UnicodeDecodeError too
            raise DataRootError(
                f"data root {self.url!r} has an unreadable {MARKER}: {_one_line(err)}; "
                f'expected {{"schema_version": N}} (a whole number)'
            ) from err


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def default_data() -> str:
    """The data root when none is given: ``$TV100_DATA``, else ``./data``."""
    return os.environ.get(ENV_VAR) or DEFAULT_DATA


def resolve_root(data: DataRoot | str | None = None) -> DataRoot:
    """The data root from `--data` (or a flow's `data`), else `default_data()`.

    The one place a data root is made from user input: flows call it once and pass the
    `DataRoot` on to their tasks.
    """
    if isinstance(data, DataRoot):
        return data
    return DataRoot(data or default_data())


def temp_path(final: str) -> str:
    """A fresh temp file name beside `final` (same folder: the rename into place is atomic).

    Named as `tv100.storage.atomic.temp_name` names it, which `remove_temp_files` sweeps.
    """
    parent, name = posixpath.split(final)
    return posixpath.join(parent, temp_name(name))


@contextmanager
def open_atomic(root: DataRoot, relpath: str, *, sync: bool = True) -> Iterator[BinaryIO]:
    """A binary file under the root that appears whole, or not at all, when the block ends.

    Local roots write a temp file beside the target and rename it (`atomic_path`; with
    ``sync=False`` the caller fsyncs it later, `sync_paths`); other filesystems buffer in
    memory and upload to a temp name, then move it into place.
    """
    final = root.path(relpath)
    if root.is_local:
        with atomic_path(final, sync=sync) as tmp, open(tmp, "wb") as f:
            yield f
        return
    buf = io.BytesIO()
    yield buf
    root.fs.makedirs(posixpath.dirname(final), exist_ok=True)
    tmp = temp_path(final)
    try:
        with root.fs.open(tmp, "wb") as f:
            f.write(buf.getvalue())
        root.fs.mv(tmp, final)
    finally:
        if root.fs.exists(tmp):
            root.fs.rm(tmp)


def write_bytes_atomic(root: DataRoot, relpath: str, data: bytes, *, sync: bool = True) -> str:
    """Write `data` to `relpath` under the root, atomically (`open_atomic`); return its path.

    A reader sees either the old file or the new one, never half of one.
    """
    with open_atomic(root, relpath, sync=sync) as f:
        f.write(data)
    return root.path(relpath)


def sync_paths(root: DataRoot, relpaths: Iterable[str]) -> int:
    """fsync files under a local root written with ``sync=False`` (`sync_files`).

    A no-op on other filesystems: their uploads are whole when the write returns.

    Returns:
        The number of files synced.
    """
    if not root.is_local:
        return 0
    return sync_files(root.path(r) for r in relpaths)


def remove_temp_files(root: DataRoot, relpath: str = "") -> int:
    """Delete temp files and folders left under `relpath` by a killed run; return how many.

    Only while holding the data root's lock (`tv100.storage.lock.hold_root`: the caller's
    hold, else one taken for the sweep, waiting for any other run), and only the temp
    entries older than the start of the run holding it: no other run writes the root
    meanwhile, and a temp that vanishes under the sweep (renamed into place) is skipped.
    """
    from tv100.storage.lock import hold_root  # it imports this module

    top = root.path(relpath) if relpath else root.base
    with hold_root(root, what="temp sweep") as holder:
        if root.is_local:
            return sweep_temp(top, before=holder.stamp, skip_marked=MARKER)
        return _sweep_remote(root, top, holder.stamp)


def _sweep_remote(root: DataRoot, top: str, before: float) -> int:
    """`remove_temp_files` on a non-local root: temp entries under `top` older than `before`.

    A temp folder is as new as the newest file in it. An entry whose filesystem keeps no
    modification time (an object store's "folder", say) counts as old: the lock is what
    keeps other runs out.
    """
    try:
        found = sorted(root.fs.find(top, withdirs=True))
    except FileNotFoundError:
        return 0
    n = 0
    # Data roots nested in this one (their marker file) are theirs to sweep, under their lock.
    nested = [
        posixpath.dirname(p) for p in found
        if posixpath.basename(p) == MARKER and posixpath.dirname(p) != top.rstrip("/")
    ]
    temps: list[str] = []
    for p in found:
        if not is_temp(posixpath.basename(p)) or any(
            p.startswith(f"{d}/") for d in (*nested, *temps)
        ):
            continue
        temps.append(p)  # what is inside goes with it
        times = [modified_time(root, q) for q in found if q == p or q.startswith(f"{p}/")]
        if max((t for t in times if t is not None), default=-math.inf) >= before:
            continue
        try:
            root.fs.rm(p, recursive=True)
        except FileNotFoundError:  # moved into place meanwhile
            continue
        n += 1
    return n


def modified_time(root: DataRoot, path: str) -> float | None:
    """When a file under the root was last modified (seconds since the epoch), where its
    filesystem keeps that (not every fsspec filesystem does, nor for every entry)."""
    try:
        return float(root.fs.modified(path).timestamp())
    except (NotImplementedError, OSError, AttributeError, ValueError, TypeError):
        return None


def file_sha256(root: DataRoot, path: str) -> str:
    """sha256 of a file under the root (`path` in the filesystem's own form), streamed."""
    if root.is_local:
        return sha256_file(path)
    h = hashlib.sha256()
    with root.fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
