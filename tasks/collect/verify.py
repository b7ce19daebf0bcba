"""Collect: the stored image files checked against their `images` rows before downloading.

An ``ok`` row of the `images` table promises a file in the image store: `path`, `bytes`
long, whose sha256 is `sha256`. A file deleted or changed since (by hand, by a disk, by a
partial copy of the data root) would otherwise stay ``ok`` here and fail every later stage
(a ``decode_error`` in clean), changing the classes silently. `verify_images` checks every
stored file an ``ok`` row names, cheapest first:

1. that it exists, with the row's size: one ``stat`` per file (rows of the same image share
   one file: the store is content-addressed);
2. its sha256, only for a file modified after the row's `downloaded_at` (a file is written
   before its row is stamped), unless the `image_files` table (`IMAGE_FILES`) records it
   hashed and intact at its current size and modification time: each such file is hashed
   once, not every run.

A missing file's rows are dropped from `images`; so are a changed file's, and the file is
removed (its name states a hash its bytes no longer have, and the store never rewrites a name
it has). The download step then downloads those hits again, as any hit without a row
(`tv100.tasks.collect.shards.pending_hits`): their rows come back with their new outcome.
On a data root that is not a local folder only existence and size are checked (hashing would
read every file back over the network).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot, file_sha256
from tv100.storage.schemas import IMAGE_FILES
from tv100.storage.tables import compact, done_shards, read_table, table_exists, write_table
from tv100.tasks.collect.shards import SORT_KEYS

log = logging.getLogger("tv100.verify")

FILES_TABLE = "image_files"
"""The table of files hashed again and found intact (`IMAGE_FILES`)."""


@dataclass(frozen=True)
class ImageCheck:
    """What `verify_images` found.

    Attributes:
        files: stored files checked (those of ``ok`` rows).
        hashed: of them, files hashed (modified since their download, not yet re-checked).
        missing: files not there any more.
        changed: files of another size, or whose bytes no longer have their sha256.
        rows_dropped: ``ok`` rows dropped from `images` (their hits are downloaded again).
    """

    files: int = 0
    hashed: int = 0
    missing: int = 0
    changed: int = 0
    rows_dropped: int = 0

    @property
    def message(self) -> str:
        """One line for the log: what was wrong and what happens now."""
        return (
            f"images: {self.missing} stored files missing and {self.changed} changed "
            f"(of {self.files}; changed ones removed); their {self.rows_dropped} rows were "
            "dropped and are downloaded again"
        )


@dataclass(frozen=True)
class _Expected:
    """What the ``ok`` rows naming one stored file say about it."""

    bytes: int
    sha256: str
    downloaded_ns: int  # the earliest row's downloaded_at, in ns since the epoch


def _expected_files(images: pa.Table) -> dict[str, _Expected]:
    ok = images.filter(pc.equal(images.column("status"), "ok"))
    stamped = pc.multiply(ok.column("downloaded_at").cast(pa.int64()), 1000)  # us -> ns
    out: dict[str, _Expected] = {}
    rows = zip(
        ok.column("path").to_pylist(),
        ok.column("bytes").to_pylist(),
        ok.column("sha256").to_pylist(),
        stamped.to_pylist(),
        strict=True,
    )
    for path, nbytes, sha, ns in rows:
        if path is None:
            continue
        ns = ns if ns is not None else 0  # no stamp: any modification time means hashing
        cur = out.get(path)
        if cur is None or ns < cur.downloaded_ns:
            out[path] = _Expected(int(nbytes or 0), str(sha), ns)
    return out


def _stat(root: DataRoot, path: str) -> tuple[int, int | None] | None:
    """(size, modification time in ns; None off a local root) of a stored file; None if gone."""
    full = root.path(path)
    if root.is_local:
        try:
            st = os.stat(full)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns
    if not root.fs.exists(full):
        return None
    return int(root.fs.size(full)), None


def _records(root: DataRoot) -> dict[str, tuple[int, int, str]]:
    if not table_exists(root, FILES_TABLE):
        return {}
    rows = read_table(root, FILES_TABLE).to_pylist()
    return {r["path"]: (r["bytes"], r["mtime_ns"], r["sha256"]) for r in rows}


def _check(
    root: DataRoot,
    path: str,
    want: _Expected,
    records: dict[str, tuple[int, int, str]],
    kept: dict[str, tuple[int, int, str]],
) -> tuple[str, bool]:
    """("ok" | "missing" | "changed", whether the file was hashed); fills `kept`."""
    found = _stat(root, path)
    if found is None:
        return "missing", False
    size, mtime_ns = found
    if size != want.bytes:
        return "changed", False
    if mtime_ns is None or mtime_ns <= want.downloaded_ns:
        return "ok", False  # not modified since its download (or no time to tell by)
    record = (size, mtime_ns, want.sha256)
    if records.get(path) == record:
        kept[path] = record
        return "ok", False
    if file_sha256(root, root.path(path)) != want.sha256:
        return "changed", True
    kept[path] = record
    return "ok", True


def _write_records(root: DataRoot, kept: dict[str, tuple[int, int, str]], had: bool) -> None:
    if not kept and not had:
        return
    rows = [
        {"path": p, "bytes": b, "mtime_ns": m, "sha256": s}
        for p, (b, m, s) in sorted(kept.items())
    ]
    write_table(root, FILES_TABLE, pa.Table.from_pylist(rows, schema=IMAGE_FILES))


def drop_image_rows(root: DataRoot, paths: set[str]) -> int:
    """Drop the ``ok`` rows of `images` naming one of `paths`; how many were dropped.

    The table is compacted first (its done shards folded in), then written whole without
    the record of the shards it absorbed: a shard written later for the same hits (same
    content-derived id) must not pass for one already folded in.
    """
    if done_shards(root, "images"):
        compact(root, "images", SORT_KEYS)
    images = read_table(root, "images")
    gone = pc.and_(
        pc.equal(images.column("status"), "ok"),
        pc.is_in(images.column("path"), value_set=pa.array(sorted(paths), pa.string())),
    )
    gone = pc.fill_null(gone, False)
    dropped = int(pc.sum(gone).as_py() or 0)
    if dropped:
        kept = images.filter(pc.invert(gone)).replace_schema_metadata(None)
        write_table(root, "images", kept)
    return dropped


def verify_images(root: DataRoot) -> ImageCheck:
    """Check every stored file of an ``ok`` `images` row; drop the rows of bad ones.

    See the module docstring for the order of the checks. Nothing is written when every
    file is as its rows say (the `image_files` table only changes when a file was hashed).

    Args:
        root: the data root (the `images` table and the image store).

    Returns:
        What was checked and found; `ImageCheck.rows_dropped` hits are downloaded again by
        the next download step.
    """
    if not table_exists(root, "images"):
        return ImageCheck()
    columns = ["status", "path", "bytes", "sha256", "downloaded_at"]
    expected = _expected_files(read_table(root, "images").select(columns))
    records = _records(root)
    kept: dict[str, tuple[int, int, str]] = {}
    missing: list[str] = []
    changed: list[str] = []
    hashed = 0
    for path, want in sorted(expected.items()):
        verdict, did_hash = _check(root, path, want, records, kept)
        hashed += did_hash
        if verdict == "missing":
            missing.append(path)
        elif verdict == "changed":
            changed.append(path)
    for path in changed:  # its name lies about its bytes: the download writes it again
        log.debug("images: %s is not the file its rows stored; removed", path)
        root.fs.rm(root.path(path))
    dropped = drop_image_rows(root, set(missing) | set(changed)) if missing or changed else 0
    _write_records(root, kept, had=bool(records))
    return ImageCheck(len(expected), hashed, len(missing), len(changed), dropped)


@task(name="verify-images", cache_policy=NO_CACHE)
def verify_images_task(root: DataRoot) -> ImageCheck:
    """Uncached: it looks at the files as they are now. Warns when rows were dropped."""
    check = verify_images(root)
    if check.rows_dropped:
        get_run_logger().warning(check.message)
    return check
