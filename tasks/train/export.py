"""The splits as files: ``<out>/<split>/<class>/<image_id>.jpg`` (what the TV100 archive
ships) and ``<out>/<split>.csv`` (open_clip's CSV format)."""

from __future__ import annotations

import csv
import filecmp
import io
import os
import posixpath
import re
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.atomic import atomic_path
from tv100.storage.root import DataRoot
from tv100.tasks.exports.config import KINDS
from tv100.tasks.train.config import EXPORT_DIR

#: The caption open_clip's trainer reads for each image (the paper's zero-shot prompt).
CAPTION = "a photo of the TV series {}"


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return s[:60] or "series"


def class_dirname(class_index: int, title: str) -> str:
    """Folder name of a class in the exported layout: ``007_The_Jade_Lantern``."""
    return f"{class_index:03d}_{_slug(title)}"


def _csv_bytes(rows: list[tuple[str, str]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["filepath", "title"])
    w.writerows(sorted(rows))
    return buf.getvalue().encode()


@dataclass(frozen=True)
class _Export:
    """What an export folder must hold, relative to it: image files (their source in the
    image store) and the CSVs (their bytes)."""

    images: dict[str, str]
    csvs: dict[str, bytes]
    counts: dict[str, int]

    def entries(self) -> set[str]:
        """Every file and folder of the export, relative to it (``/``-separated)."""
        classes = {posixpath.dirname(f) for f in self.images}  # <split>/<class>
        splits = {posixpath.dirname(c) for c in classes}
        return set(self.images) | set(self.csvs) | classes | splits


def _plan(
    data_dir: str, splits: pa.Table, images: pa.Table, titles: Mapping[str, str], out_dir: str
) -> _Export:
    path_of = dict(
        zip(images.column("image_id").to_pylist(), images.column("path").to_pylist(),
            strict=True)
    )
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    by_split: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in splits.to_pylist():
        title = titles[r["series_id"]]
        rel = posixpath.join(r["split"], class_dirname(r["class_index"], title),
                             f"{r['image_id']}.jpg")
        files[rel] = os.path.join(data_dir, path_of[r["image_id"]])
        # The path the file has once the export is in place (never the temp folder's).
        final = os.path.abspath(os.path.join(out_dir, *rel.split("/")))
        by_split[r["split"]].append((final, CAPTION.format(title)))
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    csvs = {f"{split}.csv": _csv_bytes(rows) for split, rows in by_split.items()}
    return _Export(files, csvs, counts)


def same_file(src: str, dst: str) -> bool:
    """Whether `dst` is `src` (a hard link) or a byte-equal copy of it."""
    if os.path.samefile(src, dst):
        return True
    return os.path.getsize(src) == os.path.getsize(dst) and filecmp.cmp(src, dst, shallow=False)


def _in_place(export: _Export, out_dir: str) -> bool:
    """Whether `out_dir` already holds exactly `export`: the same files and folders, each
    image the store's file (or an equal copy), each CSV byte-equal. Reads the CSVs and
    stats the images; copies (no hard links) are compared byte by byte."""
    if not os.path.isdir(out_dir):
        return False
    found: set[str] = set()
    for parent, dirs, files in os.walk(out_dir):
        rel = os.path.relpath(parent, out_dir)
        prefix = "" if rel == os.curdir else rel.replace(os.sep, "/") + "/"
        found.update(prefix + name for name in [*dirs, *files])
    found = {f for f in found if f.split("/", 1)[0] not in KINDS}  # `tv100 export`'s
    if found != export.entries():
        return False
    try:
        for rel, content in export.csvs.items():
            with open(os.path.join(out_dir, rel), "rb") as f:
                if f.read() != content:
                    return False
        return all(same_file(src, os.path.join(out_dir, *rel.split("/")))
                   for rel, src in export.images.items())
    except OSError:  # a file gone, unreadable or not a file: rebuild
        return False


def place_file(src: str, dst: str) -> None:
    """`dst` becomes a hard link to `src` (no extra space), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def export_imagefolder(
    data_dir: str, splits: pa.Table, images: pa.Table, titles: Mapping[str, str], out_dir: str
) -> dict[str, int]:
    """Write ``<out>/<split>/<class>/<image_id>.jpg`` and ``<out>/<split>.csv``
    (tab-separated ``filepath``/``title``), exactly the rows of `splits`.

    The whole folder is rebuilt in a temp folder beside it and swapped in atomically
    (`tv100.storage.atomic.atomic_path`), so the export never keeps files of an earlier
    split and a crash leaves the old export or the new one, whole. A folder that already
    holds exactly this export is left untouched: a rerun with the same splits writes nothing.
    Files are hard links into the image store when possible, else copies. The folders of
    ``tv100 export`` in it (`tv100.tasks.exports.config.KINDS`) are kept as they are (hard
    links into the new folder), and never make the export differ.

    Args:
        data_dir: the local data root folder (image paths are relative to it).
        splits: the `splits` table.
        images: image_id, path (relative to `data_dir`).
        titles: series id → title (the class folder name and the caption).
        out_dir: where the export goes (replaced whole).

    Returns:
        Images exported per split.
    """
    export = _plan(data_dir, splits, images, titles, out_dir)
    if _in_place(export, out_dir):
        return export.counts
    with atomic_path(out_dir, replace_dir=True) as tmp:
        os.makedirs(tmp)
        for kind in KINDS:
            if os.path.isdir(os.path.join(out_dir, kind)):
                shutil.copytree(os.path.join(out_dir, kind), os.path.join(tmp, kind),
                                copy_function=place_file)
        for rel, src in export.images.items():
            dst = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            place_file(src, dst)
        for rel, content in export.csvs.items():
            with open(os.path.join(tmp, rel), "wb") as f:
                f.write(content)
    return export.counts


def export_splits(
    root: DataRoot, splits: pa.Table, items: pa.Table, classnames: Sequence[str]
) -> dict[str, int] | None:
    """`export_imagefolder` into ``<root>/export/``; None for a remote root (not exported).

    Args:
        root: the data root.
        splits: the `splits` table.
        items: image_id, series_id, class_index, path of every split image.
        classnames: class names in class-index order.
    """
    if not root.is_local:
        return None
    titles = dict(zip(items.column("series_id").to_pylist(),
                      [classnames[c] for c in items.column("class_index").to_pylist()],
                      strict=True))
    return export_imagefolder(root.path(), splits, items, titles, root.path(EXPORT_DIR))


@task(name="export-splits", cache_policy=NO_CACHE)
def export_splits_task(
    root: DataRoot, splits: pa.Table, items: pa.Table, classnames: list[str]
) -> dict[str, int] | None:
    """`export_splits` (uncached: it rebuilds the folder only when it differs)."""
    return export_splits(root, splits, items, classnames)
