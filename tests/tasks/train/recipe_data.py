"""A tiny offline recipe dataset shared by the train-stage unit tests: 6 easy classes of
synthetic images and a tiny random-init open_clip (so zero-shot is at chance and training
has to do the work). The fixtures built from it are in this folder's ``conftest.py``."""

from __future__ import annotations

import colorsys
import io
from pathlib import Path

import numpy as np
import pyarrow as pa

#: Its own name: the rank tests register a different tiny architecture as
#: ``tv100-test-tiny``, and open_clip's registry is process-wide.
ARCH = "tv100-train-tiny"
SPEC = f"{ARCH}@random"
#: ViT 64 px, patch 16, width 64, 2 layers; a one-layer text tower (random: zero-shot at
#: chance). ~150 k image-tower parameters.
MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32,
                   "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1,
                 "layers": 1},
}
NAMES = ["The Jade Lantern", "Salt Harbour", "Nine Winters", "Copper Sky", "Quiet Orchard",
         "Glass Tide"]
PER_CLASS = 25
THREADS = 1
FT = {"epochs": 4, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.05, "warmup_steps": 5,
      "threads": THREADS}
PROBE = {"probe_weight_decays": (1e-3, 1e-2, 1e-1), "probe_max_iter": 100,
         "threads": THREADS}


def render(c: int, i: int) -> bytes:
    """Image `i` of class `c`: the class's hue and stripe pattern, with jittered hue,
    saturation, brightness and phase, pixel noise and a random distractor square."""
    from PIL import Image

    rng = np.random.default_rng([c, i, 7])
    h = (c / len(NAMES) + rng.uniform(-0.03, 0.03)) % 1
    rgb = np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.6, 0.9), rng.uniform(0.75, 1.0))) * 255
    yy, xx = np.mgrid[0:64, 0:64]
    coord = [yy, xx, xx + yy][c % 3]
    period = 8 + 6 * (c // 3)
    mask = ((coord + rng.integers(period)) % period) < period / 2
    img = np.where(mask[..., None], rgb * 0.55, rgb) + rng.normal(0, 12, (64, 64, 3))
    s = int(rng.integers(8, 18))
    x0, y0 = rng.integers(0, 64 - s, 2)
    img[y0 : y0 + s, x0 : x0 + s] = rng.uniform(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def build_dataset(data_dir: Path):  # type: ignore[no-untyped-def]
    """Store the images under a data root; return (DataRoot, splits, image_id -> path)."""
    from tv100.storage.images import ImageStore
    from tv100.storage.root import DataRoot
    from tv100.tasks.train.config import SplitConfig
    from tv100.tasks.train.splits import make_splits

    root = DataRoot(str(data_dir)).ensure()
    store = ImageStore(root)
    rows, paths = [], {}
    for c in range(len(NAMES)):
        for i in range(PER_CLASS):
            sha, rel = store.put(render(c, i), "jpg")
            rows.append({"image_id": sha[:16], "series_id": f"tt{9000 + c}", "class_index": c})
            paths[sha[:16]] = rel
    splits = make_splits(pa.Table.from_pylist(rows), SplitConfig(test_ratio=0.2, val_ratio=0.2))
    return root, splits, paths


def register_arch(folder: Path) -> str:
    """Register `ARCH` with open_clip (in this process); return its config file."""
    import json

    import open_clip

    path = folder / f"{ARCH}.json"
    path.write_text(json.dumps(MODEL_CFG))
    open_clip.add_model_config(path)
    return str(path)


def top1(result, split: str = "test") -> float:  # type: ignore[no-untyped-def]
    """Top-1 of a `RecipeResult` on `split`."""
    return float(result.metrics_by_split[split]["top1"])
