"""The splits as files: ``<out>/<split>/<class>/<image_id>.jpg`` (what the TV100 archive
ships) and ``<out>/<split>.csv`` (open_clip's CSV format)."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.atomic import atomic_path, write_file_atomic
from tv100.storage.root import DataRoot
from tv100.tasks.train.config import EXPORT_DIR

#: The caption open_clip's trainer reads for each image (the paper's zero-shot prompt).
CAPTION = "a photo of the TV series {}"


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return s[:60] or "series"


def class_dirname(class_index: int, title: str) -> str:
    """Folder name of a class in the exported layout: ``007_The_Jade_Lantern``."""
    return f"{class_index:03d}_{_slug(title)}"


def _place(src: str, dst: str) -> None:
    """`dst` becomes a hard link to `src` (no extra space), else a copy; either appears
    whole or not at all, so an interrupted export never leaves half an image."""
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _csv_bytes(rows: list[tuple[str, str]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["filepath", "title"])
    w.writerows(sorted(rows))
    return buf.getvalue().encode()


def export_imagefolder(
    data_dir: str, splits: pa.Table, images: pa.Table, titles: Mapping[str, str], out_dir: str
) -> dict[str, int]:
    """Write ``<out>/<split>/<class>/<image_id>.jpg`` and ``<out>/<split>.csv``
    (tab-separated ``filepath``/``title``).

    Files are hard links into the image store when possible, else copies. The CSVs are
    written last, atomically, so a complete CSV means a complete folder.

    Args:
        data_dir: the local data root folder (image paths are relative to it).
        splits: the `splits` table.
        images: image_id, path (relative to `data_dir`).
        titles: series id → title (the class folder name and the caption).
        out_dir: where the export goes.

    Returns:
        Images exported per split.
    """
    path_of = dict(
        zip(images.column("image_id").to_pylist(), images.column("path").to_pylist(),
            strict=True)
    )
    counts: dict[str, int] = {}
    by_split: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in splits.to_pylist():
        title = titles[r["series_id"]]
        folder = os.path.join(out_dir, r["split"], class_dirname(r["class_index"], title))
        os.makedirs(folder, exist_ok=True)
        dst = os.path.join(folder, f"{r['image_id']}.jpg")
        if not os.path.exists(dst):
            _place(os.path.join(data_dir, path_of[r["image_id"]]), dst)
        by_split[r["split"]].append((os.path.abspath(dst), CAPTION.format(title)))
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    for split, rows in by_split.items():
        write_file_atomic(os.path.join(out_dir, f"{split}.csv"), _csv_bytes(rows))
    return counts


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
    """`export_splits` (uncached: it only links what is missing)."""
    return export_splits(root, splits, items, classnames)
