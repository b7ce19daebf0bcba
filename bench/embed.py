"""Embedding benchmark: tv100's embedding stage over image files vs the raw forward pass.

For each model, on the same N stored JPEGs (sandbox renders, longer side 512 like the
downloader's output, quality 85) and the same batch size:

  (a) raw: ``model.encode_image`` on tensors decoded and preprocessed beforehand (not
      timed), under ``torch.inference_mode``, with ``min(2, cores)`` torch threads: the floor
      any embedding pipeline pays;
  (b) tv100: `tv100.tasks.rank.embed.embed_images` end to end from the files (reading, decoding and
      preprocessing in the DataLoader, the forward pass, normalising, writing the shards,
      compacting the table) with its default plan of workers and threads.

Models: open_clip ViT-B-32 (random init: throughput does not depend on the weights, and no
weights can be downloaded here) and the sandbox CLIP architecture (`tv100.sandbox.pretrain`; its
trained weights with ``--sandbox-weights local-dir:...``, else random init). Sides run one
after the other, `--repeat` times in alternating order; the best run of each is kept. The
last line printed is one JSON object.

Usage::

    .venv/bin/python bench/embed.py [--n-vit 256] [--n-sandbox 2048] [--batch 64]
        [--repeat 2] [--models vit-b-32,sandbox] [--sandbox-weights local-dir:PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def make_images(root: Any, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """N sandbox-style JPEGs in the root's image store: ``(image_id, relative path)``."""
    import numpy as np
    from PIL import Image

    from tv100.sandbox import imagegen
    from tv100.storage.images import ImageStore

    store = ImageStore(root)
    sigs = [imagegen.make_signature(i, np.random.default_rng(seed + i)) for i in range(16)]
    items = []
    for i in range(n):
        rng = np.random.default_rng(seed * 1_000_003 + i)
        w, h = imagegen.SIZES[int(rng.integers(len(imagegen.SIZES)))]
        img = imagegen.render_scene(sigs[i % len(sigs)], rng, w, h)
        img.thumbnail((512, 512), Image.Resampling.BICUBIC)
        sha, rel = store.put(imagegen.encode(img), "jpg")
        items.append((sha[:16], rel))
    return items


def raw_forward(clip: Any, tensors: Any, batch: int) -> float:
    """Seconds for encode_image over pre-decoded tensors, in batches."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode(), clip.autocast():
        for i in range(0, len(tensors), batch):
            clip.model.encode_image(tensors[i : i + batch].to(clip.device))
    return time.perf_counter() - start


def tv100_embed(clip: Any, root: Any, items: list[tuple[str, str]], config: Any) -> float:
    """Seconds for embed_images from the files into a fresh `embeddings` table."""
    from tv100.tasks.rank.embed import embed_images

    for p in Path(root.path("tables")).glob("embeddings*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    start = time.perf_counter()
    summary = embed_images(root, items, clip, config)
    elapsed = time.perf_counter() - start
    assert summary.embedded_now == len(items), summary
    return elapsed


def sandbox_spec(weights: str | None, tmp: str) -> str:
    """The sandbox CLIP: its trained folder, or its architecture with random weights."""
    if weights:
        return weights
    import open_clip

    from tv100.sandbox.pretrain import SANDBOX_ARCH, PretrainConfig

    path = Path(tmp, f"{SANDBOX_ARCH}.json")
    path.write_text(json.dumps(PretrainConfig().model_cfg()))
    open_clip.add_model_config(path)
    return f"{SANDBOX_ARCH}@random"


def bench_model(
    spec: str, n: int, batch: int, repeat: int, tmp: str, workers: int | None, threads: int | None
) -> dict[str, Any]:
    import torch
    from PIL import Image

    from tv100.storage.root import DataRoot
    from tv100.tasks.rank.clip import default_threads, load_clip, set_torch_threads
    from tv100.tasks.rank.config import EmbedConfig
    from tv100.tasks.rank.embed import plan_parallelism

    clip = load_clip(spec)
    root = DataRoot(str(Path(tmp, f"data-{clip.key.replace('@', '-')}"))).ensure()
    items = make_images(root, n)
    tensors = []
    for _, rel in items:
        with Image.open(root.path(rel)) as img:
            tensors.append(clip.preprocess(img))
    stacked = torch.stack(tensors)
    config = EmbedConfig(batch_size=batch, workers=workers, threads=threads)
    plan = plan_parallelism(config, n)
    raw_threads = default_threads()
    best = {"raw": float("inf"), "tv100": float("inf")}
    # Warm-up (not timed): first forward passes and the worker start method's server.
    set_torch_threads(raw_threads)
    raw_forward(clip, stacked[: 2 * batch], batch)
    tv100_embed(clip, root, items[: 8 * batch], config)
    for r in range(repeat):
        for side in (("raw", "tv100") if r % 2 == 0 else ("tv100", "raw")):
            if side == "raw":
                set_torch_threads(raw_threads)
                best["raw"] = min(best["raw"], raw_forward(clip, stacked, batch))
            else:
                best["tv100"] = min(best["tv100"], tv100_embed(clip, root, items, config))
    raw_per_s, tv_per_s = n / best["raw"], n / best["tv100"]
    print(
        f"{clip.key}: {n} images, batch {batch}: raw forward {raw_per_s:.1f}/s "
        f"({raw_threads} threads); tv100 {tv_per_s:.1f}/s ({plan[0]} workers, {plan[1]} "
        f"threads); ratio {tv_per_s / raw_per_s:.2f}",
        flush=True,
    )
    return {
        "model_key": clip.key,
        "n": n,
        "raw_per_s": round(raw_per_s, 1),
        "tv100_per_s": round(tv_per_s, 1),
        "ratio": round(tv_per_s / raw_per_s, 3),
        "raw_threads": raw_threads,
        "tv100_workers": plan[0],
        "tv100_threads": plan[1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-vit", type=int, default=256, help="images for ViT-B-32")
    ap.add_argument("--n-sandbox", type=int, default=2048, help="images for the sandbox CLIP")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per side (best kept)")
    ap.add_argument("--models", default="vit-b-32,sandbox")
    ap.add_argument("--sandbox-weights", default=None, help="e.g. local-dir:<root>/models/...")
    ap.add_argument("--workers", type=int, default=None, help="override tv100's plan")
    ap.add_argument("--threads", type=int, default=None, help="override tv100's plan")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        flush=True,
    )
    out: dict[str, Any] = {"bench": "embed", "batch": args.batch, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="tv100-bench-embed-") as tmp:
        for name in args.models.split(","):
            if name == "vit-b-32":
                spec, n = "ViT-B-32@random", args.n_vit
            elif name == "sandbox":
                spec, n = sandbox_spec(args.sandbox_weights, tmp), args.n_sandbox
            else:
                raise SystemExit(f"unknown model {name!r}; expected vit-b-32 or sandbox")
            out[name.replace("-", "_")] = bench_model(
                spec, n, args.batch, args.repeat, tmp, args.workers, args.threads
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
