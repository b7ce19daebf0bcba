"""The images a recipe reads: split rows to paths and labels, a map-style dataset whose
augmentation is seeded per sample, the DataLoader and the training transform.

torch and torchvision are imported inside functions (the CLI imports the stage to wire
flows).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tv100.storage.root import DataRoot
from tv100.tasks.parallel import mp_context
from tv100.tasks.rank.clip import Clip
from tv100.tasks.train.config import SPLIT_NAMES
from tv100.tasks.train.sampling import sample_seed


@dataclass(frozen=True)
class SplitImages:
    """The images of one split, sorted by image id.

    Attributes:
        relpaths: image path relative to the data root, per image.
        labels: ``(n,)`` int64 class index per image.
        image_ids: the image ids.
    """

    relpaths: list[str]
    labels: np.ndarray
    image_ids: list[str]


def _paths_of(
    rows: list[dict[str, Any]], columns: list[str], paths: Mapping[str, str] | pa.Table | None
) -> dict[str, str]:
    if paths is None:
        if "path" not in columns:
            raise ValueError(
                "no image paths: pass paths= (image_id -> path relative to the data root, or "
                "a table with image_id and path) or a splits table with a path column"
            )
        return {r["image_id"]: r["path"] for r in rows}
    if isinstance(paths, pa.Table):
        return dict(zip(paths.column("image_id").to_pylist(),
                        paths.column("path").to_pylist(), strict=True))
    return dict(paths)


def split_images(
    splits: pa.Table, paths: Mapping[str, str] | pa.Table | None, n_classes: int
) -> dict[str, SplitImages]:
    """Every split of the `splits` table as `SplitImages` (empty splits included).

    Args:
        splits: the `splits` table (image_id, series_id, class_index, split), optionally
            with a ``path`` column.
        paths: image_id → path relative to the root (a mapping, or a table with image_id
            and path); None when `splits` has a path column.
        n_classes: the number of classes (class indices must be below it).

    Raises:
        ValueError: missing columns or paths, a class index out of range, an unknown split.
    """
    needed = {"image_id", "series_id", "class_index", "split"}
    missing = needed - set(splits.column_names)
    if missing:
        raise ValueError(f"splits lacks columns {sorted(missing)}; expected the splits table")
    rows = splits.to_pylist()
    path_of = _paths_of(rows, splits.column_names, paths)
    lost = [r["image_id"] for r in rows if not path_of.get(r["image_id"])]
    if lost:
        raise ValueError(f"{len(lost)} split images have no path, e.g. {lost[0]!r}")
    out: dict[str, SplitImages] = {}
    for name in SPLIT_NAMES:
        rs = sorted((r for r in rows if r["split"] == name), key=lambda r: r["image_id"])
        labels = np.array([int(r["class_index"]) for r in rs], dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(
                f"class_index out of range in split {name!r}: expected 0..{n_classes - 1} "
                f"(one class name per index)"
            )
        out[name] = SplitImages([path_of[r["image_id"]] for r in rs], labels,
                                [r["image_id"] for r in rs])
    odd = sorted({r["split"] for r in rows} - set(SPLIT_NAMES))
    if odd:
        raise ValueError(f"unknown split values {odd}; expected {SPLIT_NAMES}")
    return out


def _seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and python RNGs from torch's per-worker seed."""
    import torch

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def load_rgb(root: DataRoot, relpath: str) -> Any:
    """The image at `relpath` under the root, decoded to RGB (a PIL image)."""
    from PIL import Image

    with root.fs.open(root.path(relpath), "rb") as f:
        img = Image.open(f)
        img.load()
    return img.convert("RGB")


class Images:
    """Map-style dataset (`torch.utils.data.DataLoader` needs only len and getitem).

    Item at position ``pos``: ``(tensor, index)`` where ``index = order[pos]``. With
    `augment`, the transform runs under torch's RNG seeded from ``(seed, epoch, pos)``, so
    a sample's crop and flip depend neither on workers nor on where a run resumed.
    """

    def __init__(
        self,
        root: DataRoot,
        relpaths: Sequence[str],
        transform: Any,
        order: np.ndarray | None = None,
        seed: int = 0,
        epoch: int = 0,
        augment: bool = False,
    ) -> None:
        self.root = root
        self.relpaths = list(relpaths)
        self.transform = transform
        self.order = order
        self.seed = seed
        self.epoch = epoch
        self.augment = augment

    def __len__(self) -> int:
        return len(self.order) if self.order is not None else len(self.relpaths)

    def __getitem__(self, pos: int) -> tuple[Any, int]:
        idx = int(self.order[pos]) if self.order is not None else int(pos)
        img = load_rgb(self.root, self.relpaths[idx])
        if not self.augment:
            return self.transform(img), idx
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, int(pos)))
            return self.transform(img), idx


def loader(dataset: Images, batch_size: int, workers: int, seed: int, device: Any) -> Any:
    """A DataLoader over `dataset` in its own order (no shuffling), `workers` processes.

    Workers start from a forkserver with torch and this module preloaded
    (`tv100.tasks.parallel.mp_context`): ``fork`` can deadlock a child of a process running
    Prefect's and OpenMP's threads.
    """
    import torch

    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"multiprocessing_context": mp_context(preload=["torch", __name__]),
                 "worker_init_fn": _seed_worker}
    return torch.utils.data.DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,  # the order is the dataset's own (`epoch_order`)
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda",
        drop_last=False,
        persistent_workers=False,
        **extra,
    )


def train_transform(clip: Clip, crop_min_scale: float, hflip: float) -> Any:
    """Random resized crop + horizontal flip, then the model's own normalisation."""
    from torchvision import transforms as T

    cfg = getattr(clip.model.visual, "preprocess_cfg", None) or {}
    mean = tuple(cfg.get("mean") or (0.48145466, 0.4578275, 0.40821073))
    std = tuple(cfg.get("std") or (0.26862954, 0.26130258, 0.27577711))
    size = clip.image_size
    return T.Compose(
        [
            T.RandomResizedCrop(
                size, scale=(crop_min_scale, 1.0), interpolation=T.InterpolationMode.BICUBIC
            ),
            T.RandomHorizontalFlip(hflip),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
