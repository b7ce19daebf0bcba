"""The ImageFolder + CSV export of the splits."""

from __future__ import annotations

import csv
import os

import pyarrow as pa

from tv100.storage.root import DataRoot
from tv100.tasks.train.export import export_imagefolder, export_splits
from tv100.tasks.train.splits import make_splits


def items(counts: dict[str, int]) -> pa.Table:
    rows = [
        {"image_id": f"{s}-{i:03d}", "series_id": s, "class_index": ci}
        for ci, (s, n) in enumerate(sorted(counts.items())) for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def test_export_imagefolder_and_csv(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    t = items({"tt1": 3, "tt2": 2})
    paths = []
    for r in t.to_pylist():
        p = f"images/{r['image_id']}.jpg"
        (data / p).write_bytes(b"jpeg" + r["image_id"].encode())
        paths.append(p)
    images = pa.table({"image_id": t.column("image_id"), "path": paths})
    splits = make_splits(t)
    counts = export_imagefolder(str(data), splits, images, {"tt1": "The Show", "tt2": "B"},
                                str(tmp_path / "out"))
    assert sum(counts.values()) == 5
    assert sorted(os.listdir(tmp_path / "out" / "test")) == ["000_The_Show", "001_B"]
    with open(tmp_path / "out" / "test.csv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert {r["title"] for r in rows} == {"a photo of the TV series The Show",
                                          "a photo of the TV series B"}
    assert all(os.path.exists(r["filepath"]) for r in rows)
    # Nothing but the export: no temp file left, and a second export changes nothing.
    found = sorted(p for _, _, fs in os.walk(tmp_path / "out") for p in fs)
    assert not [p for p in found if p.startswith(".tmp-")]
    before = (tmp_path / "out" / "test.csv").read_bytes()
    assert export_imagefolder(str(data), splits, images, {"tt1": "The Show", "tt2": "B"},
                              str(tmp_path / "out")) == counts
    assert (tmp_path / "out" / "test.csv").read_bytes() == before


def test_export_splits_under_the_root_and_not_on_remote_roots(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    t = items({"tt1": 3})
    os.makedirs(root.path("images"))
    paths = []
    for r in t.to_pylist():
        p = f"images/{r['image_id']}.jpg"
        with open(root.path(p), "wb") as f:
            f.write(b"jpeg")
        paths.append(p)
    full = t.append_column("path", pa.array(paths))
    splits = make_splits(t)
    assert sum(export_splits(root, splits, full, ["Show"]).values()) == 3
    assert os.path.isfile(root.path("export/test.csv"))
    assert export_splits(DataRoot("memory://h5-export"), splits, full, ["Show"]) is None
