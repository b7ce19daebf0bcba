"""Novel class discovery: seeded labelled/unlabelled class partitions (``partitions.json``)
and, per seed, the lists of labelled train, unlabelled train and test images."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.tasks.exports.common import (
    ExportItems,
    FolderPlan,
    csv_bytes,
    image_relpath,
    json_bytes,
    write_kind,
)
from tv100.tasks.exports.config import ExportConfig, KindResult, kind_dir
from tv100.tasks.exports.pycil import class_order

KIND = "ncd"
#: The image folders of the export (train holds the train and val splits).
IMAGES = "images"
SPLIT_OF = {"train": "train", "val": "train", "test": "test"}
LISTS = ("labelled_train", "unlabelled_train", "test")
HEADER = ("path", "label", "series_id", "class_index")


def labelled_count(num_classes: int, ratio: float) -> int:
    """Labelled classes of a partition: ``num_classes * ratio`` rounded half up, at least 1
    and at most ``num_classes - 1``."""
    return max(1, min(num_classes - 1, int(num_classes * ratio + 0.5)))


def partition(num_classes: int, seed: int, ratio: float) -> tuple[list[int], list[int]]:
    """The labelled and the unlabelled class indices of `seed`, each sorted: the first
    `labelled_count` classes of the seed's permutation (`tv100.tasks.exports.pycil.class_order`,
    ``np.random.seed(seed); np.random.permutation(num_classes)``) are labelled."""
    order = class_order(num_classes, seed)
    n = labelled_count(num_classes, ratio)
    return sorted(order[:n]), sorted(order[n:])


def _readme(items: ExportItems, config: ExportConfig, counts: dict[str, int]) -> bytes:
    k = items.num_classes
    n = labelled_count(k, config.labelled_ratio)
    seeds = ", ".join(str(s) for s in config.seeds)
    return f"""# TV100 for novel class discovery

{k} classes: per seed, {n} labelled and {k - n} unlabelled (novel) classes (labelled
ratio {config.labelled_ratio:g}). {counts.get('train', 0)} train images (the train and val splits),
{counts.get('test', 0)} test images. Written by `tv100 export --kind ncd`; rerunning it on the
same data root writes nothing.

## Layout

```
{kind_dir(KIND)}/
  partitions.json                       per seed: labelled and unlabelled class indices
  images/train/<NNN_Title>/<image_id>.jpg  the train and val splits
  images/test/<NNN_Title>/<image_id>.jpg   the test split
  seed<S>/labelled_train.csv            train images of the labelled classes
  seed<S>/unlabelled_train.csv          train images of the unlabelled classes
  seed<S>/test.csv                      test images of every class
  README.md                             this file
```

The images are this folder's own (hard links to the data root's image store where the
filesystem allows, else copies), so the folder stands alone and can be moved whole.

## The lists

Columns: `path` (relative to this folder), `label`, `series_id`, `class_index`. `label`
is the discovery label: the labelled classes are `0..{n - 1}` and the unlabelled ones
`{n}..{k - 1}`, each side in class-index order (the convention of NCD code that takes the
first labels as known); `class_index` is the TV100 class index (`NNN` of the folder).
In `test.csv` a row with `label >= {n}` is a novel class. Rows are sorted by path.
From the data root:

```python
import csv, os
root = "{kind_dir(KIND)}"
with open(os.path.join(root, "seed{config.seeds[0]}", "unlabelled_train.csv")) as f:
    rows = [(os.path.join(root, r["path"]), int(r["label"])) for r in csv.DictReader(f)]
```

## Partitions and seeds

Seeds: {seeds}. For each seed, `np.random.seed(seed); np.random.permutation({k})` orders the
classes (the class order of the PyCIL export for the same seed); its first {n} classes are
labelled, the rest unlabelled. {n} = {k} x {config.labelled_ratio:g}, rounded half up (at least
one class on each side). `partitions.json` lists both sides of every seed, sorted.
""".encode()


def plan_ncd(items: ExportItems, config: ExportConfig) -> FolderPlan:
    """What ``export/ncd/`` holds for `items`.

    Raises:
        ValueError: fewer than 2 classes (a partition needs a class on each side).
    """
    k = items.num_classes
    if k < 2:
        raise ValueError(f"{k} class in the splits; expected at least 2 for novel class "
                         "discovery")
    links: dict[str, str] = {}
    paths: list[tuple[str, int, str]] = []  # (path, class index, our split)
    for image in items.images:
        split = SPLIT_OF[image.split]
        rel = image_relpath(f"{IMAGES}/{split}", items.classes[image.class_index], image)
        links[rel] = image.source
        paths.append((rel, image.class_index, split))
    paths.sort()
    parts: dict[str, dict[str, list[int]]] = {}
    files: dict[str, bytes] = {}
    for seed in config.seeds:
        labelled, unlabelled = partition(k, seed, config.labelled_ratio)
        parts[str(seed)] = {"labelled": labelled, "unlabelled": unlabelled}
        label = {c: i for i, c in enumerate([*labelled, *unlabelled])}
        known = set(labelled)
        chosen: dict[str, list[tuple[str, int, str, int]]] = {name: [] for name in LISTS}
        for rel, c, split in paths:
            name = "test" if split == "test" else (
                "labelled_train" if c in known else "unlabelled_train")
            chosen[name].append((rel, label[c], items.classes[c].series_id, c))
        for name, rows in chosen.items():
            files[f"seed{seed}/{name}.csv"] = csv_bytes(HEADER, rows)
    n = labelled_count(k, config.labelled_ratio)
    files["partitions.json"] = json_bytes({
        "num_classes": k, "labelled_ratio": config.labelled_ratio, "num_labelled": n,
        "num_unlabelled": k - n,
        "convention": "np.random.seed(seed); order = np.random.permutation(num_classes); "
                      "labelled = sorted(order[:num_labelled])",
        "seeds": list(config.seeds), "partitions": parts,
    })
    counts = {s: sum(1 for _, _, sp in paths if sp == s) for s in ("train", "test")}
    files["README.md"] = _readme(items, config, counts)
    return FolderPlan(links, files, counts)


def export_ncd(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """Write ``<root>/export/ncd/`` (`plan_ncd`); nothing when it is already there."""
    return write_kind(root, KIND, plan_ncd(items, config))


@task(name="export-ncd", cache_policy=NO_CACHE)
def export_ncd_task(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """`export_ncd` (uncached: it writes only what differs)."""
    return export_ncd(root, items, config)

