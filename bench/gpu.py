"""GPU benchmark, ready for when a CUDA device is lent: embedding and FAISS range search.

Two parts, each run on CPU and on CUDA side by side (rules in bench/README.md):

1. Embedding: tv100's `tv100.tasks.rank.embed.encode_tensor` with a ViT-B-32 of random
   weights (``ViT-B-32@random``: nothing is downloaded) on pre-decoded 224 px tensors; CPU
   runs fp32 (as tv100 does), CUDA bf16 autocast (`ModelSpec.precision="auto"`). Prints
   images/s per device and the CUDA/CPU ratio.
2. Near-duplicate search: `tv100.tasks.clean.pairs.cosine_pairs` (a FAISS inner-product
   range search on CPU; k-NN with a CPU fallback on GPU) over unit vectors with planted
   near copies. Prints vectors/s per device, the ratio, and whether both found the same pairs.

Without CUDA (or without faiss-gpu) the CUDA side is reported as unavailable and the ratios
are null: the script still runs, so it can be checked anywhere. Run it as ``bench/gpu.sh``
(one prepared command for a lent machine) or::

    .venv/bin/python bench/gpu.py [--n-embed 4096] [--batch 256] [--n-vectors 200000]

Its last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
import torch

from tv100.tasks.clean.pairs import cosine_pairs, gpu_available
from tv100.tasks.rank.clip import load_clip
from tv100.tasks.rank.embed import encode_tensor

SPEC = "ViT-B-32@random"
DIM = 512


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def embed_rate(device: str, n: int, batch: int, repeat: int) -> dict[str, Any]:
    """Images per second of `encode_tensor` on `device` (best of `repeat` timed passes,
    after one warm-up batch)."""
    clip = load_clip(SPEC, device=device, reuse=False)
    g = torch.Generator().manual_seed(0)
    images = torch.rand((batch, 3, 224, 224), generator=g)
    encode_tensor(clip, images)  # warm-up: kernels, autotuning, allocator
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(max(1, n // batch)):
            encode_tensor(clip, images)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    done = max(1, n // batch) * batch
    dtype = str(clip.amp_dtype or torch.float32).removeprefix("torch.")
    out = {"device": device, "images": done, "seconds": round(best, 3),
           "per_s": round(done / best, 1), "dtype": dtype}
    del clip
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def planted_vectors(n: int, seed: int = 0) -> np.ndarray:
    """`n` unit vectors, 1% of them near copies (cosine > 0.99) of another."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    picked = rng.choice(n, size=2 * max(1, n // 200), replace=False)
    sources, copies = picked[: len(picked) // 2], picked[len(picked) // 2 :]
    x[copies] = x[sources] + 0.05 * rng.standard_normal((len(copies), DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def search_rate(x: np.ndarray, use_gpu: bool, threshold: float) -> dict[str, Any]:
    """Vectors per second of `cosine_pairs` on CPU or GPU, and the pairs it found."""
    start = time.perf_counter()
    i, j, _ = cosine_pairs(x, threshold, use_gpu=use_gpu)
    seconds = time.perf_counter() - start
    return {"device": "cuda" if use_gpu else "cpu", "vectors": len(x),
            "seconds": round(seconds, 3), "per_s": round(len(x) / seconds, 1),
            "pairs": {(int(a), int(b)) for a, b in zip(i, j, strict=True)}}


def _ratio(gpu: dict[str, Any] | None, cpu: dict[str, Any]) -> float | None:
    return round(gpu["per_s"] / cpu["per_s"], 2) if gpu else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-embed", type=int, default=4096, help="images per CUDA pass")
    ap.add_argument("--n-embed-cpu", type=int, default=256, help="images per CPU pass")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2, help="timed passes per side (best kept)")
    ap.add_argument("--n-vectors", type=int, default=200_000, help="vectors searched")
    ap.add_argument("--threshold", type=float, default=0.95, help="cosine of a near copy")
    args = ap.parse_args(argv)
    for name in ("n_embed", "n_embed_cpu", "batch", "repeat", "n_vectors"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")

    cuda = torch.cuda.is_available()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; CUDA: "
          + (torch.cuda.get_device_name(0) if cuda else "none"))

    cpu_embed = embed_rate("cpu", args.n_embed_cpu, min(args.batch, args.n_embed_cpu),
                           args.repeat)
    print(f"embed  cpu  fp32   {cpu_embed['per_s']:>9.1f} images/s")
    gpu_embed = embed_rate("cuda", args.n_embed, args.batch, args.repeat) if cuda else None
    if gpu_embed:
        print(f"embed  cuda {gpu_embed['dtype']:<6} {gpu_embed['per_s']:>9.1f} images/s "
              f"({_ratio(gpu_embed, cpu_embed)}x CPU)")
    else:
        print("embed  cuda: no CUDA device")

    x = planted_vectors(args.n_vectors)
    cpu_search = search_rate(x, False, args.threshold)
    print(f"search cpu  {cpu_search['per_s']:>12.1f} vectors/s, {len(cpu_search['pairs'])} pairs")
    gpu_search = search_rate(x, True, args.threshold) if gpu_available(None) else None
    same = None
    if gpu_search:
        same = gpu_search["pairs"] == cpu_search["pairs"]
        print(f"search cuda {gpu_search['per_s']:>12.1f} vectors/s, "
              f"{len(gpu_search['pairs'])} pairs ({_ratio(gpu_search, cpu_search)}x CPU; "
              f"same pairs: {same})")
    else:
        print("search cuda: no FAISS GPU (install the `gpu` extra) or no CUDA device")

    def public(d: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if d is None else {k: v for k, v in d.items() if k != "pairs"}

    result = {
        "bench": "gpu",
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
        "embed": {"cpu": cpu_embed, "cuda": gpu_embed, "ratio": _ratio(gpu_embed, cpu_embed)},
        "search": {"cpu": public(cpu_search), "cuda": public(gpu_search),
                   "ratio": _ratio(gpu_search, cpu_search), "same_pairs": same,
                   "pairs": len(cpu_search["pairs"])},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
