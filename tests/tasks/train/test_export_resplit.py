"""The export is rebuilt, not patched (issue 17, defect 2): after a re-split, ``export/``
holds exactly the current `splits` rows, nothing of the earlier split; an unchanged split
rewrites nothing; an interrupted export leaves the previous one whole."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pyarrow as pa
import pytest

from tests.support.reliability import record
from tv100.storage.atomic import is_temp
from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.tasks.train import export as export_mod
from tv100.tasks.train.config import EXPORT_DIR, SplitConfig
from tv100.tasks.train.export import export_splits
from tv100.tasks.train.splits import make_splits

SERIES = {"tt01": ("The Jade Lantern", 24), "tt02": ("Bravo", 17), "tt03": ("Charlie", 9)}


@pytest.fixture
def stored(tmp_path) -> tuple[DataRoot, pa.Table, list[str]]:
    """A data root whose image store holds every image of three classes: (root, items with
    their store paths, class names)."""
    root = DataRoot(str(tmp_path / "data")).ensure()
    store = ImageStore(root)
    rows = []
    for ci, (sid, (_, n)) in enumerate(sorted(SERIES.items())):
        for k in range(n):
            image_id = f"{sid}-{k:03d}"
            _, rel = store.put(f"jpeg bytes of {image_id}".encode(), "jpg")
            rows.append({"image_id": image_id, "series_id": sid, "class_index": ci,
                         "path": rel})
    names = [SERIES[s][0] for s in sorted(SERIES)]
    return root, pa.Table.from_pylist(rows), names


def _exported_ids(out: Path) -> dict[str, list[str]]:
    """Image ids of every file under each split folder (duplicates kept, to count them)."""
    found: dict[str, list[str]] = {}
    for split in sorted(p.name for p in out.iterdir() if p.is_dir()):
        found[split] = sorted(f.stem for f in (out / split).rglob("*") if f.is_file())
    return found


def _csv_ids(out: Path, split: str) -> list[str]:
    with open(out / f"{split}.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:  # every path is the final one, under its split's folder, and exists
        assert Path(r["filepath"]).is_file(), r
        assert Path(r["filepath"]).relative_to(out / split), r
    return sorted(Path(r["filepath"]).stem for r in rows)


def _rows_by_split(splits: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in splits.to_pylist():
        out.setdefault(r["split"], []).append(r["image_id"])
    return {k: sorted(v) for k, v in sorted(out.items())}


def _stale(out: Path, splits: pa.Table) -> int:
    """Files under the split folders that are not their split's rows (leaked or left)."""
    expected = {(s, i) for s, ids in _rows_by_split(splits).items() for i in ids}
    return sum(1 for s, ids in _exported_ids(out).items() for i in ids if (s, i) not in expected)


def _assert_export_is(out: Path, splits: pa.Table) -> None:
    expected = _rows_by_split(splits)
    assert _exported_ids(out) == expected  # count and ids, per split
    seen: dict[str, str] = {}
    for split, ids in _exported_ids(out).items():
        for image_id in ids:
            assert image_id not in seen, f"{image_id} in both {seen[image_id]} and {split}"
            seen[image_id] = split
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(
        f"{s}.csv" for s in expected)
    for split, ids in expected.items():
        assert _csv_ids(out, split) == ids


def test_a_resplit_replaces_the_export(stored):
    root, items, names = stored
    out = Path(root.path(EXPORT_DIR))
    first = make_splits(items, SplitConfig(seed=0))
    export_splits(root, first, items, names)
    _assert_export_is(out, first)

    second = make_splits(items, SplitConfig(seed=1))
    moved = {i for i in _rows_by_split(first)["test"]} - set(_rows_by_split(second)["test"])
    assert moved, "seed 1 must move some test images of seed 0 to another split"
    counts = export_splits(root, second, items, names)
    stale = _stale(out, second)
    record("export", "re-split (another seed), export again", f"{stale} stale files",
           lost=stale)
    assert counts == {k: len(v) for k, v in _rows_by_split(second).items()}
    _assert_export_is(out, second)  # no image of the earlier split left anywhere

    # Splits without a val part: the val folder and CSV of the earlier export are gone.
    third = make_splits(items, SplitConfig(val_ratio=0.0, seed=2))
    export_splits(root, third, items, names)
    _assert_export_is(out, third)
    assert not (out / "val").exists() and not (out / "val.csv").exists()
    assert not [p for p in os.listdir(root.path()) if is_temp(p)]


def _state(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of the export folder and of everything in it."""
    paths = [out, *sorted(out.rglob("*"))]
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def test_the_same_splits_again_write_nothing(stored):
    root, items, names = stored
    out = Path(root.path(EXPORT_DIR))
    splits = make_splits(items)
    counts = export_splits(root, splits, items, names)
    before = _state(out)
    assert export_splits(root, splits, items, names) == counts
    assert _state(out) == before  # not one file, folder or CSV rewritten


def test_an_export_that_differs_from_the_splits_is_rebuilt(stored):
    root, items, names = stored
    out = Path(root.path(EXPORT_DIR))
    splits = make_splits(items)
    export_splits(root, splits, items, names)
    stray = out / "train" / "000_Bravo" / "tt09-000.jpg"
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"not in any split")
    (out / "test.csv").write_bytes(b"filepath\ttitle\n")
    victim = next((out / "val").rglob("*.jpg"))
    victim.unlink()
    export_splits(root, splits, items, names)
    _assert_export_is(out, splits)


def test_an_interrupted_export_leaves_the_previous_one(stored, monkeypatch):
    root, items, names = stored
    out = Path(root.path(EXPORT_DIR))
    first = make_splits(items, SplitConfig(seed=0))
    export_splits(root, first, items, names)
    calls = []

    def place_then_die(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 5:
            raise OSError(28, "No space left on device", dst)
        os.link(src, dst)

    monkeypatch.setattr(export_mod, "place_file", place_then_die)
    with pytest.raises(OSError, match="No space left"):
        export_splits(root, make_splits(items, SplitConfig(seed=1)), items, names)
    _assert_export_is(out, first)
    assert not [p for p in os.listdir(root.path()) if is_temp(p)]
