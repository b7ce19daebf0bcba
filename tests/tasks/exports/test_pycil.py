"""The PyCIL export: loaded with the shipped ``tv100_idata.py``, as PyCIL's DataManager
loads a dataset; class orders reproducible from their seeds; the protocols on K classes."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from tests.tasks.exports.tiny_root import COUNTS, DIRNAMES, K
from tv100.tasks.exports.common import ExportItems, export_items
from tv100.tasks.exports.config import ExportConfig
from tv100.tasks.exports.pycil import class_order, export_pycil, protocols, task_sizes


def _import_by_path(path):
    spec = importlib.util.spec_from_file_location("tv100_idata_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_loaded_with_the_shipped_idata_as_pycil_does(tiny, monkeypatch):
    root, labels = tiny
    result = export_pycil(root, export_items(root), ExportConfig(seeds=(1993, 7)))
    out = root.path("export/pycil")
    assert result.counts == {"train": COUNTS["train"] + COUNTS["val"], "test": COUNTS["test"]}
    assert sorted(p for p in __import__("os").listdir(out + "/train")) == DIRNAMES

    monkeypatch.delenv("TV100_PYCIL_ROOT", raising=False)
    module = _import_by_path(f"{out}/tv100_idata.py")
    idata = module.iTV100()  # PyCIL's _get_idata: no arguments; the root is the file's folder
    idata.download_data()
    assert idata.use_path is True
    for data, targets, n in ((idata.train_data, idata.train_targets, result.counts["train"]),
                             (idata.test_data, idata.test_targets, result.counts["test"])):
        assert isinstance(data, np.ndarray) and isinstance(targets, np.ndarray)
        assert data.shape == targets.shape == (n,)
        assert np.issubdtype(targets.dtype, np.integer)
        # each path's label is the class index the `splits` table gives its image
        ids = [p.rsplit("/", 1)[1].removesuffix(".jpg") for p in data]
        assert targets.tolist() == [labels[i] for i in ids]
        assert all(p.startswith(out) for p in data)
    assert sorted(set(idata.train_targets.tolist())) == list(range(K))
    assert idata.class_order == list(range(K))

    # PyCIL's DataManager._setup_data with shuffle=True, then one sample through DummyDataset
    orders = json.loads(open(f"{out}/class_orders.json").read())
    for seed in (1993, 7):
        order = list(range(len(np.unique(idata.train_targets))))
        np.random.seed(seed)
        order = np.random.permutation(len(order)).tolist()
        assert orders["orders"][str(seed)] == order == class_order(K, seed)
        mapped = np.array([order.index(y) for y in idata.train_targets])
        assert sorted(set(mapped.tolist())) == list(range(K))
    from PIL import Image
    from torchvision import transforms

    trsf = transforms.Compose([*idata.test_trsf, *idata.common_trsf])
    with open(idata.test_data[0], "rb") as f:
        image = trsf(Image.open(f).convert("RGB"))
    assert tuple(image.shape) == (3, 224, 224)


def test_the_root_can_be_named_by_the_environment(tiny, monkeypatch, tmp_path):
    root, _ = tiny
    export_pycil(root, export_items(root), ExportConfig())
    copy = tmp_path / "elsewhere.py"
    copy.write_bytes(open(root.path("export/pycil/tv100_idata.py"), "rb").read())
    monkeypatch.setenv("TV100_PYCIL_ROOT", root.path("export/pycil"))
    idata = _import_by_path(str(copy)).iTV100()
    idata.download_data()
    assert len(idata.test_data) == COUNTS["test"]


def test_class_orders_are_pycils_draws_and_leave_numpys_state_alone():
    np.random.seed(5)
    expected_next = np.random.rand()
    np.random.seed(5)
    assert class_order(100, 1993) == np.random.RandomState(1993).permutation(100).tolist()
    assert np.random.rand() == expected_next  # the global generator was not reseeded


@pytest.mark.parametrize(("k", "b0", "b50"), [
    (100, [10] * 10, [50, 10, 10, 10, 10, 10]),
    (25, [10, 10, 5], [12, 10, 3]),  # a count not divisible: a smaller last task
    (5, [5], [2, 3]),  # fewer classes than an increment: the increment is capped
])
def test_protocols_on_k_classes(k, b0, b50):
    p0, p50 = protocols(k, (1993, 7))
    assert p0["protocol"] == "B0-Inc10" and p0["task_sizes"] == b0
    assert p50["protocol"] == "B50-Inc10" and p50["task_sizes"] == b50
    for p in (p0, p50):
        assert p["num_tasks"] == len(p["task_sizes"]) and sum(p["task_sizes"]) == k
        assert p["exps"] == {"dataset": "tv100", "init_cls": p["init_cls"],
                             "increment": p["increment"], "shuffle": True, "seed": [1993, 7]}
        # PyCIL's DataManager cuts the same tasks from init_cls and increment
        assert task_sizes(k, p["init_cls"], p["increment"]) == p["task_sizes"]


def test_files_and_readme(tiny):
    root, _ = tiny
    export_pycil(root, export_items(root), ExportConfig(seeds=(3,)))
    out = root.path("export/pycil")
    proto = json.loads(open(f"{out}/protocols.json").read())
    assert proto["num_classes"] == K and [p["protocol"] for p in proto["protocols"]] == [
        "B0-Inc10", "B50-Inc10"]
    readme = open(f"{out}/README.md").read()
    assert "Seeds: 3." in readme and "TV100_PYCIL_ROOT" in readme
    src = open(f"{out}/tv100_idata.py").read()
    imports = {line.split()[1] for line in src.splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "os", "typing", "numpy", "torchvision"}


def test_a_class_missing_from_test_is_refused(tiny):
    root, _ = tiny
    items = export_items(root)
    items = ExportItems.of(items.classes, [i for i in items.images
                                           if not (i.class_index == 2 and i.split == "test")])
    with pytest.raises(ValueError, match="002_Salt_Harbour has no test image"):
        export_pycil(root, items, ExportConfig())
