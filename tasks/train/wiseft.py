"""WiSE-FT (Wortsman et al. 2022): the weight-space interpolation
``(1 - α) · zero-shot + α · fine-tuned`` of image tower and head, α chosen on val.

It reuses a fine-tune run with the same knobs, so running ``finetune`` then ``wiseft``
trains once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tv100.storage.root import DataRoot
from tv100.tasks.rank.clip import Clip
from tv100.tasks.train.config import TrainConfig
from tv100.tasks.train.data import SplitImages
from tv100.tasks.train.finetune import Trained, make_head, predict
from tv100.tasks.train.probe import choose, top1


def interpolate_state(
    zero: Mapping[str, Any], tuned: Mapping[str, Any], alpha: float
) -> dict[str, Any]:
    """WiSE-FT: ``(1 - α) · zero + α · tuned`` for floating tensors; others from `tuned`."""
    out = {}
    for k, t in tuned.items():
        z = zero[k]
        out[k] = (1.0 - alpha) * z + alpha * t if t.is_floating_point() else t.clone()
    return out


@dataclass(frozen=True)
class WiseFit:
    """The chosen interpolation.

    Attributes:
        alpha: α chosen on val (the last listed without val).
        scores: ``{split: (n, classes) scores}`` at that α.
        val_top1: val top-1 per α (``repr(α)`` keys); empty without val.
    """

    alpha: float
    scores: dict[str, np.ndarray]
    val_top1: dict[str, float]


def wiseft(
    clip: Clip,
    root: DataRoot,
    trained: Trained,
    zs_weights: np.ndarray,
    scale: float,
    evals: Mapping[str, SplitImages],
    config: TrainConfig,
) -> WiseFit:
    """Sweep `config.wiseft_alphas` on val, then score every eval split with the chosen α.

    Args:
        clip: the zero-shot model (its image tower is one end of the line).
        root: the data root (images).
        trained: the fine-tuned tower and head (the other end).
        zs_weights: the zero-shot text weights (the zero-shot head, times `scale`).
        scale: the model's logit scale.
        evals: the splits to score (val among them to choose α).
        config: α values, batch size and workers.
    """
    zero_visual = {k: v.to(clip.device) for k, v in clip.model.visual.state_dict().items()}
    zero_head = make_head(zs_weights, scale, clip.device).state_dict()
    tuned_visual = trained.visual.state_dict()
    tuned_head = trained.head.state_dict()
    visual = copy.deepcopy(trained.visual)
    head = copy.deepcopy(trained.head)

    def at(alpha: float, split: str) -> np.ndarray:
        visual.load_state_dict(interpolate_state(zero_visual, tuned_visual, alpha))
        head.load_state_dict(interpolate_state(zero_head, tuned_head, alpha))
        return predict(clip, visual, head, root, evals[split].relpaths, config)

    alphas = [float(a) for a in config.wiseft_alphas]
    best = len(alphas) - 1
    val_scores: dict[float, np.ndarray] = {}
    val_top1: dict[str, float] = {}
    if "val" in evals:
        labels = evals["val"].labels
        val_scores = {a: at(a, "val") for a in alphas}
        best = choose([val_scores[a] for a in alphas], labels)
        val_top1 = {repr(a): top1(val_scores[a], labels) for a in alphas}
    alpha = alphas[best]
    scores = {s: val_scores[alpha] if s == "val" and val_scores else at(alpha, s)
              for s in evals}
    return WiseFit(alpha, scores, val_top1)
