"""Rows and images the near-duplicate tests build (tests/tasks/clean only)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from PIL import Image

from tv100.sandbox.imagegen import encode, make_photo
from tv100.storage.schemas import DUPLICATES
from tv100.tasks.clean.config import NearDupConfig
from tv100.tasks.clean.hashing import hash_bytes

T = NearDupConfig().phash_threshold
ZERO = "0" * 16
#: Originals per transform test.
N_BASE = 12


def flip(hex_hash: str, *bits: int) -> str:
    """`hex_hash` with the given bit positions (0 = least significant) inverted."""
    value = int(hex_hash, 16)
    for b in bits:
        value ^= 1 << b
    return f"{value:016x}"


def rec(image_id, phash, *, dhash=None, sha=None, series="s1", w=100, h=100, rank=1, split=None):
    return {
        "image_id": image_id,
        "series_id": series,
        "sha256": sha or f"sha-{image_id}",
        "phash": phash,
        "dhash": dhash,
        "width": w,
        "height": h,
        "rank": rank,
        "split": split,
    }


def table(rows) -> pa.Table:
    return pa.Table.from_pylist(rows)


def by_id(dups: pa.Table) -> dict[str, dict]:
    assert dups.schema.equals(DUPLICATES)
    return {r["image_id"]: r for r in dups.to_pylist()}


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    return encode(img.convert("RGB"), quality=quality)


def make_originals() -> list[Image.Image]:
    return [make_photo(7000 + i) for i in range(N_BASE)]


def hashed(image_id: str, data: bytes, series: str = "s1", rank: int = 1) -> dict:
    row = hash_bytes(data)
    assert row["status"] == "ok"
    return {"image_id": image_id, "series_id": series, "rank": rank, **row}


def fake_embeddings(ids_by_base: dict[str, int], dim: int = 64, seed: int = 0):
    """Per original a random direction; a copy is its original's direction plus noise."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((max(ids_by_base.values()) + 1, dim))
    ids = list(ids_by_base)
    vecs = np.stack([base[ids_by_base[i]] + 0.05 * rng.standard_normal(dim) for i in ids])
    return ids, vecs.astype(np.float32)
