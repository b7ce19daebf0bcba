"""Content-addressed image store: ``images/ab/cd/<sha256>.<ext>``.

A file's name is the sha256 of its bytes, so storing the same image twice is a no-op and
a half-written file can never carry a valid name (writes go through temp + rename).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable

from tv100.storage.root import DataRoot, sync_paths, write_bytes_atomic

IMAGES_DIR = "images"
_EXT_RE = re.compile(r"^[a-z0-9]{1,5}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def image_relpath(sha256: str, ext: str) -> str:
    """Relative path of an image with this content hash and extension."""
    if not _SHA_RE.match(sha256):
        raise ValueError(f"sha256 {sha256!r} is invalid; expected 64 lowercase hex digits")
    if not _EXT_RE.match(ext):
        raise ValueError(f"image extension {ext!r} is invalid; expected e.g. 'jpg'")
    return posixpath.join(IMAGES_DIR, sha256[:2], sha256[2:4], f"{sha256}.{ext}")


class ImageStore:
    """Put and read images by content hash under a data root."""

    def __init__(self, root: DataRoot) -> None:
        self.root = root

    def put(self, data: bytes, ext: str, *, sync: bool = True) -> tuple[str, str]:
        """Store `data`; return ``(sha256, relative path)``. Idempotent.

        With ``sync=False`` the file is not fsynced yet: call `sync` on its path before
        anything records it (a downloader syncs a shard's images in one batch).
        """
        sha = hashlib.sha256(data).hexdigest()
        rel = image_relpath(sha, ext)
        if not self.root.fs.exists(self.root.path(rel)):
            write_bytes_atomic(self.root, rel, data, sync=sync)
        return sha, rel

    def sync(self, relpaths: Iterable[str]) -> int:
        """fsync images stored with ``sync=False`` (and their folders); return how many."""
        return sync_paths(self.root, relpaths)

    def read(self, relpath: str) -> bytes:
        with self.root.fs.open(self.root.path(relpath), "rb") as f:
            data: bytes = f.read()
        return data

    def exists(self, relpath: str) -> bool:
        return bool(self.root.fs.exists(self.root.path(relpath)))
