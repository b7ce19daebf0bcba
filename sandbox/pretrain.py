"""A pre-trained CLIP for the sandbox: it knows half of the sandbox's series and not the rest.

The rank stage keeps the series a pre-trained CLIP recognises worst. Real CLIP weights
cannot be used offline, and a real CLIP knows nothing of the sandbox's made-up series, so
this module trains a tiny open_clip model contrastively (`open_clip.ClipLoss`) on the
sandbox's *known* series only (`tv100.sandbox.world.Title.known`, half of the candidates). On the
served images it then recognises known series well and unknown ones at chance, which is the
ground truth the rank stage is tested against.

Training data: fresh renders of each known series (`tv100.sandbox.imagegen.render_scene` with the
series' signature), drawn from their own RNG streams ``(seed, series_id, "pretrain/<i>")``.
The images the sandbox serves come from other streams, so the model never sees an image it
is later evaluated on: it has to generalise from the series' look (colours, stripes, shape),
as a real CLIP generalises from its training set. Renders are drawn at ``render_scale`` of a
served size (a 64 px model sees no difference, and rendering is the slow part).
Captions: one of `TRAIN_TEMPLATES` per image (the paper's prompt is among them), filled with
the series' English title.

A batch holds distinct series only: ClipLoss treats every other pair in the batch as a
negative, so two images of one series in a batch would be pushed apart.

Distractor captions: a real CLIP's text tower has read millions of names; one that reads only
24 titles learns single words, and then an unseen title sharing a word with a known one
("Fallen Palace" vs "The Fallen Archive") steals the known series' images in zero-shot. So
each step also scores the images against made-up titles from the sandbox's own title
generator (never a title the sandbox serves, so the unknown series stay unread), as extra
negatives in an image-to-text cross-entropy added to the ClipLoss.

Model (`SANDBOX_ARCH`): ViT, 64 px, patch 8, width 192, 4 layers (1.9 M parameters); text
transformer width 128, 3 layers, the default open_clip tokenizer and vocabulary (49,408
tokens, so most of the text side's 6.9 M parameters are the token embedding), context 32;
8.8 M in all. 400 steps of 24 pairs (one per known series) plus 64 distractor captions take
~2 minutes on 2 CPU cores; measured on the default world: zero-shot top-1 0.98 on the known
series, 0.0-0.02 on the unknown ones (chance 0.021), for three training seeds.

Output: ``<root>/models/sandbox-clip-<hash>/`` in open_clip's ``local-dir:`` layout
(``open_clip_config.json`` + ``open_clip_model.safetensors``) plus ``pretrain.json`` (the
config, timings, losses); load it with ``load_clip(result.spec)``
(`tv100.tasks.rank.clip`). ``<hash>`` is the hash of the training config, and an existing
folder with that hash is reused, not retrained. Same config, same threads, same weights
(CPU training is deterministic).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from tv100.sandbox import imagegen
from tv100.sandbox.world import World, build_world, series_rng
from tv100.storage.root import DataRoot
from tv100.tasks import cancel
from tv100.tasks.progress import track

#: Bumped when training changes in a way the config does not show (invalidates caches).
PRETRAIN_VERSION = 1

MODELS_DIR = "models"
#: The progress artifacts of rendering the training images, and of training.
RENDER_PROGRESS = "sandbox-render-progress"
PRETRAIN_PROGRESS = "sandbox-pretrain-progress"
SANDBOX_ARCH = "sandbox-clip"

#: Caption templates used in training; the paper's zero-shot prompt comes first.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "a photo of the TV series {}",
    "a photo of the TV series {}",
    "{}",
    "a still from {}",
    "a scene from the TV series {}",
    "{} TV series",
    "an image from the show {}",
)


@dataclass(frozen=True)
class PretrainConfig:
    """Knobs of the sandbox CLIP and its training (all but `threads` go into the hash).

    Attributes:
        world_seed: the sandbox world's seed.
        n_series: the world's candidate count (`tv100.sandbox.world.build_world`).
        image_size: input side in pixels (8..512, a multiple of `patch_size`).
        patch_size: ViT patch side (2..64).
        width: ViT width (32..2048, a multiple of `head_width`).
        layers: ViT depth (1..48).
        head_width: attention head width of the ViT (16..256).
        embed_dim: joint embedding width (16..2048).
        text_width: text transformer width (32..2048, a multiple of 64).
        text_layers: text transformer depth (1..48).
        context_length: tokens per caption (8..77).
        renders_per_series: training images drawn per known series (1..10000).
        render_scale: renders are drawn at this fraction of a served size (0.1..1).
        steps: optimiser steps (1..1000000).
        batch_size: pairs per step, at most the number of known series (2..4096).
        lr: peak AdamW learning rate (0 < lr <= 1).
        weight_decay: AdamW weight decay (0..1).
        warmup_steps: linear warm-up before the cosine decay (0..steps).
        templates: caption templates, one ``{}`` each.
        distractor_pool: made-up titles used as extra negative captions (0..1000000).
        distractors_per_step: of them, how many each step adds (0..65536).
        seed: seeds initial weights and batch sampling.
        threads: torch threads while training (None: ``min(2, cpu_count)``); not hashed.
    """

    world_seed: int = 0
    n_series: int = 48
    image_size: int = 64
    patch_size: int = 8
    width: int = 192
    layers: int = 4
    head_width: int = 64
    embed_dim: int = 128
    text_width: int = 128
    text_layers: int = 3
    context_length: int = 32
    renders_per_series: int = 128
    render_scale: float = 0.5
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 40
    templates: tuple[str, ...] = TRAIN_TEMPLATES
    distractor_pool: int = 4096
    distractors_per_step: int = 64
    seed: int = 0
    threads: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        ranges: dict[str, tuple[float, float]] = {
            "n_series": (2, 100_000),
            "image_size": (8, 512),
            "patch_size": (2, 64),
            "width": (32, 2048),
            "layers": (1, 48),
            "head_width": (16, 256),
            "embed_dim": (16, 2048),
            "text_width": (32, 2048),
            "text_layers": (1, 48),
            "context_length": (8, 77),
            "renders_per_series": (1, 10_000),
            "render_scale": (0.1, 1.0),
            "steps": (1, 1_000_000),
            "batch_size": (2, 4096),
            "weight_decay": (0.0, 1.0),
            "warmup_steps": (0, self.steps),
            "distractor_pool": (0, 1_000_000),
            "distractors_per_step": (0, 65_536),
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"PretrainConfig.{name}={value!r}; expected {lo}..{hi}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"PretrainConfig.image_size={self.image_size} is not a multiple of "
                f"patch_size={self.patch_size}"
            )
        if self.width % self.head_width:
            raise ValueError(
                f"PretrainConfig.width={self.width} is not a multiple of "
                f"head_width={self.head_width}"
            )
        if self.text_width % 64:
            raise ValueError(
                f"PretrainConfig.text_width={self.text_width}; expected a multiple of 64"
            )
        if not 0 < self.lr <= 1:
            raise ValueError(f"PretrainConfig.lr={self.lr!r}; expected 0 < lr <= 1")
        if not self.templates or any(
            not isinstance(t, str) or t.count("{}") != 1 for t in self.templates
        ):
            raise ValueError(
                f"PretrainConfig.templates={self.templates!r}; expected strings with one '{{}}'"
            )
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ValueError(f"PretrainConfig.threads={self.threads!r}; expected 1..1024 or None")

    def model_cfg(self) -> dict[str, Any]:
        """The open_clip model config of the sandbox CLIP."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "layers": self.layers,
                "width": self.width,
                "head_width": self.head_width,
                "patch_size": self.patch_size,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": 49408,
                "width": self.text_width,
                "heads": self.text_width // 64,
                "layers": self.text_layers,
            },
        }

    def config_hash(self) -> str:
        """sha256 of every field that changes the weights (not `threads`), 16 hex digits."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        data["version"] = PRETRAIN_VERSION
        blob = json.dumps(data, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class PretrainResult:
    """Where the sandbox CLIP is and how it got there.

    Attributes:
        folder: the ``local-dir:`` folder.
        spec: ``local-dir:<folder>``, for `tv100.tasks.rank.clip.load_clip` and the rank stage.
        config_hash: `PretrainConfig.config_hash`.
        trained: False when an existing folder was reused.
        seconds: training time (render + steps) of the run that made the folder.
        known: series ids it was trained on.
        final_loss: mean ClipLoss over the last 20 steps.
    """

    folder: str
    spec: str
    config_hash: str
    trained: bool
    seconds: float
    known: tuple[str, ...]
    final_loss: float


def model_folder(root: DataRoot | str | os.PathLike[str], config: PretrainConfig) -> Path:
    """``<root>/models/sandbox-clip-<config hash>``."""
    return _local_base(root) / MODELS_DIR / f"{SANDBOX_ARCH}-{config.config_hash()}"


def _local_base(root: DataRoot | str | os.PathLike[str]) -> Path:
    if isinstance(root, DataRoot):
        if not root.is_local:
            raise ValueError(
                f"the sandbox CLIP needs a local data root, got {root.url!r}; "
                "expected a local path"
            )
        return Path(root.base)
    return Path(root).expanduser().resolve()


def known_series(world: World) -> list[tuple[str, str]]:
    """``(series_id, title)`` of the series the sandbox CLIP is trained on, by series_id."""
    return [(t.series_id, t.title) for t in world.titles if t.known]


def render_training_images(
    world: World, config: PretrainConfig, preprocess: Any
) -> tuple[list[str], Any]:
    """Render and preprocess the training images of every known series.

    Returns:
        ``(series_ids, images)``: images a float tensor ``(n_known, renders, 3, S, S)``.
    """
    import torch

    from tv100.sandbox.imagehost import build_catalog

    signatures = build_catalog(world, scale=0.01).signatures  # no image is rendered here
    ids = [sid for sid, _ in known_series(world)]
    per_series = []
    with track("render training images", len(ids), "series", RENDER_PROGRESS) as tracker:
        for sid in ids:
            cancel.check()  # rendering is the slow part: stop between series
            sig = signatures[sid]
            tensors = []
            for i in range(config.renders_per_series):
                rng = series_rng(world.seed, sid, f"pretrain/{i}")
                w, h = imagegen.SIZES[int(rng.integers(len(imagegen.SIZES)))]
                w = max(config.image_size, round(w * config.render_scale))
                h = max(config.image_size, round(h * config.render_scale))
                tensors.append(preprocess(imagegen.render_scene(sig, rng, w, h)))
            per_series.append(torch.stack(tensors))
            tracker.advance()
    return ids, torch.stack(per_series)


def distractor_titles(world: World, n: int) -> list[str]:
    """`n` made-up titles in the sandbox's style, none of them a title the world serves.

    Drawn from the world's own title generator on a separate stream (purpose
    ``"pretrain/distractors"``), so the same world always gives the same list.
    """
    from tv100.sandbox.world import COUNTRY_SHARES, _english_title

    taken = {t.title for t in world.titles}
    rng = series_rng(world.seed, "", "pretrain/distractors")
    countries = list(COUNTRY_SHARES)
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(50 * n):
        if len(out) == n:
            break
        title = _english_title(rng, countries[int(rng.integers(len(countries)))], None)
        if title not in taken and title not in seen:
            seen.add(title)
            out.append(title)
    return out


def _lr_at(step: int, config: PretrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = (step - config.warmup_steps) / span
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    world: World, config: PretrainConfig
) -> tuple[Any, list[str], list[float], float]:
    """Train the sandbox CLIP in memory.

    Returns:
        ``(model, known series ids, per-step losses, seconds)``.
    """
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from tv100.tasks.rank.clip import set_torch_threads

    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    set_torch_threads(config.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = open_clip.CLIP(**config.model_cfg())
            # The eval transform a loaded model gets (open_clip's defaults at this size), so
            # training sees exactly what zero-shot evaluation will.
            preprocess = image_transform_v2(PreprocessCfg(size=config.image_size), is_train=False)
            tokenizer = open_clip.SimpleTokenizer(context_length=config.context_length)
            titles = dict(known_series(world))
            ids, images = render_training_images(world, config, preprocess)
            if len(ids) < 2:
                raise ValueError(
                    f"the sandbox world has {len(ids)} known series; expected at least 2"
                )
            captions = tokenizer(
                [t.format(titles[sid]) for sid in ids for t in config.templates]
            ).view(len(ids), len(config.templates), -1)
            pool = distractor_titles(world, config.distractor_pool)
            distractors = tokenizer(pool) if pool else None
            losses = _fit(model, images, captions, distractors, config)
    finally:
        torch.set_num_threads(previous_threads)
    model.eval()
    return model, ids, losses, time.perf_counter() - started


def _fit(
    model: Any, images: Any, captions: Any, distractors: Any, config: PretrainConfig
) -> list[float]:
    import open_clip
    import torch

    n_classes, n_renders = images.shape[0], images.shape[1]
    n_templates = captions.shape[1]
    batch = min(config.batch_size, n_classes)
    rng = np.random.default_rng(config.seed)
    # Each series walks through its renders in its own shuffled order, so every render is
    # used about equally often.
    orders = [rng.permutation(n_renders) for _ in range(n_classes)]
    cursor = np.zeros(n_classes, dtype=np.int64)
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        # Gains, biases, embeddings and the temperature are not decayed (CLIP's recipe).
        flat = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if flat else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    loss_fn = open_clip.ClipLoss()
    max_scale = math.log(100.0)
    losses: list[float] = []
    model.train()
    with track("pre-train sandbox CLIP", config.steps, "steps", PRETRAIN_PROGRESS) as tracker:
        for step in range(config.steps):
            cancel.check()  # SIGTERM / Ctrl-C: stop between steps (nothing is saved until the end)
            classes = rng.permutation(n_classes)[:batch]
            picks = []
            for c in classes:
                if cursor[c] == n_renders:
                    orders[c] = rng.permutation(n_renders)
                    cursor[c] = 0
                picks.append(orders[c][cursor[c]])
                cursor[c] += 1
            templates = rng.integers(n_templates, size=batch)
            x = images[torch.as_tensor(classes), torch.as_tensor(np.array(picks))]
            t = captions[torch.as_tensor(classes), torch.as_tensor(templates)]
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, config)
            img = model.encode_image(x, normalize=True)
            txt = model.encode_text(t, normalize=True)
            scale = model.logit_scale.exp()
            loss = loss_fn(img, txt, scale)
            if distractors is not None and config.distractors_per_step:
                k = min(config.distractors_per_step, len(distractors))
                pick = torch.as_tensor(rng.choice(len(distractors), size=k, replace=False))
                neg = model.encode_text(distractors[pick], normalize=True)
                logits = scale * img @ torch.cat([txt, neg]).T
                loss = loss + torch.nn.functional.cross_entropy(logits, torch.arange(len(img)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, max_scale)
            losses.append(float(loss.detach()))
            tracker.set_note(f"loss {np.mean(losses[-10:]):.3f}")
            tracker.advance()
    return losses


def pretrain(
    root: DataRoot | str | os.PathLike[str],
    config: PretrainConfig | None = None,
    world: World | None = None,
) -> PretrainResult:
    """Train the sandbox CLIP into the data root, or reuse the one already there.

    Args:
        root: a local data root; the model goes to ``<root>/models/sandbox-clip-<hash>/``.
        config: `PretrainConfig` (defaults: the default sandbox world, ~2 min on 2 cores).
        world: the sandbox world, if already built (must match `config.world_seed` and
            `config.n_series`); built from the config otherwise.

    Returns:
        A `PretrainResult`; ``result.spec`` loads it with `tv100.tasks.rank.clip.load_clip`.
    """
    from tv100.tasks.rank.clip import save_local_dir

    cfg = config or PretrainConfig()
    folder = model_folder(root, cfg)
    meta_path = folder / "pretrain.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return PretrainResult(
            folder=str(folder),
            spec=f"local-dir:{folder}",
            config_hash=cfg.config_hash(),
            trained=False,
            seconds=float(meta["seconds"]),
            known=tuple(meta["known"]),
            final_loss=float(meta["final_loss"]),
        )
    if world is None:
        world = build_world(seed=cfg.world_seed, n_series=cfg.n_series)
    elif world.seed != cfg.world_seed or sum(t.expected for t in world.titles) != cfg.n_series:
        raise ValueError(
            f"world (seed {world.seed}) does not match PretrainConfig(world_seed="
            f"{cfg.world_seed}, n_series={cfg.n_series})"
        )
    model, ids, losses, seconds = train(world, cfg)
    final = float(np.mean(losses[-20:]))
    meta = {
        "config": {**asdict(cfg), "threads": None},
        "config_hash": cfg.config_hash(),
        "seconds": round(seconds, 3),
        "known": ids,
        "final_loss": final,
        "losses_every_10": [round(v, 5) for v in losses[::10]],
    }
    # save_local_dir renames the whole folder into place, so pretrain.json (the cache
    # marker checked above) never exists without the weights beside it.
    save_local_dir(
        folder,
        model,
        cfg.model_cfg(),
        files={"pretrain.json": json.dumps(meta, indent=2, sort_keys=True) + "\n"},
    )
    return PretrainResult(
        folder=str(folder),
        spec=f"local-dir:{folder}",
        config_hash=cfg.config_hash(),
        trained=True,
        seconds=seconds,
        known=tuple(ids),
        final_loss=final,
    )
