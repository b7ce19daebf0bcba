"""A tiny built data root for the export tests: real JPEGs in the image store and the four
tables an export reads (`splits`, `classes`, `series`, `images`), every figure known."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import CLASSES, IMAGES, SERIES, SPLITS
from tv100.storage.tables import write_table

TS = datetime(2024, 5, 1, tzinfo=UTC)
#: (series_id, title, start_year, countries); tt05 is a candidate the rank stage did not keep.
SERIES_ROWS = [
    ("tt01", "The Jade Lantern", 2021, ["CN"]),
    ("tt02", "Café: Nights!", None, []),
    ("tt03", "Salt Harbour", 2023, ["JP", "KR"]),
    ("tt04", "Nine Winters", 2022, ["TH"]),
    ("tt05", "Copper Sky", 2024, ["US"]),
    ("tt06", "Not Kept", 2020, ["US"]),
]
#: The kept series, class index i for the i-th.
KEPT = [s[0] for s in SERIES_ROWS[:5]]
K = len(KEPT)
DIRNAMES = ["000_The_Jade_Lantern", "001_Caf_Nights", "002_Salt_Harbour", "003_Nine_Winters",
            "004_Copper_Sky"]


def images_of(c: int) -> int:
    """Images of class c: 5, 6, 7, 8, 9."""
    return 5 + c


def split_of(k: int) -> str:
    """The split of the k-th image of a class: k mod 5 of 0-2 train, 3 val, 4 test."""
    return ("train", "train", "train", "val", "test")[k % 5]


#: Images per split over all classes.
COUNTS = {
    s: sum(1 for c in range(K) for k in range(images_of(c)) if split_of(k) == s)
    for s in ("train", "val", "test")
}


def jpeg(c: int, k: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng([c, k])
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def write_tiny_root(path: Path) -> tuple[DataRoot, dict[str, int]]:
    """Write the tiny root under `path`; return it and each image id's class index."""
    root = DataRoot(str(path)).ensure()
    store = ImageStore(root)
    write_table(root, "series", pa.Table.from_pylist([
        {"series_id": sid, "title": t, "start_year": y, "countries": cs, "kind": "tvSeries",
         "source": "imdb-datasets", "discovered_at": TS}
        for sid, t, y, cs in SERIES_ROWS], schema=SERIES))
    write_table(root, "classes", pa.Table.from_pylist([
        {"series_id": sid, "title": t, "class_index": KEPT.index(sid) if sid in KEPT else None,
         "kept": sid in KEPT, "reason": "hardest" if sid in KEPT else "too_easy",
         "n_images": 10, "aggregate": "max", "models": ["m"]}
        for sid, t, _, _ in SERIES_ROWS], schema=CLASSES))
    images, splits, labels = [], [], {}
    for c, sid in enumerate(KEPT):
        for k in range(images_of(c)):
            sha, rel = store.put(jpeg(c, k), "jpg")
            iid = sha[:16]
            labels[iid] = c
            images.append({"image_id": iid, "series_id": sid, "status": "ok", "sha256": sha,
                           "path": rel, "format": "jpeg"})
            splits.append({"image_id": iid, "series_id": sid, "class_index": c,
                           "split": split_of(k)})
    # An image that is not in the splits (a junk one, say): never exported.
    sha, rel = store.put(jpeg(99, 0), "jpg")
    images.append({"image_id": sha[:16], "series_id": "tt06", "status": "ok", "path": rel})
    write_table(root, "images", pa.Table.from_pylist(images, schema=IMAGES))
    write_table(root, "splits", pa.Table.from_pylist(splits, schema=SPLITS))
    return root, labels


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `folder`: (inode, mtime_ns, bytes), by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(folder).as_posix()] = (st.st_ino, st.st_mtime_ns, p.read_bytes())
    return out
