"""Benchmark: perceptual hashing with plain imagehash (full decode) vs tv100's draft fast path.

Both sides do the same work per file: read the bytes, sha256, pHash and dHash; both run in
one process, one after the other, on the same N generated 640x480 JPEGs (in a temp folder,
read once beforehand so both hit the page cache). Each side is timed `--repeat` times in
alternating order and its best run is kept. The last line printed is one JSON object.

Usage::

    .venv/bin/python bench/hashing.py [--n 300] [--repeat 3] [--quality 90] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import tempfile
import time

import imagehash
import numpy as np
from PIL import Image

from tv100.sandbox.imagegen import encode, make_photo
from tv100.tasks.clean.config import HashConfig
from tv100.tasks.clean.hashing import hamming, hash_file


def plain_imagehash(path: str) -> tuple[str, str, str]:
    """The baseline: what one writes with imagehash alone (full decode)."""
    with open(path, "rb") as f:
        data = f.read()
    sha = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as img:
        return sha, str(imagehash.phash(img)), str(imagehash.dhash(img))


def tv100(path: str, config: HashConfig) -> tuple[str, str, str]:
    row = hash_file(path, config)
    return row["sha256"], row["phash"], row["dhash"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="number of JPEGs")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (best kept)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the inputs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    config = HashConfig(workers=1)

    with tempfile.TemporaryDirectory(prefix="tv100-bench-hashing-") as tmp:
        paths = []
        for i in range(args.n):
            path = os.path.join(tmp, f"{i:05d}.jpg")
            with open(path, "wb") as f:
                f.write(encode(make_photo(args.seed * 1_000_003 + i), quality=args.quality))
            paths.append(path)
        for p in paths:  # warm the page cache so neither side pays for the disk
            with open(p, "rb") as f:
                f.read()

        sides = {
            "imagehash": plain_imagehash,
            "tv100": lambda p: tv100(p, config),
        }
        best = {name: float("inf") for name in sides}
        results: dict[str, list[tuple[str, str, str]]] = {}
        for r in range(args.repeat):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for name in order:
                t0 = time.perf_counter()
                out = [sides[name](p) for p in paths]
                best[name] = min(best[name], time.perf_counter() - t0)
                results[name] = out

    ref, fast = results["imagehash"], results["tv100"]
    assert all(a[0] == b[0] for a, b in zip(ref, fast, strict=True)), "sha256 must agree"
    dp = np.array([hamming(a[1], b[1]) for a, b in zip(ref, fast, strict=True)])
    dd = np.array([hamming(a[2], b[2]) for a, b in zip(ref, fast, strict=True)])
    imagehash_per_s = args.n / best["imagehash"]
    tv100_per_s = args.n / best["tv100"]
    print(f"inputs: {args.n} JPEGs 640x480 q{args.quality}; best of {args.repeat}; 1 process")
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"plain imagehash (full decode): {imagehash_per_s:8.1f} images/s")
    print(f"tv100 draft fast path:        {tv100_per_s:8.1f} images/s")
    print(f"pHash Hamming to imagehash: mean {dp.mean():.2f}, max {dp.max()}")
    print(f"dHash Hamming to imagehash: mean {dd.mean():.2f}, max {dd.max()}")
    print(
        json.dumps(
            {
                "bench": "hashing",
                "n": args.n,
                "imagehash_per_s": round(imagehash_per_s, 1),
                "tv100_per_s": round(tv100_per_s, 1),
                "ratio": round(tv100_per_s / imagehash_per_s, 2),
                "agreement_le2": round(float(((dp <= 2) & (dd <= 2)).mean()), 4),
                "phash_le2": round(float((dp <= 2).mean()), 4),
                "dhash_le2": round(float((dd <= 2).mean()), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
