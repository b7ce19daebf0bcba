"""Class-incremental learning: the splits in PyCIL's layout (``export/pycil/``), its
dataset class (``tv100_idata.py``), seeded class orders and the common protocols."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.tasks.exports.common import (
    ExportItems,
    FolderPlan,
    image_relpath,
    json_bytes,
    write_kind,
)
from tv100.tasks.exports.config import ExportConfig, KindResult, kind_dir

KIND = "pycil"
IDATA_FILE = "tv100_idata.py"
#: PyCIL's dataset name for TV100 (the ``"dataset"`` of its exps JSON).
DATASET_NAME = "tv100"
#: Where each of our splits goes in PyCIL's two: validation is folded into train.
SPLIT_OF = {"train": "train", "val": "train", "test": "test"}
#: The protocols, as on the paper's 100 classes: ``(name, base share of the classes,
#: classes per later task)``. ``B0-Inc10``: 10 classes per task from the start;
#: ``B50-Inc10``: half the classes first, then 10 per task.
PROTOCOLS = (("B0-Inc10", 0.0, 10), ("B50-Inc10", 0.5, 10))


def class_order(num_classes: int, seed: int) -> list[int]:
    """PyCIL's class order for `seed`: ``np.random.seed(seed);
    np.random.permutation(num_classes)`` (the same draw, without touching numpy's global
    state)."""
    return [int(c) for c in np.random.RandomState(seed).permutation(num_classes)]


def task_sizes(num_classes: int, init_cls: int, increment: int) -> list[int]:
    """Classes per task as PyCIL's ``DataManager`` cuts them: `init_cls`, then `increment`
    while a whole one fits, then the rest (a smaller last task)."""
    sizes = [init_cls]
    while sum(sizes) + increment < num_classes:
        sizes.append(increment)
    if num_classes - sum(sizes) > 0:
        sizes.append(num_classes - sum(sizes))
    return sizes


def protocols(num_classes: int, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """`PROTOCOLS` on `num_classes` classes: init_cls, increment, the tasks, and the
    dataset keys of a PyCIL exps JSON.

    The base share is rounded down (B50 on 25 classes: 12 first); ``B0`` starts with one
    increment (all the classes when there are fewer). A count that does not divide leaves
    a smaller last task, exactly as PyCIL's ``DataManager`` does.
    """
    out = []
    for name, share, inc in PROTOCOLS:
        increment = min(inc, num_classes)
        init_cls = int(num_classes * share) if share else increment
        init_cls = max(1, min(init_cls, num_classes))
        sizes = task_sizes(num_classes, init_cls, increment)
        out.append({
            "protocol": name,
            "name": f"B{0 if not share else init_cls}-Inc{increment}",
            "init_cls": init_cls,
            "increment": increment,
            "num_tasks": len(sizes),
            "task_sizes": sizes,
            "exps": {"dataset": DATASET_NAME, "init_cls": init_cls, "increment": increment,
                     "shuffle": True, "seed": list(seeds)},
        })
    return out


def idata_source() -> bytes:
    """The bytes of `IDATA_FILE` (this package's ``tv100_idata.py``, shipped as it is)."""
    return resources.files("tv100.tasks.exports").joinpath(IDATA_FILE).read_bytes()


def _readme(items: ExportItems, config: ExportConfig, counts: dict[str, int],
            protos: list[dict[str, Any]]) -> bytes:
    k = items.num_classes
    seeds = ", ".join(str(s) for s in config.seeds)
    rows = "\n".join(
        f"| {p['protocol']} | {p['name']} | {p['init_cls']} | {p['increment']} | "
        f"{p['num_tasks']} | {' + '.join(map(str, p['task_sizes']))} |" for p in protos)
    first = protos[0]["exps"]
    return f"""# TV100 for class-incremental learning (PyCIL layout)

{k} classes; {counts.get('train', 0)} train images (the train and val splits),
{counts.get('test', 0)} test images. Written by `tv100 export --kind pycil`; rerunning it
on the same data root writes nothing.

## Layout

```
{kind_dir(KIND)}/
  train/<NNN_Title>/<image_id>.jpg   the train and val splits (PyCIL has no validation split)
  test/<NNN_Title>/<image_id>.jpg    the test split
  tv100_idata.py                     `iTV100`, PyCIL's dataset class (numpy + torchvision only)
  class_orders.json                  the class order of each seed
  protocols.json                     B0-Inc10 and B50-Inc10 on {k} classes, with exps JSON
  README.md                          this file
```

`NNN` is the TV100 class index (zero-padded) and the label: `007_The_Jade_Lantern` is class 7.
Images are hard links to the data root's image store where the filesystem allows, else copies.

## Loading it with PyCIL

Copy `tv100_idata.py` into PyCIL's `utils/`, then in `utils/data_manager.py`:

```python
from utils.tv100_idata import iTV100
# in _get_idata(dataset_name):
    elif name == "tv100":
        return iTV100()
```

Set `TV100_PYCIL_ROOT` to this folder (`export TV100_PYCIL_ROOT=$PWD`) unless
`tv100_idata.py` stays here. An exps JSON takes the dataset keys from `protocols.json`,
e.g. `{json.dumps(first)}`, plus the method's own keys.

`download_data()` sets `train_data`, `test_data` (numpy arrays of image paths) and
`train_targets`, `test_targets` (numpy int arrays of class indices), as PyCIL's
`split_images_labels` does for torchvision's ImageFolder.

## Class orders and seeds

Seeds: {seeds}. With `"shuffle": true` PyCIL orders the classes by
`np.random.seed(seed); np.random.permutation({k})`; `class_orders.json` lists that order for
each seed (`orders["<seed>"][t]` is the class index learnt t-th). `iTV100.class_order` is
the identity (used with `"shuffle": false`).

## Protocols

| protocol | on {k} classes | init_cls | increment | tasks | classes per task |
| --- | --- | --- | --- | --- | --- |
{rows}

B50 is half the classes, rounded down; B0 starts with one increment; an increment is at
most the number of classes. When the classes do not divide into increments the last task is
smaller, exactly as PyCIL's `DataManager` cuts them (25 classes, B0-Inc10: 10 + 10 + 5).
""".encode()


def plan_pycil(items: ExportItems, config: ExportConfig) -> FolderPlan:
    """What ``export/pycil/`` holds for `items`.

    Raises:
        ValueError: fewer than 2 classes, or a class without a train or a test image
            (PyCIL needs every class in both).
    """
    k = items.num_classes
    if k < 2:
        raise ValueError(f"{k} class in the splits; expected at least 2 for class-incremental "
                         "learning")
    links: dict[str, str] = {}
    seen: dict[str, set[int]] = {"train": set(), "test": set()}
    for image in items.images:
        split = SPLIT_OF[image.split]
        seen[split].add(image.class_index)
        links[image_relpath(split, items.classes[image.class_index], image)] = image.source
    for split, found in seen.items():
        missing = sorted(set(range(k)) - found)
        if missing:
            raise ValueError(
                f"class {items.classes[missing[0]].dirname} has no {split} image; expected "
                "every class in train (with val) and test for PyCIL"
            )
    counts = {s: sum(1 for r in links if r.startswith(f"{s}/")) for s in ("train", "test")}
    protos = protocols(k, config.seeds)
    orders = {
        "convention": "np.random.seed(seed); np.random.permutation(num_classes)",
        "num_classes": k,
        "seeds": list(config.seeds),
        "orders": {str(s): class_order(k, s) for s in config.seeds},
    }
    files = {
        IDATA_FILE: idata_source(),
        "class_orders.json": json_bytes(orders),
        "protocols.json": json_bytes({"dataset": DATASET_NAME, "num_classes": k,
                                      "protocols": protos}),
        "README.md": _readme(items, config, counts, protos),
    }
    return FolderPlan(links, files, counts)


def export_pycil(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """Write ``<root>/export/pycil/`` (`plan_pycil`); nothing when it is already there."""
    return write_kind(root, KIND, plan_pycil(items, config))


@task(name="export-pycil", cache_policy=NO_CACHE)
def export_pycil_task(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """`export_pycil` (uncached: it writes only what differs)."""
    return export_pycil(root, items, config)
