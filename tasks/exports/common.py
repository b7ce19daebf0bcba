"""What every export shares: the split images of a data root with their classes and
series, and writing a kind's folder whole (atomically, and not at all when it already holds
exactly what it should)."""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.atomic import atomic_path
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table
from tv100.tasks.exports.config import EXPORT_INPUTS, KindResult, kind_dir
from tv100.tasks.prerequisites import require_tables
from tv100.tasks.train.config import SPLIT_NAMES
from tv100.tasks.train.export import class_dirname, place_file, same_file

#: A file's content: its bytes, or a function making them (a shard built on demand).
Content = bytes | Callable[[], bytes]


@dataclass(frozen=True)
class ExportClass:
    """One class of the export.

    Attributes:
        index: its class index (0..K-1).
        series_id: the IMDb id of its series.
        title: the series' title (the `classes` table's).
        dirname: its folder name in every layout (`tv100.tasks.train.export.class_dirname`).
        start_year: the series' first year, if known.
        countries: the series' countries, in the `series` table's order.
    """

    index: int
    series_id: str
    title: str
    dirname: str
    start_year: int | None
    countries: tuple[str, ...]


@dataclass(frozen=True)
class ExportImage:
    """One split image: its id, class index, split (train, val or test) and stored file."""

    image_id: str
    class_index: int
    split: str
    source: str


@dataclass(frozen=True)
class ExportItems:
    """Every split image of a data root and the classes (by index).

    The images are held as a table (`table`: image_id, class_index, split, source, sorted
    by image id), which Prefect passes to a task as it is; a tuple of dataclasses it would
    walk item by item to find task inputs (seconds per task for a TV100-sized export).
    `images` reads them as `ExportImage` values.
    """

    classes: tuple[ExportClass, ...]
    table: pa.Table

    @classmethod
    def of(cls, classes: Sequence[ExportClass], images: Iterable[ExportImage]) -> ExportItems:
        """The items of `classes` and `images` (sorted by image id here)."""
        rows = sorted(images, key=lambda i: i.image_id)
        return cls(tuple(classes), pa.table({
            "image_id": pa.array([i.image_id for i in rows], pa.string()),
            "class_index": pa.array([i.class_index for i in rows], pa.int32()),
            "split": pa.array([i.split for i in rows], pa.string()),
            "source": pa.array([i.source for i in rows], pa.string()),
        }))

    @cached_property
    def images(self) -> tuple[ExportImage, ...]:
        """The images, sorted by image id."""
        cols = [self.table.column(c).to_pylist()
                for c in ("image_id", "class_index", "split", "source")]
        return tuple(ExportImage(*row) for row in zip(*cols, strict=True))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def in_splits(self, *splits: str) -> list[ExportImage]:
        """The images of any of `splits`, sorted by image id."""
        return [i for i in self.images if i.split in splits]

    def counts(self) -> dict[str, int]:
        """Images per split (train, val, test; splits without any left out)."""
        n = Counter(i.split for i in self.images)
        return {s: n[s] for s in SPLIT_NAMES if n[s]}


def check_local(root: DataRoot) -> DataRoot:
    """`root` when it is a local folder.

    Raises:
        ValueError: a remote root (exports are files to hard-link and read locally).
    """
    if not root.is_local:
        raise ValueError(
            f"data root {root.url!r} is not local; expected a local folder (exports link the "
            "stored images)"
        )
    return root


def export_items(root: DataRoot) -> ExportItems:
    """The `splits` rows of a data root with their stored files, classes and series.

    Raises:
        ValueError: a table is missing (one line naming the command to run first), the root
            is not local, or `splits` names a class, image or file the other tables lack.
    """
    check_local(root)
    require_tables(root, "export", EXPORT_INPUTS)
    classes = read_table(root, "classes").filter(pc.field("kept"))
    series = {r["series_id"]: r for r in read_table(root, "series").select(
        ["series_id", "start_year", "countries"]).to_pylist()}
    kept: dict[int, ExportClass] = {}
    for r in sorted(classes.select(["class_index", "series_id", "title"]).to_pylist(),
                    key=lambda r: r["class_index"]):
        info = series.get(r["series_id"]) or {}
        title = r["title"] or r["series_id"]
        kept[r["class_index"]] = ExportClass(
            r["class_index"], r["series_id"], title, class_dirname(r["class_index"], title),
            info.get("start_year"), tuple(info.get("countries") or ()))
    if sorted(kept) != list(range(len(kept))) or not kept:
        raise ValueError(
            f"the `classes` table under {root.url!r} keeps class indices {sorted(kept)}; "
            "expected 0..K-1 (rerun `tv100 rank`)"
        )
    splits = read_table(root, "splits").select(["image_id", "class_index", "split"])
    wanted = set(splits.column("image_id").to_pylist())
    images = read_table(root, "images").select(["image_id", "path"])
    path_of = {i: p for i, p in zip(images.column("image_id").to_pylist(),
                                    images.column("path").to_pylist(), strict=True)
               if i in wanted and p}
    rows = []
    for r in sorted(splits.to_pylist(), key=lambda r: r["image_id"]):
        if r["class_index"] not in kept or r["split"] not in SPLIT_NAMES:
            raise ValueError(
                f"`splits` under {root.url!r} has image {r['image_id']} in class "
                f"{r['class_index']}, split {r['split']!r}; expected a kept class and one of "
                f"{', '.join(SPLIT_NAMES)} (rerun `tv100 train`)"
            )
        rel = path_of.get(r["image_id"])
        src = root.path(rel) if rel else None
        if src is None or not os.path.isfile(src):
            raise ValueError(
                f"image {r['image_id']} of `splits` has no stored file under {root.url!r} "
                f"({rel or 'no path in `images`'}); expected the collect stage's file "
                "(rerun `tv100 build`)"
            )
        rows.append(ExportImage(r["image_id"], r["class_index"], r["split"], src))
    if not rows:
        raise ValueError(f"the `splits` table under {root.url!r} is empty; nothing to export")
    return ExportItems.of([kept[i] for i in range(len(kept))], rows)


# -- file contents -----------------------------------------------------------------------------


def _json(value: Any, level: int) -> str:
    pad, end = "  " * (level + 1), "  " * level
    if isinstance(value, dict) and value:
        members = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_json(v, level + 1)}"
                   for k, v in value.items()]
        return "{\n" + ",\n".join(members) + f"\n{end}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(pad + _json(v, level + 1) for v in value) + f"\n{end}]"
    return json.dumps(value, ensure_ascii=False)


def json_bytes(value: Any) -> bytes:
    """`value` as indented JSON with a final newline, a list of plain values on one line
    (a class order stays one line). Stable: the same value gives the same bytes."""
    return (_json(value, 0) + "\n").encode()


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """Comma-separated values with a header line, ``\\n`` line ends; None is empty."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue().encode()


def image_relpath(prefix: str, cls: ExportClass, image: ExportImage) -> str:
    """``<prefix>/<class folder>/<image_id>.jpg`` (the stored images are all JPEG)."""
    return posixpath.join(prefix, cls.dirname, f"{image.image_id}.jpg")


# -- writing a folder whole --------------------------------------------------------------------


@dataclass(frozen=True)
class FolderPlan:
    """What a kind's folder must hold, relative to it (``/``-separated paths).

    Attributes:
        links: files that are stored images: the image store's file (hard-linked, else
            copied).
        files: files with their content (bytes, or a function making them).
        counts: images per split, for the kind's result.
    """

    links: Mapping[str, str]
    files: Mapping[str, Content]
    counts: Mapping[str, int]

    def entries(self) -> set[str]:
        """Every file and folder of the plan."""
        out: set[str] = set()
        for rel in (*self.links, *self.files):
            out.add(rel)
            parent = posixpath.dirname(rel)
            while parent and parent not in out:
                out.add(parent)
                parent = posixpath.dirname(parent)
        return out


def _content(value: Content) -> bytes:
    return value() if callable(value) else value


def _listing(folder: str) -> set[str]:
    found: set[str] = set()
    for parent, dirs, files in os.walk(folder):
        rel = os.path.relpath(parent, folder)
        prefix = "" if rel == os.curdir else rel.replace(os.sep, "/") + "/"
        found.update(prefix + name for name in [*dirs, *files])
    return found


def _equal_bytes(path: str, content: Content) -> bool:
    data = _content(content)
    if os.path.getsize(path) != len(data):
        return False
    with open(path, "rb") as f:
        return f.read() == data


def in_place(folder: str, plan: FolderPlan) -> bool:
    """Whether `folder` holds exactly `plan`: the same files and folders, each image the
    store's file (or an equal copy), each other file byte-equal."""
    if not os.path.isdir(folder) or _listing(folder) != plan.entries():
        return False
    try:
        return (
            all(_equal_bytes(os.path.join(folder, *rel.split("/")), c)
                for rel, c in sorted(plan.files.items()))
            and all(same_file(src, os.path.join(folder, *rel.split("/")))
                    for rel, src in sorted(plan.links.items()))
        )
    except OSError:  # a file gone, unreadable or not a file: rebuild
        return False


def write_folder(folder: str, plan: FolderPlan) -> bool:
    """Make `folder` hold exactly `plan`; return whether it wrote anything.

    A folder already holding it is left untouched (a rerun writes nothing). Otherwise the
    whole folder is built beside it and swapped in (`tv100.storage.atomic.atomic_path`):
    a crash leaves the old folder or the new one, whole, never a mix.
    """
    if in_place(folder, plan):
        return False
    with atomic_path(folder, replace_dir=True) as tmp:
        os.makedirs(tmp)
        for rel in sorted(plan.entries()):
            if rel not in plan.links and rel not in plan.files:
                os.makedirs(os.path.join(tmp, *rel.split("/")), exist_ok=True)
        for rel, src in sorted(plan.links.items()):
            place_file(src, os.path.join(tmp, *rel.split("/")))
        for rel, content in sorted(plan.files.items()):
            with open(os.path.join(tmp, *rel.split("/")), "wb") as f:
                f.write(_content(content))
    return True


def write_kind(root: DataRoot, kind: str, plan: FolderPlan) -> KindResult:
    """`write_folder` into ``<root>/export/<kind>/``; the kind's result."""
    folder = root.path(kind_dir(kind))
    written = write_folder(folder, plan)
    return KindResult(kind, folder, dict(plan.counts), len(plan.links) + len(plan.files),
                      written)


@task(name="export-items", cache_policy=NO_CACHE)
def export_items_task(root: DataRoot) -> ExportItems:
    """`export_items`."""
    return export_items(root)
