"""WebDataset: the splits as tar shards (``export/wds/<split>-NNNNNN.tar``), each sample a
``jpg``, a ``cls`` and a ``json``, written byte for byte the same on every run."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.tasks.exports.common import ExportImage, ExportItems, FolderPlan, write_kind
from tv100.tasks.exports.config import ExportConfig, KindResult, kind_dir
from tv100.tasks.train.config import SPLIT_NAMES

KIND = "wds"
#: The fixed modification time of every tar member (1 January 2000, UTC): no run's clock.
MTIME = 946_684_800
#: A shard's file name: ``train-000000.tar``.
SHARD = "{split}-{index:06d}.tar"


def shard_name(split: str, index: int) -> str:
    return SHARD.format(split=split, index=index)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def shard_bytes(items: ExportItems, images: Sequence[ExportImage]) -> bytes:
    """One tar of `images`, in their order: per sample ``<image_id>.cls`` (the class index
    as ASCII digits), ``.jpg`` (the stored file) and ``.json`` (series_id, title, image_id,
    class_index). Fixed times, owners and modes: the same images give the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for image in images:
            cls = items.classes[image.class_index]
            with open(image.source, "rb") as f:
                jpg = f.read()
            meta = {"series_id": cls.series_id, "title": cls.title, "image_id": image.image_id,
                    "class_index": cls.index}
            _member(tar, f"{image.image_id}.cls", str(cls.index).encode())
            _member(tar, f"{image.image_id}.jpg", jpg)
            _member(tar, f"{image.image_id}.json",
                    json.dumps(meta, sort_keys=True, ensure_ascii=False).encode())
    return buf.getvalue()


def _shard(items: ExportItems, images: list[ExportImage]) -> Callable[[], bytes]:
    return lambda: shard_bytes(items, images)


def _readme(counts: dict[str, int], shards: dict[str, int], config: ExportConfig,
            k: int) -> bytes:
    rows = "\n".join(
        f"| {s} | {counts[s]} | {shards[s]} | `{shard_name(s, 0)}` .. "
        f"`{shard_name(s, shards[s] - 1)}` |" for s in counts)
    first = next(iter(counts))
    return f"""# TV100 as WebDataset shards

{k} classes. Written by `tv100 export --kind wds` with shards of {config.shard_size} samples
(the last shard of a split holds the rest); rerunning it on the same data root writes
nothing, and the shards are the same bytes on every run (sorted samples, fixed times and
owners in the tar headers).

| split | samples | shards | files |
| --- | --- | --- | --- |
{rows}

## Layout

```
{kind_dir(KIND)}/
  <split>-NNNNNN.tar   split: train, val or test; NNNNNN from 000000
  README.md            this file
```

Each sample's key is its image id; its files:

- `<key>.jpg`: the image (JPEG);
- `<key>.cls`: the class index, as ASCII digits;
- `<key>.json`: `{{"class_index", "image_id", "series_id", "title"}}`.

Samples are sorted by image id within a split (the ids are content hashes: classes come
mixed). Seeds: none is used here; the splits are the train stage's (`tv100 train
--split-seed`), and shuffling is the reader's (`shardshuffle`, `.shuffle(n)`).

## Loading

From the data root (paths relative to it):

```python
import webdataset as wds
urls = "{kind_dir(KIND)}/{first}-{{000000..{shards[first] - 1:06d}}}.tar"
ds = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg", "cls", "json")
```
""".encode()


def plan_wds(items: ExportItems, config: ExportConfig) -> FolderPlan:
    """What ``export/wds/`` holds for `items`: `config.shard_size` samples per shard.

    The shards' bytes are made when they are compared or written, one at a time."""
    files: dict[str, bytes | Callable[[], bytes]] = {}
    counts: dict[str, int] = {}
    shards: dict[str, int] = {}
    for split in SPLIT_NAMES:
        images = items.in_splits(split)
        if not images:
            continue
        counts[split] = len(images)
        n = config.shard_size
        chunks = [images[i:i + n] for i in range(0, len(images), n)]
        shards[split] = len(chunks)
        for index, chunk in enumerate(chunks):
            files[shard_name(split, index)] = _shard(items, chunk)
    files["README.md"] = _readme(counts, shards, config, items.num_classes)
    return FolderPlan({}, files, counts)


def export_wds(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """Write ``<root>/export/wds/`` (`plan_wds`); nothing when it is already there."""
    return write_kind(root, KIND, plan_wds(items, config))


@task(name="export-wds", cache_policy=NO_CACHE)
def export_wds_task(root: DataRoot, items: ExportItems, config: ExportConfig) -> KindResult:
    """`export_wds` (uncached: it writes only what differs)."""
    return export_wds(root, items, config)
