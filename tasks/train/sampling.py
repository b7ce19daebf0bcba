"""What the training loop draws and how fast it steps: per-sample draw probabilities, the
order of an epoch, the long-tail offsets and class weights, and the learning-rate schedule.

Long tail (switchable): class-balanced or square-root sampling (`TrainConfig.sampling`;
the full-batch probe weights its loss by the same probabilities instead of sampling);
logit adjustment (Menon et al. 2021), either in the loss (`TrainConfig.logit_adjust_tau`:
``τ · log prior`` added to the logits in the training loss only, so the model learns
scores with the label prior divided out) or post hoc (`TrainConfig.posthoc_tau`: the same
offsets subtracted from a plainly trained model's scores, `posthoc_adjust`); and the
class-balanced loss (Cui et al. 2019, `class_balanced_weights`).

Everything here is a pure function of its arguments (no RNG stream carried between
calls), which is what lets a resumed run repeat an uninterrupted one exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from tv100.tasks.train.config import SAMPLINGS


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
    return np.asarray(per_sample / per_sample.sum())


def epoch_order(labels: np.ndarray, seed: int, epoch: int, sampling: str) -> np.ndarray:
    """Indices of the training images in the order epoch `epoch` visits them.

    A pure function of ``(labels, seed, epoch, sampling)``, so a run resumed at epoch e
    sees exactly the order an uninterrupted run saw. ``uniform`` is a permutation; the
    other samplings draw ``len(labels)`` indices with replacement.
    """
    rng = np.random.default_rng([seed, epoch, 0x7476])
    n = len(labels)
    p = sampling_probabilities(labels, sampling)  # validates
    if sampling == "uniform":
        return rng.permutation(n).astype(np.int64)
    return rng.choice(n, size=n, replace=True, p=p).astype(np.int64)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of one sample's augmentation (and of an epoch's loader, position 2**32)."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0])


def logit_offsets(train_counts: Mapping[int, int], n_classes: int, tau: float) -> np.ndarray:
    """``τ · log prior`` per class, the offsets of the logit-adjusted loss.

    The prior is the share of training images per class; a class with none counts as one
    image, so every offset stays finite.

    Returns:
        ``(n_classes,)`` float64; all zero when ``tau == 0``.
    """
    counts = np.array([max(int(train_counts.get(c, 0)), 1) for c in range(n_classes)],
                      dtype=np.float64)
    return np.asarray(float(tau) * np.log(counts / counts.sum()))


def class_balanced_weights(
    train_counts: Mapping[int, int], n_classes: int, beta: float
) -> np.ndarray:
    """Per-class weights of the class-balanced loss (Cui et al. 2019).

    Class c with ``n_c`` training images has the effective number
    ``E_c = (1 - β^n_c) / (1 - β)`` and the weight ``1 / E_c``, rescaled so the weights sum
    to `n_classes` (as in the paper). β = 0 gives every class weight 1 (plain
    cross-entropy); β → 1 gives weights proportional to ``1 / n_c``. A class without
    training images counts as one image, as in `logit_offsets`.

    Returns:
        ``(n_classes,)`` float64, summing to `n_classes`.

    Raises:
        ValueError: β outside ``0 <= β < 1`` or no class.
    """
    if not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta={beta!r}; expected 0.0 <= beta < 1.0")
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes!r}; expected at least 1")
    counts = np.array([max(int(train_counts.get(c, 0)), 1) for c in range(n_classes)],
                      dtype=np.float64)
    effective = (1.0 - np.power(float(beta), counts)) / (1.0 - float(beta))
    w = 1.0 / effective
    return np.asarray(w * n_classes / w.sum())


def posthoc_adjust(
    scores: np.ndarray, train_counts: Mapping[int, int], tau: float
) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al. 2021): ``scores - τ · log prior``.

    The prior is `logit_offsets`' (training share per class); subtracting it raises the
    scores of rare classes relative to common ones. τ = 0 returns the scores unchanged.

    Args:
        scores: ``(n, classes)`` logits of a model trained without adjustment.
        train_counts: training images per class index.
        tau: the scaling τ (>= 0).

    Returns:
        ``(n, classes)`` float32.
    """
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"scores shape {s.shape}; expected (n, classes)")
    if float(tau) == 0.0:
        return s
    off = logit_offsets(train_counts, s.shape[1], tau)
    return np.asarray(s - off.astype(np.float32), dtype=np.float32)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier at `step`: linear warm-up to 1, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
