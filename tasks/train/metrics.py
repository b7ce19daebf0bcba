"""Classification metrics for long-tailed datasets: pure functions returning dicts.

Besides top-1/top-5, a long tail needs the view per class: balanced accuracy (mean
per-class recall) and accuracy over many / medium / few-shot classes, split by how many
training images each class had (the TV100 classes range from ~140 to ~1,570 images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tiers:
    """Training-count thresholds: many-shot > `many`, few-shot < `few`, medium between.

    Defaults are the usual long-tail split (> 100, 20–100, < 20).
    """

    many: int = 100
    few: int = 20

    def __post_init__(self) -> None:
        if not (isinstance(self.few, int) and isinstance(self.many, int)):
            raise ValueError(f"Tiers thresholds must be integers, got {self.few!r}, {self.many!r}")
        if not 0 <= self.few <= self.many:
            raise ValueError(
                f"Tiers(few={self.few}, many={self.many}) is invalid; expected 0 <= few <= many"
            )

    def tier(self, train_count: int) -> str:
        if train_count > self.many:
            return "many"
        if train_count < self.few:
            return "few"
        return "medium"


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per sample: is the true label among the `k` highest scores?

    Ties are broken by class index (stable), as argsort does.
    """
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.asarray((top == labels[:, None]).any(axis=1))


def classification_metrics(
    scores: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    train_counts: Mapping[int, int] | None = None,
    tiers: Tiers | None = None,
) -> dict[str, Any]:
    """Top-1, top-5, balanced accuracy, per-class and per-tier accuracy.

    Args:
        scores: ``(n_samples, n_classes)`` logits or probabilities.
        labels: true class index per sample.
        train_counts: training images per class index (for the many/medium/few tiers).
        tiers: the tier thresholds.

    Returns:
        ``{"n", "top1", "top5", "balanced_accuracy", "per_class": {class: acc},
        "per_class_n": {class: n}, "many"/"medium"/"few": acc or None, "tier_classes":
        {tier: n classes}}``. Classes absent from `labels` are left out of the per-class
        figures (no recall can be measured for them).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise ValueError(
            f"scores shape {s.shape} does not match {y.shape[0]} labels; expected (n, classes)"
        )
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {s.shape[1]})")
    if y.size == 0:
        return {"n": 0, "top1": None, "top5": None, "balanced_accuracy": None,
                "per_class": {}, "per_class_n": {}, "many": None, "medium": None, "few": None,
                "tier_classes": {"many": 0, "medium": 0, "few": 0}}
    top1 = topk_correct(s, y, 1)
    top5 = topk_correct(s, y, 5)
    per_class: dict[int, float] = {}
    per_class_n: dict[int, int] = {}
    for c in np.unique(y):
        mask = y == c
        per_class[int(c)] = float(top1[mask].mean())
        per_class_n[int(c)] = int(mask.sum())
    out: dict[str, Any] = {
        "n": int(y.size),
        "top1": float(top1.mean()),
        "top5": float(top5.mean()),
        "balanced_accuracy": float(np.mean(list(per_class.values()))),
        "per_class": per_class,
        "per_class_n": per_class_n,
    }
    t = tiers or Tiers()
    groups: dict[str, list[float]] = {"many": [], "medium": [], "few": []}
    if train_counts is not None:
        for c, acc in per_class.items():
            groups[t.tier(int(train_counts.get(c, 0)))].append(acc)
    for name, accs in groups.items():
        # Mean per-class accuracy within the tier, the convention of long-tail papers.
        out[name] = float(np.mean(accs)) if accs else None
    out["tier_classes"] = {name: len(accs) for name, accs in groups.items()}
    return out


def metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The scalar metrics as ``(name, value)`` pairs for the `metrics` table."""
    names = ("top1", "top5", "balanced_accuracy", "many", "medium", "few")
    return [(n, float(metrics[n])) for n in names if metrics.get(n) is not None]
