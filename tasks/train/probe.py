"""The linear probe: frozen image features, multinomial logistic regression, and the
choice of its L2 penalty on val (the same choice rule picks WiSE-FT's α).

Features are the frozen model's L2-normalised image embeddings, computed once through
`tv100.tasks.rank.embed` (its `embeddings` table, which the zero-shot recipe reads too).
The regression is full-batch L-BFGS in torch, float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tv100.storage.root import DataRoot
from tv100.tasks.rank.clip import Clip
from tv100.tasks.train.config import SELECT_METRICS, TrainConfig


def frozen_features(
    clip: Clip,
    root: DataRoot,
    image_ids: Sequence[str],
    relpaths: Sequence[str],
    config: TrainConfig,
) -> np.ndarray:
    """Unit-length features of the frozen model, ``(n, dim)`` in `image_ids` order.

    Goes through `tv100.tasks.rank.embed` (the `embeddings` table), so images the zero-shot
    ranking stage (or an earlier run) already embedded with this model are not encoded again.

    Raises:
        ValueError: some images could not be read or decoded (their ids are named).
    """
    from tv100.tasks.rank.config import EmbedConfig
    from tv100.tasks.rank.embed import embed_images, load_embeddings

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


def top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose highest score is the label."""
    return float((scores.argmax(axis=1) == labels).mean())


def nll(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under the softmax of `scores`."""
    s = scores.astype(np.float64)
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def balanced_top1(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-class top-1 (recall) over the classes present in `labels`."""
    hit = scores.argmax(axis=1) == labels
    return float(np.mean([hit[labels == c].mean() for c in np.unique(labels)]))


def choose(
    candidates: Sequence[np.ndarray], labels: np.ndarray, metric: str = "top1"
) -> int:
    """Index of the candidate (val scores) best on val: highest `metric` (``top1`` or
    ``balanced_accuracy``), ties to the lower NLL, then the first listed."""
    if metric not in SELECT_METRICS:
        raise ValueError(f"metric={metric!r}; expected one of {SELECT_METRICS}")
    score = top1 if metric == "top1" else balanced_top1
    keys = [(-score(scores, labels), nll(scores, labels)) for scores in candidates]
    return min(range(len(keys)), key=lambda i: keys[i])


@dataclass(frozen=True)
class ProbeFit:
    """The chosen probe and what the sweep saw.

    Attributes:
        weight_decay: the penalty chosen on val (the first listed without val).
        scores: ``{split: (n, classes) scores}`` of the chosen probe.
        val_top1: val top-1 per penalty (``repr(float(wd))`` keys); empty without val.
        weights: ``(W, b)`` of the chosen probe (score with ``x W^T + b``).
    """

    weight_decay: float
    scores: dict[str, np.ndarray]
    val_top1: dict[str, float]
    weights: tuple[np.ndarray, np.ndarray] | None = None


def sweep_probe(
    train: np.ndarray,
    labels: np.ndarray,
    evals: Mapping[str, np.ndarray],
    val_labels: np.ndarray | None,
    n_classes: int,
    offsets: np.ndarray,
    sample_weights: np.ndarray,
    config: TrainConfig,
    device: str | None = None,
) -> ProbeFit:
    """Fit one probe per `config.probe_weight_decays` and keep the one best on val
    (`config.select_by`).

    Args:
        train: ``(n, dim)`` training features.
        labels: their class indices.
        evals: ``{split: features}`` to score (val among them when `val_labels` is given).
        val_labels: val's class indices, or None when there is no val split.
        n_classes: number of classes.
        offsets: logit-adjustment offsets (training loss only).
        sample_weights: per-sample loss weights.
        config: the probe knobs.
        device: torch device of the fits.
    """
    decays = [float(v) for v in config.probe_weight_decays]
    # A regularisation path: strongest penalty first, each fit warm-started from the
    # previous one (weak penalties on separable data converge slowly from 0).
    fit_of: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    prev = None
    for wd in sorted(set(decays), reverse=True):
        prev = fit_logistic(train, labels, n_classes, wd, offsets, sample_weights,
                            config.probe_max_iter, device, prev)
        fit_of[wd] = prev
    by_fit = [{s: x @ fit_of[wd][0].T + fit_of[wd][1] for s, x in evals.items()}
              for wd in decays]
    best, val_top1 = 0, {}
    if val_labels is not None:
        best = choose([f["val"] for f in by_fit], val_labels, config.select_by)
        val_top1 = {repr(wd): top1(f["val"], val_labels)
                    for wd, f in zip(decays, by_fit, strict=True)}
    return ProbeFit(decays[best], by_fit[best], val_top1, fit_of[decays[best]])


def refit_probe(
    fit: ProbeFit,
    train: np.ndarray,
    labels: np.ndarray,
    evals: Mapping[str, np.ndarray],
    n_classes: int,
    sample_weights: np.ndarray,
    config: TrainConfig,
    device: str | None = None,
) -> ProbeFit:
    """Re-fit a chosen probe with other sample weights, at its penalty, from its weights.

    The second stage of classifier re-training on frozen features (`TrainConfig.crt` with
    the ``linear`` recipe): the plain probe's classifier re-trained with class-balanced
    weights (no logit offsets).

    Args:
        fit: the first stage (`sweep_probe`'s result; its penalty and weights are kept).
        train: ``(n, dim)`` training features.
        labels: their class indices.
        evals: ``{split: features}`` to score.
        n_classes: number of classes.
        sample_weights: per-sample loss weights of the re-fit.
        config: ``probe_max_iter``.
        device: torch device of the fit.

    Returns:
        A `ProbeFit` with `fit`'s penalty and val sweep, the new scores and weights.
    """
    if fit.weights is None:
        raise ValueError("fit.weights is None; expected a ProbeFit from sweep_probe")
    W, b = fit_logistic(train, labels, n_classes, fit.weight_decay, None, sample_weights,
                        config.probe_max_iter, device, fit.weights)
    return ProbeFit(fit.weight_decay, {s: x @ W.T + b for s, x in evals.items()},
                    fit.val_top1, (W, b))
