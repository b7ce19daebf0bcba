"""Hugging Face ``datasets``: the splits as an ImageFolder (``export/hf/<split>/<class>/``)
with a ``metadata.jsonl`` per split and a dataset card whose YAML header declares the splits
and the features (the class names included)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.tasks.exports.common import (
    ExportItems,
    FolderPlan,
    image_relpath,
    write_kind,
)
from tv100.tasks.exports.config import ExportConfig, KindResult, kind_dir

KIND = "hf"
#: Our split names → Hugging Face's.
SPLIT_OF = {"train": "train", "val": "validation", "test": "test"}
METADATA = "metadata.jsonl"
#: The metadata's fields after ``file_name``, with their ``datasets`` dtypes in the card's
#: YAML (``label``'s is the class label, written apart).
COLUMNS = (("label", None), ("image_id", "string"), ("series_id", "string"),
           ("title", "string"), ("start_year", "int32"), ("countries", "sequence_string"))
#: Hugging Face's size buckets: (upper bound, name).
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))


def size_category(n: int) -> str:
    """Hugging Face's ``size_categories`` value for `n` examples."""
    return next((name for bound, name in SIZES if n < bound), "n>10M")


def _q(text: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(text)


def _feature(name: str, dtype: str) -> str:
    if dtype == "sequence_string":
        return f"  - name: {name}\n    sequence: string"
    return f"  - name: {name}\n    dtype: {dtype}"


def _card(items: ExportItems, counts: dict[str, int]) -> bytes:
    splits = [s for s in SPLIT_OF.values() if counts.get(s)]
    names = "\n".join(f"          {_q(str(c.index))}: {_q(c.dirname)}" for c in items.classes)
    features = "\n".join(_feature(name, dtype) for name, dtype in COLUMNS if dtype)
    data_files = "\n".join(f"  - split: {s}\n    path: {_q(s + '/**')}" for s in splits)
    total = sum(counts.values())
    layout = "\n".join(f"  {s}/metadata.jsonl\n  {s}/<NNN_Title>/<image_id>.jpg" for s in splits)
    table = "\n".join(f"| {s} | {counts[s]} |" for s in splits)
    # Under `configs` too: `load_dataset(path)` reads the features only from there.
    feature_yaml = f"""  features:
  - name: image
    dtype: image
  - name: label
    dtype:
      class_label:
        names:
{names}
{features}"""
    return f"""---
pretty_name: "TV100"
license: other
task_categories:
- image-classification
size_categories:
- {size_category(total)}
configs:
- config_name: default
  data_files:
{data_files}
{feature_yaml}
dataset_info:
{feature_yaml}
---

# TV100

Images of {items.num_classes} TV series a pre-trained CLIP does not know (TV100, arXiv
2404.12407), one class per series, in the layout of the `datasets` ImageFolder builder.
Written by `tv100 export --kind hf`; rerunning it on the same data root writes nothing.

| split | images |
| --- | --- |
{table}

## Layout

```
{kind_dir(KIND)}/
  README.md            this card (its YAML header: splits, features, class names)
{layout}
```

`NNN` is the class index (zero-padded): the folder `007_The_Jade_Lantern` is label 7, and
the class names of `label` are the folder names. Images are hard links to the data root's
image store where the filesystem allows, else copies.

Seeds: none is used here; the splits are the train stage's (`tv100 train --split-seed`).

Each `metadata.jsonl` has a line per image: `file_name` (relative to the split folder),
`label` (the class index), `image_id`, `series_id` (IMDb), `title`, `start_year` (null
when unknown) and `countries` (a list of IMDb country codes). JSON lines rather than CSV:
a CSV column of years with a gap cannot be read as integers, nor a list as a list.

## Loading

From the data root (paths relative to it):

```python
from datasets import load_dataset
ds = load_dataset("{kind_dir(KIND)}")  # this card: `label` is a ClassLabel with the names
ds["train"].features["label"].names[ds["train"][0]["label"]]
```

`load_dataset("imagefolder", data_dir="{kind_dir(KIND)}")` reads the same files without the
card: `label` is then a plain integer (the builder does not infer labels from the folders
when metadata files are present).

## Licence and use

- The images remain the copyright of their owners. They were collected from public web
  pages for non-commercial research use only; do not redistribute the images themselves.
- Series metadata comes from IMDb and is subject to IMDb's terms for personal and
  non-commercial use.
""".encode()


def _metadata(rows: Sequence[dict[str, Any]]) -> bytes:
    """JSON lines, sorted by file name (JSON keeps a null year and a list of countries)."""
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n"
                    for r in sorted(rows, key=lambda r: str(r["file_name"])))


def plan_hf(items: ExportItems, config: ExportConfig) -> FolderPlan:
    """What ``export/hf/`` holds for `items` (`config` has no knob for it)."""
    del config
    links: dict[str, str] = {}
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLIT_OF.values()}
    for image in items.images:
        split = SPLIT_OF[image.split]
        cls = items.classes[image.class_index]
        rel = image_relpath(split, cls, image)
        links[rel] = image.source
        rows[split].append({
            "file_name": rel.split("/", 1)[1], "label": cls.index, "image_id": image.image_id,
            "series_id": cls.series_id, "title": cls.title, "start_year": cls.start_year,
            "countries": list(cls.countries)})
    counts = {s: len(r) for s, r in rows.items() if r}
    files: dict[str, bytes] = {f"{s}/{METADATA}": _metadata(rows[s]) for s in counts}
    files["README.md"] = _card(items, counts)
    return FolderPlan(links, files, counts)


def export_hf(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """Write ``<root>/export/hf/`` (`plan_hf`); nothing when it is already there."""
    return write_kind(root, KIND, plan_hf(items, config))


@task(name="export-hf", cache_policy=NO_CACHE)
def export_hf_task(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """`export_hf` (uncached: it writes only what differs)."""
    return export_hf(root, items, config)
