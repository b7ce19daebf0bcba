"""Class-imbalance metrics of a class-size distribution (pure; no tables, no SQL).

Long-tail tiers follow the paper's convention of many-shot (> 100 images), medium-shot
(20-100) and few-shot (< 20), configurable through `Tiers` (shared with
`tv100.tasks.train.metrics`, whose tiers count training images).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tv100.tasks.train.metrics import Tiers


@dataclass(frozen=True)
class ImbalanceStats:
    """Summary of a class-size distribution (`imbalance_stats`).

    Classes with no images are counted in `empty` and left out of the other figures
    (their imbalance ratio would be infinite).

    Attributes:
        classes: classes with at least one image.
        empty: classes with no image.
        images: images over all classes.
        max: images of the largest class (0 when none).
        min: images of the smallest non-empty class (0 when none).
        median: median class size (NaN when none).
        mean: mean class size (NaN when none).
        imbalance_ratio: largest over smallest class.
        gini: Gini coefficient of images per class.
        many: many-shot classes.
        medium: medium-shot classes.
        few: few-shot classes.
        head_share_20: share of images in the largest 20% of classes.
    """

    classes: int
    empty: int
    images: int
    max: int
    min: int
    median: float
    mean: float
    imbalance_ratio: float
    gini: float
    many: int
    medium: int
    few: int
    head_share_20: float


@dataclass(frozen=True)
class ImbalanceSummary:
    """`ImbalanceStats` of images per class before and after cleaning."""

    before: ImbalanceStats
    after: ImbalanceStats


def _check_counts(counts: Iterable[int | float]) -> list[float]:
    values = [float(c) for c in counts]
    bad = [c for c in values if c < 0 or math.isnan(c)]
    if bad:
        raise ValueError(f"class counts must be >= 0; got {bad[:5]}")
    return values


def gini(counts: Iterable[int | float]) -> float:
    """Gini coefficient of images per class: 0 when balanced, toward 1 when one class has all.

    ``G = sum_i (2i - n - 1) x_i / (n sum x)`` over counts sorted ascending (i from 1).

    Returns:
        NaN for no classes or no images.

    Raises:
        ValueError: on a negative count.
    """
    values = sorted(_check_counts(counts))
    n, total = len(values), sum(values)
    if n == 0 or total == 0:
        return math.nan
    weighted = sum((2 * i - n - 1) * x for i, x in enumerate(values, start=1))
    return weighted / (n * total)


def imbalance_ratio(counts: Iterable[int | float]) -> float:
    """Largest class over smallest class (1 when balanced).

    Returns:
        NaN for no classes, infinity when a class has no images.
    """
    values = _check_counts(counts)
    if not values:
        return math.nan
    lo, hi = min(values), max(values)
    if lo == 0:
        return math.inf if hi > 0 else math.nan
    return hi / lo


def tier_counts(counts: Iterable[int], tiers: Tiers | None = None) -> dict[str, int]:
    """Classes per long-tail tier: ``{"many": .., "medium": .., "few": ..}``."""
    tiers = tiers or Tiers()
    out = {"many": 0, "medium": 0, "few": 0}
    for c in counts:
        out[tiers.tier(int(c))] += 1
    return out


def cumulative_share(counts: Iterable[int | float]) -> list[float]:
    """Share of all images held by the k largest classes, for k = 1..n (ends at 1.0)."""
    values = sorted(_check_counts(counts), reverse=True)
    total = sum(values)
    out, running = [], 0.0
    for v in values:
        running += v
        out.append(running / total if total else math.nan)
    return out


def imbalance_stats(counts: Sequence[int], tiers: Tiers | None = None) -> ImbalanceStats:
    """Summary of a class-size distribution (see `ImbalanceStats`)."""
    tiers = tiers or Tiers()
    values = sorted((int(c) for c in counts), reverse=True)
    nonzero = [v for v in values if v > 0]
    n = len(nonzero)
    if n:
        mid = n // 2
        median = float(nonzero[mid]) if n % 2 else (nonzero[mid - 1] + nonzero[mid]) / 2
        head = cumulative_share(nonzero)[max(1, math.ceil(0.2 * n)) - 1]
    else:
        median, head = math.nan, math.nan
    tier_n = tier_counts(nonzero, tiers)
    return ImbalanceStats(
        classes=n,
        empty=len(values) - n,
        images=sum(nonzero),
        max=nonzero[0] if n else 0,
        min=nonzero[-1] if n else 0,
        median=median,
        mean=sum(nonzero) / n if n else math.nan,
        imbalance_ratio=imbalance_ratio(nonzero),
        gini=gini(nonzero),
        many=tier_n["many"],
        medium=tier_n["medium"],
        few=tier_n["few"],
        head_share_20=head,
    )
