"""Recipes that turn a CLIP into a TV-series classifier, and the tables their metrics go to.

Four recipes, the paper's figure (d) plus the usual robust fine-tuning baseline:

- ``zeroshot``: the text tower's class weights (`tv100.tasks.rank.clip.class_weights`, prompt
  ``"a photo of the TV series {}"``) score L2-normalised image features.
- ``linear``: multinomial logistic regression on frozen, L2-normalised image features
  (computed once, through `tv100.tasks.rank.embed` and its `embeddings` table, which the zero-shot
  recipe reads too), full-batch L-BFGS in torch; the L2 penalty is swept on val.
- ``finetune``: the image tower and a linear head (initialised from the zero-shot text
  weights times the logit scale) trained end to end with AdamW, linear warm-up then cosine
  decay, gradient clipping, modest augmentation (random resized crop, horizontal flip) and
  autocast + GradScaler on CUDA.
- ``wiseft``: WiSE-FT (Wortsman et al. 2022), the weight-space interpolation
  ``(1 - α) · zero-shot + α · fine-tuned`` of image tower and head, α chosen on val. It
  reuses the fine-tune run with the same knobs (``runs/<finetune run_id>/``), so running
  ``finetune`` then ``wiseft`` trains once.

Long tail (switchable, ``linear``/``finetune``/``wiseft``): class-balanced or square-root
sampling (`TrainConfig.sampling`; the full-batch probe weights its loss by the same
probabilities instead of sampling) and logit adjustment (Menon et al. 2021,
`TrainConfig.logit_adjust_tau`): ``τ · log prior`` is added to the logits in the training
loss only, so the model learns scores with the label prior divided out.

Every run has a `run_id` (a hash of model key, recipe, the recipe's knobs, the split table,
the class names and the seed) and a folder ``<root>/runs/<run_id>/``. Fine-tuning writes
``ckpt-last.pt`` there after every epoch (weights, optimizer, scheduler, scaler, RNG
states, epoch, step, loss history) through temp file + rename; a killed run started again
resumes from it and ends with the same numbers as an uninterrupted one on CPU, because the
data order is a function of ``(seed, epoch)`` and each sample's augmentation a function of
``(seed, epoch, position)``, never of how far an RNG stream had got. ``result.json`` in the
folder records the outcome.

`metrics_tables` turns a result into rows of `METRICS` and `CLASS_METRICS` (schemas defined
here for now) and `append_metrics` adds them to the data root's ``metrics`` and
``class_metrics`` tables, replacing only the rows of the same run.

torch and open_clip are imported inside functions (the CLI imports this module to wire
flows).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot, remove_temp_files, write_bytes_atomic
from tv100.storage.schemas import CLASS_METRICS, METRICS
from tv100.storage.tables import read_table, table_exists, write_table
from tv100.tasks.rank.clip import DEFAULT_TEMPLATES, Clip, ModelSpec, check_templates
from tv100.tasks.train.metrics import Tiers, classification_metrics, metric_rows

log = logging.getLogger(__name__)

#: The recipes, in the order figures show them (`tv100.tasks.report.analysis.RECIPES`).
RECIPES = ("zeroshot", "linear", "finetune", "wiseft")
#: ``uniform``: every training image once per epoch, shuffled. ``balanced``: images drawn
#: with replacement so every class is equally likely. ``sqrt``: class probability
#: proportional to the square root of its image count (between the two).
SAMPLINGS = ("uniform", "balanced", "sqrt")
SPLIT_NAMES = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
RUNS_DIR = "runs"
CHECKPOINT_NAME = "ckpt-last.pt"
RESULT_NAME = "result.json"
METRICS_TABLE = "metrics"
CLASS_METRICS_TABLE = "class_metrics"
#: Bumped when a recipe changes in a way its knobs do not show (new run ids).
RECIPE_VERSION = 1



# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of a recipe run. Only those a recipe uses go into its run id.

    Attributes:
        recipe: one of `RECIPES`.
        epochs: fine-tuning epochs (1..10000).
        batch_size: images per training step and per evaluation batch (1..65536).
        lr: peak AdamW learning rate (0 < lr <= 1); real CLIPs want ~1e-5.
        weight_decay: AdamW decoupled weight decay on matrices (0..10); gains, biases,
            embeddings and the logit scale are not decayed.
        warmup_steps: steps of linear warm-up before the cosine decay to 0 (0..10**9).
        grad_clip: max global gradient norm (0..1e6; 0 turns clipping off).
        sampling: one of `SAMPLINGS` (long-tail option).
        logit_adjust_tau: τ of the logit-adjusted loss (0..10; 0 turns it off).
        crop_min_scale: smallest area share of the random resized crop (0 < s <= 1; 1 and
            `hflip` 0 mean no augmentation).
        hflip: probability of a horizontal flip (0..1).
        wiseft_alphas: the α swept on val by ``wiseft`` (each in 0..1, at least one).
        probe_weight_decays: L2 penalties swept on val by ``linear`` (each 0..1e3; the
            loss is mean cross-entropy + wd/2·‖W‖², i.e. sklearn's C = 1/(wd · n_train)).
        probe_max_iter: L-BFGS iterations per probe fit (1..100000); the fits run from
            the strongest penalty down, each warm-started from the previous one.
        templates: prompt templates of the zero-shot weights (and the fine-tune head init).
        seed: seeds initialisation, data order and augmentation (0..2**63-1).
        threads: torch intra-op threads (None: ``min(2, cpu_count)``; 1..1024).
        workers: DataLoader worker processes (0..64); keep threads + workers within the
            free cores on a shared machine.
    """

    recipe: str = "finetune"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 500
    grad_clip: float = 1.0
    sampling: str = "uniform"
    logit_adjust_tau: float = 0.0
    crop_min_scale: float = 0.6
    hflip: float = 0.5
    wiseft_alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    probe_weight_decays: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    probe_max_iter: int = 300
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    seed: int = 0
    threads: int | None = field(default=None, compare=False)
    workers: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"TrainConfig.recipe={self.recipe!r}; expected one of {RECIPES}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(
                f"TrainConfig.sampling={self.sampling!r}; expected one of {SAMPLINGS}"
            )
        ints: dict[str, tuple[int, int]] = {
            "epochs": (1, 10_000),
            "batch_size": (1, 65_536),
            "warmup_steps": (0, 10**9),
            "probe_max_iter": (1, 100_000),
            "seed": (0, 2**63 - 1),
            "workers": (0, 64),
        }
        for name, (lo, hi) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"TrainConfig.{name}={v!r}; expected an integer in {lo}..{hi}")
        if self.threads is not None and (
            isinstance(self.threads, bool)
            or not isinstance(self.threads, int)
            or not 1 <= self.threads <= 1024
        ):
            raise ValueError(f"TrainConfig.threads={self.threads!r}; expected 1..1024 or None")
        floats: dict[str, tuple[float, float, bool]] = {
            # name: (low, high, low is exclusive)
            "lr": (0.0, 1.0, True),
            "weight_decay": (0.0, 10.0, False),
            "grad_clip": (0.0, 1e6, False),
            "logit_adjust_tau": (0.0, 10.0, False),
            "crop_min_scale": (0.0, 1.0, True),
            "hflip": (0.0, 1.0, False),
        }
        for name, (flo, fhi, open_lo) in floats.items():
            v = getattr(self, name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or not ((flo < v) if open_lo else (flo <= v)) or v > fhi:
                bound = f"{flo} < x <= {fhi}" if open_lo else f"{flo} <= x <= {fhi}"
                raise ValueError(f"TrainConfig.{name}={v!r}; expected {bound}")
        for name, top in (("wiseft_alphas", 1.0), ("probe_weight_decays", 1e3)):
            vs = getattr(self, name)
            if (
                not isinstance(vs, tuple)
                or not vs
                or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= top
                    for v in vs
                )
            ):
                raise ValueError(
                    f"TrainConfig.{name}={vs!r}; expected a non-empty tuple of numbers in "
                    f"0..{top}"
                )
        if not isinstance(self.templates, tuple):
            raise ValueError(f"TrainConfig.templates={self.templates!r}; expected a tuple")
        check_templates(self.templates)

    def knobs(self) -> dict[str, Any]:
        """The knobs `recipe` uses (what its run id hashes), as JSON-ready values."""
        r = self.recipe
        out: dict[str, Any] = {"seed": self.seed}
        if r in ("zeroshot", "finetune", "wiseft"):
            out["templates"] = list(self.templates)
        if r in ("linear", "finetune", "wiseft"):
            out["sampling"] = self.sampling
            out["logit_adjust_tau"] = float(self.logit_adjust_tau)
        if r == "linear":
            out["probe_weight_decays"] = [float(v) for v in self.probe_weight_decays]
            out["probe_max_iter"] = self.probe_max_iter
            out["batch_size"] = self.batch_size
        if r in ("finetune", "wiseft"):
            out.update(
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=float(self.lr),
                weight_decay=float(self.weight_decay),
                warmup_steps=self.warmup_steps,
                grad_clip=float(self.grad_clip),
                crop_min_scale=float(self.crop_min_scale),
                hflip=float(self.hflip),
            )
        if r == "wiseft":
            out["wiseft_alphas"] = [float(v) for v in self.wiseft_alphas]
        return out


@dataclass(frozen=True, eq=False)
class RecipeResult:
    """What a recipe run produced.

    Attributes:
        run_id: the run's id (`run_id`); its folder is ``<root>/runs/<run_id>/``.
        model_key: `tv100.tasks.rank.clip.Clip.key` of the model.
        recipe: the recipe.
        hyperparameters: the knobs (`TrainConfig.knobs`) plus what was chosen on val
            (``weight_decay`` and ``val_top1_by_weight_decay`` for linear, ``alpha`` and
            ``val_top1_by_alpha`` for WiSE-FT).
        scores_by_split: ``{split: (scores (n, classes) float32, labels (n,) int64,
            image_ids)}`` for val and test (those with images), rows sorted by image id.
        metrics_by_split: `tv100.tasks.train.metrics.classification_metrics` of each split.
        train_counts: training images per class index.
        class_series: series id per class index.
        history: per-epoch ``{"epoch", "loss", "lr"}`` of fine-tuning (empty otherwise).
        resumed_from_epoch: epochs found done in the checkpoint when the run started (0:
            trained from scratch; == epochs: a finished run reused).
        seconds: wall time of this call.
    """

    run_id: str
    model_key: str
    recipe: str
    hyperparameters: dict[str, Any]
    scores_by_split: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]
    metrics_by_split: dict[str, dict[str, Any]]
    train_counts: dict[int, int]
    class_series: dict[int, str]
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    seconds: float = 0.0

    def tables(
        self, tiers: Tiers | None = None, created_at: datetime | None = None
    ) -> tuple[pa.Table, pa.Table]:
        """`metrics_tables` of this result: ``(metrics, class_metrics)``."""
        return metrics_tables(
            self.run_id, self.model_key, self.recipe, self.hyperparameters,
            self.metrics_by_split, self.class_series, self.train_counts, tiers, created_at,
        )


# --------------------------------------------------------------------------- identities


def splits_digest(splits: pa.Table) -> str:
    """sha256 of the split assignment (image_id, series_id, class_index, split), row-order
    independent."""
    cols = [splits.column(c).to_pylist() for c in ("image_id", "series_id", "class_index",
                                                   "split")]
    lines = sorted("\t".join(str(v) for v in row) for row in zip(*cols, strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def run_id(
    model_key: str,
    recipe: str,
    knobs: Mapping[str, Any],
    split_digest: str,
    seed: int,
    classnames: Sequence[str] = (),
) -> str:
    """The id of a run: ``<recipe>-<16 hex digits>`` of everything that changes its numbers.

    Args:
        model_key: the model's key (architecture + exact weights).
        recipe: the recipe.
        knobs: its knobs (`TrainConfig.knobs`).
        split_digest: `splits_digest` of the split table.
        seed: the seed.
        classnames: the class names (they make the zero-shot weights).
    """
    blob = json.dumps(
        {
            "version": RECIPE_VERSION,
            "model_key": model_key,
            "recipe": recipe,
            "knobs": dict(knobs),
            "splits": split_digest,
            "seed": seed,
            "classnames": list(classnames),
        },
        sort_keys=True,
    ).encode()
    return f"{recipe}-{hashlib.sha256(blob).hexdigest()[:16]}"


# --------------------------------------------------------------------------- long tail


def train_counts_of(splits: pa.Table) -> dict[int, int]:
    """Training images per class index (classes without any are absent)."""
    counts: dict[int, int] = {}
    cols = zip(splits.column("class_index").to_pylist(), splits.column("split").to_pylist(),
               strict=True)
    for c, s in cols:
        if s == "train":
            counts[int(c)] = counts.get(int(c), 0) + 1
    return counts


def sampling_probabilities(labels: np.ndarray, sampling: str) -> np.ndarray:
    """Per-sample draw probability of `sampling` (sums to 1).

    A class with ``n_c`` images gets total mass proportional to ``n_c ** q`` (q = 1
    uniform, 0.5 sqrt, 0 balanced), shared equally by its images.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r}; expected one of {SAMPLINGS}")
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        raise ValueError("labels is empty; expected at least one training image")
    q = {"uniform": 1.0, "sqrt": 0.5, "balanced": 0.0}[sampling]
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    per_sample = counts[inverse].astype(np.float64) ** (q - 1.0)
    return per_sample / per_sample.sum()


def epoch_order(labels: np.ndarray, seed: int, epoch: int, sampling: str) -> np.ndarray:
    """Indices of the training images in the order epoch `epoch` visits them.

    A pure function of ``(labels, seed, epoch, sampling)``, so a run resumed at epoch e
    sees exactly the order an uninterrupted run saw. ``uniform`` is a permutation; the
    other samplings draw ``len(labels)`` indices with replacement.
    """
    rng = np.random.default_rng([seed, epoch, 0x7476])
    n = len(labels)
    if sampling == "uniform":
        sampling_probabilities(labels, sampling)  # validates
        return rng.permutation(n).astype(np.int64)
    p = sampling_probabilities(labels, sampling)
    return rng.choice(n, size=n, replace=True, p=p).astype(np.int64)


def logit_offsets(train_counts: Mapping[int, int], n_classes: int, tau: float) -> np.ndarray:
    """``τ · log prior`` per class, the offsets of the logit-adjusted loss.

    The prior is the share of training images per class; a class with none counts as one
    image, so every offset stays finite.

    Returns:
        ``(n_classes,)`` float64; all zero when ``tau == 0``.
    """
    counts = np.array([max(int(train_counts.get(c, 0)), 1) for c in range(n_classes)],
                      dtype=np.float64)
    return float(tau) * np.log(counts / counts.sum())


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier at `step`: linear warm-up to 1, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------- data


def _sample_seed(seed: int, epoch: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0])


def _seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and python RNGs from torch's per-worker seed."""
    import torch

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _load_rgb(root: DataRoot, relpath: str) -> Any:
    from PIL import Image

    with root.fs.open(root.path(relpath), "rb") as f:
        img = Image.open(f)
        img.load()
    return img.convert("RGB")


class _Images:
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
        img = _load_rgb(self.root, self.relpaths[idx])
        if not self.augment:
            return self.transform(img), idx
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_sample_seed(self.seed, self.epoch, int(pos)))
            return self.transform(img), idx


def _mp_context() -> Any:
    """``forkserver`` (else ``spawn``) for workers: ``fork`` can deadlock a child of a
    process running Prefect's and OpenMP's threads (as `tv100.tasks.rank.embed` explains)."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    name = "forkserver" if "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(name)
    if name == "forkserver":
        # torch and this module imported once in the server: workers start in milliseconds.
        ctx.set_forkserver_preload(["torch", __name__])
    return ctx


def _loader(dataset: _Images, batch_size: int, workers: int, seed: int, device: Any) -> Any:
    import torch

    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"multiprocessing_context": _mp_context(), "worker_init_fn": _seed_worker}
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


def frozen_features(
    clip: Clip,
    root: DataRoot,
    image_ids: Sequence[str],
    relpaths: Sequence[str],
    config: TrainConfig,
) -> np.ndarray:
    """Unit-length features of the frozen model, ``(n, dim)`` in `image_ids` order.

    Goes through `tv100.tasks.rank.embed` (the `embeddings` table), so images the zero-shot ranking
    stage (or an earlier run) already embedded with this model are not encoded again.

    Raises:
        ValueError: some images could not be read or decoded (their ids are named).
    """
    from tv100.tasks.rank.embed import EmbedConfig, embed_images, load_embeddings

    if not image_ids:
        return np.zeros((0, clip.embed_dim), dtype=np.float32)
    embed_images(
        root,
        list(zip(image_ids, relpaths, strict=True)),
        clip,
        EmbedConfig(batch_size=min(config.batch_size, 4096), workers=config.workers,
                    threads=config.threads),
    )
    ids, vectors = load_embeddings(root, clip.key, image_ids)
    row = {i: k for k, i in enumerate(ids)}
    lost = [i for i in image_ids if i not in row]
    if lost:
        raise ValueError(
            f"{len(lost)} images have no embedding (read or decode errors in the "
            f"`embeddings` table), e.g. {lost[0]!r}; drop them from the splits"
        )
    return np.ascontiguousarray(vectors[[row[i] for i in image_ids]], dtype=np.float32)


# --------------------------------------------------------------------------- linear probe


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    weight_decay: float,
    offsets: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    max_iter: int = 300,
    device: str | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch L-BFGS (strong Wolfe line search).

    Minimises ``Σ w_i · CE(x_i W^T + b + offsets, y_i) / Σ w_i + wd/2 · ‖W‖²`` (the bias is
    not penalised). Starts at zero or `init`; deterministic.

    Args:
        features: ``(n, dim)``.
        labels: ``(n,)`` class indices.
        n_classes: number of classes.
        weight_decay: the L2 penalty wd.
        offsets: per-class logit offsets added in the loss only (logit adjustment).
        sample_weights: per-sample loss weights (class-balanced reweighting).
        max_iter: L-BFGS iterations.
        device: torch device (None: CPU).
        init: ``(W, b)`` to start from (a warm start along a regularisation path).

    Returns:
        ``(W (n_classes, dim), b (n_classes,))`` float32; score with ``x W^T + b``.
    """
    import torch
    import torch.nn.functional as F

    dev = torch.device(device or "cpu")
    # float64: the probe is small next to the encoder, and L-BFGS converges cleanly.
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64, device=dev)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=dev)
    off = torch.zeros(n_classes, dtype=torch.float64, device=dev)
    if offsets is not None:
        off = torch.as_tensor(np.asarray(offsets), dtype=torch.float64, device=dev)
    w = torch.ones(len(y), dtype=torch.float64, device=dev)
    if sample_weights is not None:
        w = torch.as_tensor(np.asarray(sample_weights), dtype=torch.float64, device=dev)
    w = w / w.sum()
    if init is None:
        W = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, device=dev)
        b = torch.zeros(n_classes, dtype=torch.float64, device=dev)
    else:
        W = torch.as_tensor(np.asarray(init[0]), dtype=torch.float64, device=dev).clone()
        b = torch.as_tensor(np.asarray(init[1]), dtype=torch.float64, device=dev).clone()
    W.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [W, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12,
    )

    def closure() -> Any:
        opt.zero_grad()
        ce = F.cross_entropy(x @ W.T + b + off, y, reduction="none")
        loss = (w * ce).sum() + 0.5 * weight_decay * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (W.detach().float().cpu().numpy(), b.detach().float().cpu().numpy())


def _nll(scores: np.ndarray, labels: np.ndarray) -> float:
    s = scores.astype(np.float64)
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def _choose(candidates: list[tuple[float, np.ndarray]], labels: np.ndarray) -> int:
    """Index of the candidate best on val: highest top-1, ties to the lower NLL, then the
    first listed."""
    keys = []
    for _, scores in candidates:
        top1 = float((scores.argmax(axis=1) == labels).mean())
        keys.append((-top1, _nll(scores, labels)))
    return min(range(len(keys)), key=lambda i: keys[i])


# --------------------------------------------------------------------------- fine-tuning


def _head(weights: np.ndarray, scale: float, device: Any) -> Any:
    import torch

    head = torch.nn.Linear(weights.shape[1], weights.shape[0], bias=True)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weights) * scale)
        head.bias.zero_()
    return head.to(device)


def _logits(visual: Any, head: Any, x: Any) -> Any:
    import torch.nn.functional as F

    return head(F.normalize(visual(x), dim=-1))


def _param_groups(visual: Any, head: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[Any] = []
    no_decay: list[Any] = []
    named = [*visual.named_parameters(), *(("head." + n, p) for n, p in head.named_parameters())]
    for name, p in named:
        # Gains, biases and embeddings are not decayed (CLIP's and WiSE-FT's convention).
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _rng_state() -> dict[str, Any]:
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.as_tensor(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def _save_checkpoint(root: DataRoot, relpath: str, state: dict[str, Any]) -> None:
    """temp + rename: a reader (or a resumed run) sees the old checkpoint or the new one."""
    import torch

    if not root.is_local:
        buf = io.BytesIO()
        torch.save(state, buf)
        write_bytes_atomic(root, relpath, buf.getvalue())
        return
    final = root.path(relpath)
    folder = os.path.dirname(final)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}-{os.path.basename(final)}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load_checkpoint(root: DataRoot, relpath: str) -> dict[str, Any] | None:
    """The checkpoint on CPU (RNG states must be CPU tensors; `load_state_dict` moves the
    weights and optimizer state to the parameters' device)."""
    import torch

    path = root.path(relpath)
    if not root.fs.exists(path):
        return None
    with root.fs.open(path, "rb") as f:
        state: dict[str, Any] = torch.load(
            io.BytesIO(f.read()), map_location="cpu", weights_only=True
        )
    return state


@dataclass
class _Trained:
    visual: Any
    head: Any
    history: list[dict[str, float]]
    resumed_from_epoch: int


def _finetune(
    clip: Clip,
    root: DataRoot,
    relpaths: Sequence[str],
    labels: np.ndarray,
    zs_weights: np.ndarray,
    offsets: np.ndarray,
    config: TrainConfig,
    train_run_id: str,
) -> _Trained:
    """Fine-tune image tower + head, checkpointing every epoch, resuming when a checkpoint
    of this run exists."""
    import copy

    import torch
    import torch.nn.functional as F

    device = clip.device
    visual = copy.deepcopy(clip.model.visual).to(device).requires_grad_(True)
    head = _head(zs_weights, float(clip.model.logit_scale.exp()), device)
    opt = torch.optim.AdamW(
        _param_groups(visual, head, config.weight_decay), lr=config.lr,
        betas=(0.9, 0.999), eps=1e-8,
    )
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    warmup = config.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, warmup, total_steps)
    )
    # A scaler only for fp16 autocast (bf16 and fp32 need none); on CPU it is a no-op.
    scaler = torch.amp.GradScaler(device.type, enabled=clip.amp_dtype == torch.float16)
    y_all = torch.as_tensor(labels, dtype=torch.int64, device=device)
    off = torch.as_tensor(offsets, dtype=torch.float32, device=device)
    params = [*visual.parameters(), *head.parameters()]
    ckpt_rel = f"{RUNS_DIR}/{train_run_id}/{CHECKPOINT_NAME}"

    start_epoch, step, history = 0, 0, []
    # A kill during a save leaves a temp file beside the last good checkpoint.
    remove_temp_files(root, f"{RUNS_DIR}/{train_run_id}")
    ckpt = _load_checkpoint(root, ckpt_rel)
    if ckpt is not None:
        if ckpt.get("run_id") != train_run_id or ckpt.get("total_steps") != total_steps:
            raise ValueError(
                f"checkpoint {root.path(ckpt_rel)} belongs to run {ckpt.get('run_id')!r} "
                f"with {ckpt.get('total_steps')} steps, not {train_run_id!r} with "
                f"{total_steps}; delete it to start over"
            )
        visual.load_state_dict(ckpt["visual"])
        head.load_state_dict(ckpt["head"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        history = [dict(h) for h in ckpt["history"]]
        log.info("run %s: resuming after epoch %d (step %d)", train_run_id, start_epoch, step)
    tf = train_transform(clip, config.crop_min_scale, config.hflip)

    for epoch in range(start_epoch, config.epochs):
        order = epoch_order(labels, config.seed, epoch, config.sampling)
        data = _Images(root, relpaths, tf, order=order, seed=config.seed, epoch=epoch,
                       augment=True)
        loader = _loader(data, config.batch_size, config.workers,
                         _sample_seed(config.seed, epoch, 2**32), device)
        visual.train()
        losses = []
        lr_used = float(sched.get_last_lr()[0])
        for x, idx in loader:
            y = y_all[idx.to(device)]
            with clip.autocast():
                logits = _logits(visual, head, x.to(device, non_blocking=True))
            # Logit adjustment: the prior offsets enter the loss only, never prediction.
            loss = F.cross_entropy(logits.float() + off, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": lr_used})
        _save_checkpoint(
            root,
            ckpt_rel,
            {
                "run_id": train_run_id,
                "epoch": epoch + 1,
                "step": step,
                "total_steps": total_steps,
                "visual": visual.state_dict(),
                "head": head.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_state(),
                "history": history,
                "sampler": {"seed": config.seed, "sampling": config.sampling,
                            "next_epoch": epoch + 1},
            },
        )
        log.info("run %s: epoch %d/%d loss %.4f", train_run_id, epoch + 1, config.epochs,
                 history[-1]["loss"])
    visual.eval()
    return _Trained(visual, head, history, start_epoch)


def interpolate_state(
    zero: Mapping[str, Any], tuned: Mapping[str, Any], alpha: float
) -> dict[str, Any]:
    """WiSE-FT: ``(1 - α) · zero + α · tuned`` for floating tensors; others from `tuned`."""
    out = {}
    for k, t in tuned.items():
        z = zero[k]
        out[k] = (1.0 - alpha) * z + alpha * t if t.is_floating_point() else t.clone()
    return out


def _predict(
    clip: Clip, visual: Any, head: Any, root: DataRoot, relpaths: Sequence[str],
    config: TrainConfig,
) -> np.ndarray:
    import torch

    loader = _loader(_Images(root, relpaths, clip.preprocess), config.batch_size,
                     config.workers, 0, clip.device)
    out = []
    visual.eval()
    with torch.inference_mode(), clip.autocast():
        for x, _ in loader:
            out.append(_logits(visual, head, x.to(clip.device, non_blocking=True)).float().cpu())
    return np.ascontiguousarray(torch.cat(out).numpy(), dtype=np.float32)


# --------------------------------------------------------------------------- the runner


@contextlib.contextmanager
def _deterministic(seed: int, threads: int | None) -> Iterator[None]:
    """Seed every RNG, pin the thread count and ask torch for deterministic kernels; the
    thread count and determinism flags are restored afterwards."""
    import torch

    from tv100.tasks.rank.clip import set_torch_threads

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    set_torch_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


@dataclass(frozen=True)
class _Split:
    relpaths: list[str]
    labels: np.ndarray
    image_ids: list[str]


def _split_items(
    splits: pa.Table, paths: Mapping[str, str] | pa.Table | None, n_classes: int
) -> dict[str, _Split]:
    needed = {"image_id", "series_id", "class_index", "split"}
    missing = needed - set(splits.column_names)
    if missing:
        raise ValueError(f"splits lacks columns {sorted(missing)}; expected the splits table")
    rows = splits.to_pylist()
    if paths is None:
        if "path" not in splits.column_names:
            raise ValueError(
                "no image paths: pass paths= (image_id -> path relative to the data root, or "
                "a table with image_id and path) or a splits table with a path column"
            )
        path_of = {r["image_id"]: r["path"] for r in rows}
    elif isinstance(paths, pa.Table):
        path_of = dict(zip(paths.column("image_id").to_pylist(),
                           paths.column("path").to_pylist(), strict=True))
    else:
        path_of = dict(paths)
    lost = [r["image_id"] for r in rows if not path_of.get(r["image_id"])]
    if lost:
        raise ValueError(f"{len(lost)} split images have no path, e.g. {lost[0]!r}")
    out: dict[str, _Split] = {}
    for name in SPLIT_NAMES:
        rs = sorted((r for r in rows if r["split"] == name), key=lambda r: r["image_id"])
        labels = np.array([int(r["class_index"]) for r in rs], dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(
                f"class_index out of range in split {name!r}: expected 0..{n_classes - 1} "
                f"(one class name per index)"
            )
        out[name] = _Split([path_of[r["image_id"]] for r in rs], labels,
                           [r["image_id"] for r in rs])
    odd = sorted({r["split"] for r in rows} - set(SPLIT_NAMES))
    if odd:
        raise ValueError(f"unknown split values {odd}; expected {SPLIT_NAMES}")
    return out


def run_recipe(
    root: DataRoot | str,
    splits: pa.Table,
    classnames: Sequence[str],
    model_spec: ModelSpec | str,
    config: TrainConfig | None = None,
    paths: Mapping[str, str] | pa.Table | None = None,
    device: str | None = None,
) -> RecipeResult:
    """Run one recipe and score val and test.

    Args:
        root: the data root (images are read from it, runs written under ``runs/``).
        splits: the `splits` table (image_id, series_id, class_index, split), optionally
            with a ``path`` column.
        classnames: the class names (series titles) in class_index order.
        model_spec: the CLIP (`tv100.tasks.rank.clip.ModelSpec` or its text form).
        config: the recipe and its knobs.
        paths: image_id → image path relative to the root (a mapping, or a table with
            image_id and path such as `images`); None when `splits` has a path column.
        device: None/``"auto"`` (CUDA when available) or e.g. ``"cpu"``.

    Returns:
        A `RecipeResult`; ``result.tables()`` gives its `metrics`/`class_metrics` rows.

    Raises:
        ValueError: inconsistent inputs (missing paths, class indices out of range, no
            training images for a trained recipe).
    """
    from tv100.tasks.rank.clip import class_weights, load_clip

    cfg = config or TrainConfig()
    started = time.perf_counter()
    droot = root if isinstance(root, DataRoot) else DataRoot(str(root))
    names = list(classnames)
    items = _split_items(splits, paths, len(names))
    train = items["train"]
    if cfg.recipe != "zeroshot" and train.labels.size == 0:
        raise ValueError(f"recipe {cfg.recipe!r} needs training images; the train split is empty")
    digest = splits_digest(splits)
    counts = train_counts_of(splits)
    class_series = {int(c): str(s) for c, s in zip(splits.column("class_index").to_pylist(),
                                                   splits.column("series_id").to_pylist(),
                                                   strict=True)}
    clip = load_clip(model_spec, device)
    knobs = cfg.knobs()
    rid = run_id(clip.key, cfg.recipe, knobs, digest, cfg.seed, names)
    hyper: dict[str, Any] = dict(knobs)
    evals = {s: items[s] for s in EVAL_SPLITS if items[s].labels.size}
    scores: dict[str, np.ndarray] = {}
    history: list[dict[str, float]] = []
    resumed = 0
    offsets = logit_offsets(counts, len(names), cfg.logit_adjust_tau)

    with _deterministic(cfg.seed, cfg.threads):
        # The text tower's class weights: the zero-shot classifier and the fine-tune head's
        # initialisation (the linear probe starts from zero and needs none).
        zs = np.zeros((0, 0), np.float32)
        if cfg.recipe != "linear":
            zs = class_weights(clip, names, cfg.templates)
        scale = float(clip.model.logit_scale.exp())
        if cfg.recipe in ("zeroshot", "linear"):
            wanted = {**evals, "train": train} if cfg.recipe == "linear" else dict(evals)
            flat = frozen_features(
                clip, droot, [i for it in wanted.values() for i in it.image_ids],
                [p for it in wanted.values() for p in it.relpaths], cfg,
            )
            feats, start = {}, 0
            for s, it in wanted.items():
                feats[s] = flat[start : start + len(it.image_ids)]
                start += len(it.image_ids)
        if cfg.recipe == "zeroshot":
            scores = {s: scale * feats[s] @ zs.T for s in evals}
        elif cfg.recipe == "linear":
            weights = sampling_probabilities(train.labels, cfg.sampling) * len(train.labels)
            # A regularisation path: strongest penalty first, each fit warm-started from
            # the previous one (weak penalties on separable data converge slowly from 0).
            fit_of: dict[float, tuple[np.ndarray, np.ndarray]] = {}
            prev = None
            for wd in sorted(set(cfg.probe_weight_decays), reverse=True):
                prev = fit_logistic(feats["train"], train.labels, len(names), wd, offsets,
                                    weights, cfg.probe_max_iter, str(clip.device), prev)
                fit_of[wd] = prev
            fits = [fit_of[wd] for wd in cfg.probe_weight_decays]
            by_fit = [{s: feats[s] @ W.T + b for s in evals} for W, b in fits]
            best = 0
            if "val" in evals:
                cands = [(wd, f["val"]) for wd, f in
                         zip(cfg.probe_weight_decays, by_fit, strict=True)]
                best = _choose(cands, evals["val"].labels)
                hyper["val_top1_by_weight_decay"] = {
                    repr(float(wd)): _top1(f["val"], evals["val"].labels)
                    for wd, f in zip(cfg.probe_weight_decays, by_fit, strict=True)
                }
            hyper["weight_decay"] = float(cfg.probe_weight_decays[best])
            scores = by_fit[best]
        else:
            tcfg = TrainConfig(**{**_fields(cfg), "recipe": "finetune"})
            train_rid = run_id(clip.key, "finetune", tcfg.knobs(), digest, cfg.seed, names)
            trained = _finetune(clip, droot, train.relpaths, train.labels, zs, offsets, cfg,
                                train_rid)
            history, resumed = trained.history, trained.resumed_from_epoch
            if cfg.recipe == "finetune":
                scores = {s: _predict(clip, trained.visual, trained.head, droot, it.relpaths,
                                      cfg) for s, it in evals.items()}
            else:
                hyper["finetune_run_id"] = train_rid
                scores = _wiseft(clip, droot, trained, zs, scale, evals, cfg, hyper)

    scores_by_split = {
        s: (np.asarray(scores[s], dtype=np.float32), evals[s].labels, evals[s].image_ids)
        for s in evals
    }
    metrics = {s: classification_metrics(v[0], v[1], counts) for s, v in scores_by_split.items()}
    result = RecipeResult(
        run_id=rid, model_key=clip.key, recipe=cfg.recipe, hyperparameters=hyper,
        scores_by_split=scores_by_split, metrics_by_split=metrics, train_counts=counts,
        class_series=class_series, history=history, resumed_from_epoch=resumed,
        seconds=time.perf_counter() - started,
    )
    _write_result(droot, result)
    return result


def _fields(cfg: TrainConfig) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def _top1(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(axis=1) == labels).mean())


def _wiseft(
    clip: Clip,
    root: DataRoot,
    trained: _Trained,
    zs: np.ndarray,
    scale: float,
    evals: Mapping[str, _Split],
    cfg: TrainConfig,
    hyper: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Sweep α on val, then score every eval split with the chosen α."""
    import copy

    zero_visual = {k: v.to(clip.device) for k, v in clip.model.visual.state_dict().items()}
    zero_head = _head(zs, scale, clip.device).state_dict()
    tuned_visual = trained.visual.state_dict()
    tuned_head = trained.head.state_dict()
    visual = copy.deepcopy(trained.visual)
    head = copy.deepcopy(trained.head)

    def at(alpha: float, split: str) -> np.ndarray:
        visual.load_state_dict(interpolate_state(zero_visual, tuned_visual, alpha))
        head.load_state_dict(interpolate_state(zero_head, tuned_head, alpha))
        return _predict(clip, visual, head, root, evals[split].relpaths, cfg)

    alphas = [float(a) for a in cfg.wiseft_alphas]
    best = len(alphas) - 1
    val_scores: dict[float, np.ndarray] = {}
    if "val" in evals:
        val_scores = {a: at(a, "val") for a in alphas}
        best = _choose([(a, val_scores[a]) for a in alphas], evals["val"].labels)
        hyper["val_top1_by_alpha"] = {
            repr(a): _top1(val_scores[a], evals["val"].labels) for a in alphas
        }
    alpha = alphas[best]
    hyper["alpha"] = alpha
    return {s: val_scores[alpha] if s == "val" and val_scores else at(alpha, s) for s in evals}


def _write_result(root: DataRoot, result: RecipeResult) -> None:
    summary = {
        "run_id": result.run_id,
        "model_key": result.model_key,
        "recipe": result.recipe,
        "hyperparameters": result.hyperparameters,
        "metrics": {s: dict(metric_rows(m)) for s, m in result.metrics_by_split.items()},
        "n": {s: m["n"] for s, m in result.metrics_by_split.items()},
        "history": result.history,
    }
    data = json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n"
    write_bytes_atomic(root, f"{RUNS_DIR}/{result.run_id}/{RESULT_NAME}", data)


# --------------------------------------------------------------------------- tables


def metrics_tables(
    run_id: str,
    model_key: str,
    recipe: str,
    hyperparameters: Mapping[str, Any],
    per_split_metrics: Mapping[str, Mapping[str, Any]],
    class_series: Mapping[int, str],
    train_counts: Mapping[int, int],
    tiers: Tiers | None = None,
    created_at: datetime | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Rows of `METRICS` and `CLASS_METRICS` for one run.

    Args:
        run_id: the run's id.
        model_key: the model key.
        recipe: the recipe.
        hyperparameters: stored as sorted JSON.
        per_split_metrics: ``{split: classification_metrics(...)}``.
        class_series: series id per class index.
        train_counts: training images per class index (the tier of each class).
        tiers: tier thresholds (default `tv100.tasks.train.metrics.Tiers`).
        created_at: the rows' timestamp (default now, UTC).

    Returns:
        ``(metrics, class_metrics)``, sorted by split then metric / class index.
    """
    t = tiers or Tiers()
    when = created_at or datetime.now(UTC)
    hp = json.dumps(dict(hyperparameters), sort_keys=True)
    rows, class_rows = [], []
    for split in sorted(per_split_metrics):
        m = per_split_metrics[split]
        for name, value in sorted(metric_rows(m)):
            rows.append({"run_id": run_id, "model_key": model_key, "recipe": recipe,
                         "hyperparameters": hp, "split": split, "metric": name,
                         "value": float(value), "created_at": when})
        for c in sorted(m.get("per_class", {})):
            n_train = int(train_counts.get(int(c), 0))
            class_rows.append({
                "run_id": run_id, "model_key": model_key, "recipe": recipe, "split": split,
                "class_index": int(c), "series_id": class_series.get(int(c)),
                "n": int(m["per_class_n"][c]), "accuracy": float(m["per_class"][c]),
                "train_count": n_train, "tier": t.tier(n_train),
            })
    return (pa.Table.from_pylist(rows, schema=METRICS),
            pa.Table.from_pylist(class_rows, schema=CLASS_METRICS))


def _merge(root: DataRoot, name: str, new: pa.Table, schema: pa.Schema,
           keys: list[str]) -> str:
    """Existing rows of other runs + `new`; a run's earlier rows are replaced, keeping their
    timestamp when present so a rerun with equal numbers leaves the file byte-identical."""
    runs = set(new.column("run_id").to_pylist())
    rows = []
    kept_ts: dict[str, Any] = {}
    if table_exists(root, name):
        for r in read_table(root, name).to_pylist():
            if r["run_id"] in runs:
                if "created_at" in r and r["created_at"] is not None:
                    kept_ts.setdefault(r["run_id"], r["created_at"])
                continue
            rows.append(r)
    for r in new.to_pylist():
        if "created_at" in schema.names and r["run_id"] in kept_ts:
            r["created_at"] = kept_ts[r["run_id"]]
        rows.append(r)
    rows.sort(key=lambda r: tuple(str(r[k]) if not isinstance(r[k], int) else r[k]
                                  for k in keys))
    return write_table(root, name, pa.Table.from_pylist(rows, schema=schema), schema=schema)


def append_metrics(
    root: DataRoot | str, metrics: pa.Table, class_metrics: pa.Table
) -> dict[str, str]:
    """Add a run's rows to the ``metrics`` and ``class_metrics`` tables.

    Rows of other runs stay; rows of the same run id are replaced (their first
    ``created_at`` kept). Returns ``{table: sha256 of its Parquet bytes}``.
    """
    droot = (root if isinstance(root, DataRoot) else DataRoot(str(root))).ensure()
    return {
        METRICS_TABLE: _merge(droot, METRICS_TABLE, metrics, METRICS,
                              ["run_id", "split", "metric"]),
        CLASS_METRICS_TABLE: _merge(droot, CLASS_METRICS_TABLE, class_metrics, CLASS_METRICS,
                                    ["run_id", "split", "class_index"]),
    }


# --------------------------------------------------------------------------- Prefect


@task(name="run-recipe", cache_policy=NO_CACHE)
def run_recipe_task(
    data: str,
    splits: pa.Table,
    classnames: list[str],
    model: str,
    config: TrainConfig,
    paths: dict[str, str] | pa.Table | None = None,
    device: str | None = None,
) -> RecipeResult:
    """`run_recipe` on the data root `data` (uncached: training resumes by itself)."""
    return run_recipe(data, splits, classnames, model, config, paths, device)


@task(name="append-metrics", cache_policy=NO_CACHE)
def append_metrics_task(data: str, result: RecipeResult) -> dict[str, str]:
    """`append_metrics` of a result's `metrics_tables`."""
    metrics, class_metrics = result.tables()
    return append_metrics(data, metrics, class_metrics)
