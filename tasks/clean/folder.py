"""Duplicates in any folder of images, outside a data root: the core of ``tv100 dedupe``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from tv100.storage.atomic import atomic_path
from tv100.storage.schemas import DEDUPE_FOLDER
from tv100.tasks.clean.config import CLEAN, HashConfig, NearDupConfig
from tv100.tasks.clean.groups import KIND_RANK, Group, duplicate_groups, image_meta
from tv100.tasks.clean.hashing import hash_files


@dataclass(frozen=True)
class Unreadable:
    """A file that could not be listed, read or decoded (it never stops the run).

    The fields are named as the JSON object ``tv100 dedupe`` prints for it.

    Attributes:
        unreadable: the file's path.
        reason: why, as ``"TypeName: message"``.
    """

    unreadable: str
    reason: str | None


@dataclass(frozen=True)
class FolderDuplicate:
    """A file of a group that is not kept, and the pair that links it to the group."""

    path: str
    kind: str  # exact | phash | dhash
    distance: float
    matched: str  # the file `kind` and `distance` refer to


@dataclass(frozen=True)
class FolderGroup:
    """One group of duplicates: the kept file and the others.

    The fields are named as the JSON object ``tv100 dedupe`` prints for it.

    Attributes:
        group: the group's number, 0, 1, ... in order of its first file.
        kept: the file kept (the largest, w*h, ties broken by path).
        duplicates: the other files, in path order.
        kind: the kinds among `duplicates`, strongest first, comma-joined.
        distance: the largest distance among `duplicates`.
    """

    group: int
    kept: str
    duplicates: tuple[FolderDuplicate, ...]
    kind: str
    distance: float


def _image_files(directory: str, extensions: set[str]) -> tuple[list[str], list[Unreadable]]:
    files: list[str] = []
    errors: list[Unreadable] = []

    def onerror(err: OSError) -> None:
        errors.append(
            Unreadable(err.filename or directory, f"{type(err).__name__}: {err.strerror}")
        )

    for dirpath, dirnames, filenames in os.walk(directory, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                files.append(os.path.join(dirpath, name))
    return files, errors


def dedupe_folder(
    directory: str | os.PathLike[str],
    threshold: int = CLEAN.phash_threshold,
    out: str | os.PathLike[str] | None = None,
    workers: int = CLEAN.workers,
) -> Iterator[Unreadable | FolderGroup]:
    """Find duplicate images in any folder (recursively).

    Files are those with an image extension Pillow knows (hidden files and folders are
    skipped). Within a group the largest image (w*h) is kept, ties broken by path.

    Args:
        directory: the folder.
        threshold: pHash Hamming threshold (0..32).
        out: a ``.parquet`` path: one `DEDUPE_FOLDER` row per file (hashes, group, kept),
            written atomically before the first result is yielded.
        workers: hashing processes.

    Yields:
        First an `Unreadable` per file that could not be read or decoded, then a
        `FolderGroup` per group of duplicates.

    Raises:
        NotADirectoryError: when `directory` is not a folder.
        ValueError: for an invalid threshold, workers or out path.
    """
    top = os.fspath(directory)
    if not os.path.isdir(top):
        raise NotADirectoryError(f"dedupe: {top!r} is not a folder; expected a folder of images")
    if out is not None and not os.fspath(out).endswith(".parquet"):
        raise ValueError(f"dedupe: out={os.fspath(out)!r}; expected a path ending in .parquet")
    cfg = NearDupConfig(
        phash_threshold=threshold,
        dhash_phash_max=max(threshold, NearDupConfig.dhash_phash_max),
        drop_cross_series=False,
    )
    hcfg = HashConfig(workers=workers)
    return _dedupe_folder(top, cfg, hcfg, None if out is None else os.fspath(out))


def _dedupe_folder(
    top: str, cfg: NearDupConfig, hcfg: HashConfig, out: str | None
) -> Iterator[Unreadable | FolderGroup]:
    extensions = {e.lower() for e in Image.registered_extensions()}
    paths, walk_errors = _image_files(top, extensions)
    hashes = hash_files([(p, p) for p in paths], hcfg)
    # Unreadable files are reported as such, not grouped (even byte-identical ones).
    ok = pc.equal(hashes.column("status"), "ok")
    sha = pc.if_else(ok, hashes.column("sha256"), pa.scalar(None, pa.string()))
    meta = image_meta(
        hashes.set_column(hashes.schema.get_field_index("sha256"), "sha256", sha), None
    )
    groups = duplicate_groups(meta, cfg)
    if out is not None:
        with atomic_path(out) as tmp:
            pq.write_table(_folder_table(hashes, paths, groups), tmp, compression="zstd")

    yield from walk_errors
    for r, (status, err) in enumerate(
        zip(
            hashes.column("status").to_pylist(),
            hashes.column("error_message").to_pylist(),
            strict=True,
        )
    ):
        if status != "ok":
            yield Unreadable(paths[r], err)
    for n, g in enumerate(groups):
        assert g.kept is not None  # drop_cross_series is off: every group keeps one
        dups = tuple(
            FolderDuplicate(paths[row], kind, dist, paths[m]) for row, m, kind, dist in g.dropped
        )
        kinds = sorted({d.kind for d in dups}, key=KIND_RANK.__getitem__)
        yield FolderGroup(
            group=n,
            kept=paths[g.kept],
            duplicates=dups,
            kind=",".join(kinds),
            distance=max(d.distance for d in dups),
        )


def _folder_table(hashes: pa.Table, paths: list[str], groups: list[Group]) -> pa.Table:
    """The `DEDUPE_FOLDER` table: every file's hashes, and its group when it has one."""
    per_file: dict[int, dict[str, Any]] = {}
    for n, g in enumerate(groups):
        assert g.kept is not None
        per_file[g.kept] = {"group": n, "kept": True, "kept_path": paths[g.kept]}
        for row, _matched, kind, dist in g.dropped:
            per_file[row] = {
                "group": n,
                "kept": False,
                "kept_path": paths[g.kept],
                "kind": kind,
                "distance": dist,
            }
    rows = []
    for r, rec in enumerate(hashes.to_pylist()):
        rec.pop("image_id")
        rows.append(
            {
                **rec,
                "path": paths[r],
                "group": None,
                "kept": None,
                "kept_path": None,
                "kind": None,
                "distance": None,
                **per_file.get(r, {}),
            }
        )
    return pa.Table.from_pylist(rows, schema=DEDUPE_FOLDER)
