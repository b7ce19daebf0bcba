"""Embedding benchmark: tv100's embedding stage over image files vs the raw forward pass.

For each model, on the same N stored JPEGs (sandbox renders, longer side 512 like the
downloader's output, quality 85) and the same batch size:

  (a) raw: ``model.encode_image`` on tensors decoded and preprocessed beforehand (not
      timed), under ``torch.inference_mode``, with ``min(2, cores)`` torch threads: the floor
      any embedding pipeline pays;
  (b) tv100: `tv100.tasks.rank.embed.embed_images` end to end from the files (reading, decoding and
      preprocessing as the stage plans them: on 2 CPU threads, `Lanes`; the forward pass,
      normalising, writing the shards, compacting the table) with its default plan of workers
      and threads.

CPU precision (``precision``): ViT-B-32's image tower (random init) on the same kind of
pre-decoded images, in fp32 (the reference), bf16 autocast, channels-last memory format, and
both: images/s of ``encode_image`` and how often the zero-shot top-1 agrees with fp32's. With
random weights there are no class texts worth encoding, so the class prototypes are random
unit vectors (seeded); a mode is exact enough at >= 99% agreement. The JSON also gives each
mode's smallest cosine to the fp32 vector of the same image.

Models: open_clip ViT-B-32 (random init: throughput does not depend on the weights, and no
weights can be downloaded here) and the sandbox CLIP architecture (`tv100.sandbox.pretrain`; its
trained weights with ``--sandbox-weights local-dir:...``, else random init). Sides run one
after the other, `--repeat` times in alternating order; the best run of each is kept. The
last line printed is one JSON object.

Usage::

    .venv/bin/python bench/embed.py [--n-vit 256] [--n-sandbox 2048] [--batch 64]
        [--repeat 2] [--models vit-b-32,sandbox,precision] [--n-precision 128]
        [--sandbox-weights local-dir:PATH]
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


#: The image tower of the precision section (random init: nothing is downloaded).
PRECISION_SPEC = "ViT-B-32@random"
#: CPU precision modes: name → (autocast dtype or None, channels-last).
PRECISION_MODES = {
    "fp32": (None, False),
    "bf16": ("bfloat16", False),
    "channels_last": (None, True),
    "bf16_channels_last": ("bfloat16", True),
}
#: Zero-shot agreement with fp32 a mode needs to count as exact enough.
MIN_AGREEMENT = 0.99


def encode_mode(
    clip: Any, tensors: Any, batch: int, dtype: str | None, channels_last: bool
) -> tuple[float, Any]:
    """Seconds and unit float32 features of encode_image in one precision mode (CPU)."""
    import contextlib

    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    clip.model.to(memory_format=fmt)
    amp: Any = (
        torch.autocast("cpu", dtype=getattr(torch, dtype)) if dtype else contextlib.nullcontext()
    )
    feats = []
    try:
        start = time.perf_counter()
        with torch.inference_mode(), amp:
            for i in range(0, len(tensors), batch):
                x = tensors[i : i + batch].contiguous(memory_format=fmt)
                feats.append(clip.model.encode_image(x).float())
        elapsed = time.perf_counter() - start
    finally:
        clip.model.to(memory_format=torch.contiguous_format)
    return elapsed, torch.nn.functional.normalize(torch.cat(feats), dim=-1)


def bench_precision(
    spec: str, n: int, batch: int, repeat: int, tmp: str, classes: int = 100
) -> dict[str, Any]:
    """Throughput and zero-shot agreement of each CPU precision mode against fp32."""
    import torch
    from PIL import Image

    from tv100.storage.root import DataRoot
    from tv100.tasks.rank.clip import default_threads, load_clip, set_torch_threads

    clip = load_clip(spec, "cpu")
    root = DataRoot(str(Path(tmp, "data-precision"))).ensure()
    items = make_images(root, n, seed=1)
    tensors = []
    for _, rel in items:
        with Image.open(root.path(rel)) as img:
            tensors.append(clip.preprocess(img))
    stacked = torch.stack(tensors)
    threads = set_torch_threads(default_threads())
    best = {m: float("inf") for m in PRECISION_MODES}
    feats: dict[str, Any] = {}
    for dtype, cl in PRECISION_MODES.values():  # warm-up, not timed
        encode_mode(clip, stacked[:batch], batch, dtype, cl)
    for r in range(repeat):
        order = list(PRECISION_MODES) if r % 2 == 0 else list(reversed(PRECISION_MODES))
        for mode in order:
            dtype, cl = PRECISION_MODES[mode]
            elapsed, feats[mode] = encode_mode(clip, stacked, batch, dtype, cl)
            best[mode] = min(best[mode], elapsed)
    ref = feats["fp32"]
    protos = torch.nn.functional.normalize(
        torch.randn(classes, ref.shape[1], generator=torch.Generator().manual_seed(0)), dim=-1
    )
    top1_ref = (ref @ protos.T).argmax(dim=1)
    out: dict[str, Any] = {
        "model_key": clip.key,
        "n": n,
        "threads": threads,
        "classes": classes,
        "prototypes": "random unit vectors (seed 0)",
    }
    for mode in PRECISION_MODES:
        f = feats[mode]
        agree = float((f @ protos.T).argmax(dim=1).eq(top1_ref).float().mean())
        per_s = n / best[mode]
        out[mode] = {
            "per_s": round(per_s, 1),
            "speedup": round(best["fp32"] / best[mode], 3),
            "top1_agreement": round(agree, 4),
            "min_cosine": round(float((f * ref).sum(dim=1).min()), 5),
            "exact_enough": agree >= MIN_AGREEMENT,
        }
        print(
            f"{clip.key} {mode}: {per_s:.1f}/s ({out[mode]['speedup']:.2f}x fp32), "
            f"top-1 agreement {agree:.4f}, min cosine {out[mode]['min_cosine']}",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-vit", type=int, default=256, help="images for ViT-B-32")
    ap.add_argument("--n-sandbox", type=int, default=2048, help="images for the sandbox CLIP")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per side (best kept)")
    ap.add_argument("--n-precision", type=int, default=128, help="images for precision")
    ap.add_argument("--models", default="vit-b-32,sandbox,precision")
    ap.add_argument("--sandbox-weights", default=None, help="e.g. local-dir:<root>/models/...")
    ap.add_argument("--workers", type=int, default=None, help="override tv100's plan")
    ap.add_argument("--threads", type=int, default=None, help="override tv100's plan")
    args = ap.parse_args(argv)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        flush=True,
    )
    out: dict[str, Any] = {"bench": "embed", "batch": args.batch, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="tv100-bench-embed-") as tmp:
        for name in args.models.split(","):
            if name == "precision":
                out["precision"] = bench_precision(
                    PRECISION_SPEC, args.n_precision, args.batch, args.repeat, tmp
                )
                continue
            if name == "vit-b-32":
                spec, n = "ViT-B-32@random", args.n_vit
            elif name == "sandbox":
                spec, n = sandbox_spec(args.sandbox_weights, tmp), args.n_sandbox
            else:
                raise SystemExit(
                    f"unknown model {name!r}; expected vit-b-32, sandbox or precision"
                )
            out[name.replace("-", "_")] = bench_model(
                spec, n, args.batch, args.repeat, tmp, args.workers, args.threads
            )
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
