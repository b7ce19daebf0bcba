"""Every kind together: a rerun on an unchanged root writes nothing; a changed input
rewrites only the kinds it changes, whole; bad input is one line; the flow and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from tests.tasks.exports.tiny_root import COUNTS, snapshot, write_tiny_root
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SPLITS
from tv100.storage.tables import read_table, write_table
from tv100.tasks.exports import hf, ncd, pycil, wds
from tv100.tasks.exports.common import ExportItems, export_items
from tv100.tasks.exports.config import KINDS, ExportConfig

EXPORTERS = {"pycil": pycil.export_pycil, "ncd": ncd.export_ncd, "hf": hf.export_hf,
             "wds": wds.export_wds}


def _export_all(root, config):
    items = export_items(root)
    return {k: EXPORTERS[k](root, items, config) for k in config.kinds}


def test_a_rerun_writes_nothing_and_a_new_seed_rewrites_only_its_kinds(tiny):
    root, _ = tiny
    config = ExportConfig(seeds=(1993,), shard_size=10)
    first = _export_all(root, config)
    assert all(r.written for r in first.values())
    out = root.path("export")
    before = {k: snapshot(Path(out, k)) for k in KINDS}
    again = _export_all(root, config)
    assert not any(r.written for r in again.values())
    assert {k: snapshot(Path(out, k)) for k in KINDS} == before
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temp left

    changed = _export_all(root, ExportConfig(seeds=(1993, 2), shard_size=10))
    assert {k for k, r in changed.items() if r.written} == {"pycil", "ncd"}
    for kind in ("hf", "wds"):
        assert snapshot(Path(out, kind)) == before[kind]


def test_a_changed_split_and_a_stray_file_are_replaced(tiny):
    root, _ = tiny
    config = ExportConfig(kinds=("hf", "wds"))
    _export_all(root, config)
    stray = root.path("export/hf/train/stray.txt")
    with open(stray, "wb") as f:
        f.write(b"x")
    splits = read_table(root, "splits").to_pylist()
    moved = next(r for r in splits if r["split"] == "val")
    moved["split"] = "test"
    write_table(root, "splits", pa.Table.from_pylist(splits, schema=SPLITS))
    result = _export_all(root, config)
    assert result["hf"].written and result["wds"].written
    assert not os.path.exists(stray)
    assert result["wds"].counts == {"train": COUNTS["train"], "val": COUNTS["val"] - 1,
                                    "test": COUNTS["test"] + 1}
    iid = moved["image_id"]
    def holds(split):
        return any(n == f"{iid}.jpg" for _, _, fs in os.walk(root.path("export/hf", split))
                   for n in fs)

    assert holds("test") and not holds("validation")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kinds": ("pycil", "zip")}, "ExportConfig.kinds: unknown kind 'zip'; expected any of"),
    ({"kinds": ()}, "ExportConfig.kinds is empty"),
    ({"kinds": ("hf", "hf")}, "expected each kind once"),
    ({"seeds": (-1,)}, "ExportConfig.seeds: seed -1; expected an integer in 0..4294967295"),
    ({"seeds": (2**32,)}, "expected an integer in 0..4294967295"),
    ({"seeds": ("7",)}, "seed '7'"),
    ({"seeds": (True,)}, "seed True"),
    ({"seeds": (1, 1)}, "expected each seed once"),
    ({"seeds": ()}, "ExportConfig.seeds is empty"),
    ({"labelled_ratio": 1.0}, "ExportConfig.labelled_ratio=1.0; expected a number with 0 < r"),
    ({"labelled_ratio": float("nan")}, "labelled_ratio=nan"),
    ({"shard_size": 0}, "ExportConfig.shard_size=0; expected an integer in 1..1000000"),
])
def test_bad_config_is_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")) as e:
        ExportConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_missing_tables_and_remote_roots_are_one_line(tmp_path):
    root, _ = write_tiny_root(tmp_path / "data")
    os.remove(root.path("tables/splits.parquet"))
    with pytest.raises(ValueError, match="export reads the `splits` table.*tv100 train") as e:
        export_items(root)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="nothing built here yet"):
        export_items(DataRoot(str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="is not local; expected a local folder"):
        export_items(DataRoot("memory://tv100-export-test"))


def test_one_class_is_refused_for_pycil_and_ncd(tiny):
    root, _ = tiny
    items = export_items(root)
    one = ExportItems.of(items.classes[:1], [i for i in items.images if i.class_index == 0])
    for exporter in (pycil.export_pycil, ncd.export_ncd):
        with pytest.raises(ValueError, match="expected at least 2"):
            exporter(root, one, ExportConfig())


def test_the_train_stage_export_keeps_the_kind_folders(tiny):
    from tv100.tasks.train.export import export_splits

    root, _ = tiny
    _export_all(root, ExportConfig(kinds=("pycil",)))
    items = export_items(root)
    table = pa.table({
        "image_id": [i.image_id for i in items.images],
        "series_id": [items.classes[i.class_index].series_id for i in items.images],
        "class_index": pa.array([i.class_index for i in items.images], pa.int32()),
        "path": [os.path.relpath(i.source, root.path()) for i in items.images]})
    export_splits(root, read_table(root, "splits"), table, [c.title for c in items.classes])
    assert os.path.isfile(root.path("export/pycil/tv100_idata.py"))


def test_prefect_does_not_walk_the_images(tiny):
    """Prefect walks a task's arguments to find its inputs: the images are one table to it,
    not one object per image (seconds per task on a TV100-sized export)."""
    from prefect.utilities.collections import visit_collection

    root, _ = tiny
    items = export_items(root)
    seen = []
    visit_collection(items, lambda x: seen.append(x), return_data=False)
    assert len(items.images) == sum(COUNTS.values())
    assert len(seen) < 10 * len(items.classes) + 10
