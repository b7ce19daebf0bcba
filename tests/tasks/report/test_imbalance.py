"""Class-imbalance metrics on hand-computed distributions."""

from __future__ import annotations

import math

import pytest

from tv100.tasks.report import imbalance
from tv100.tasks.train.metrics import Tiers


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param([5, 5, 5], 0.0, id="balanced"),
        pytest.param([1, 2, 3, 4], 0.25, id="1-2-3-4"),
        pytest.param([4, 3, 2, 1], 0.25, id="order-free"),
        pytest.param([0, 0, 0, 10], 0.75, id="one-class-has-all"),
        pytest.param([10, 28, 58, 135], 405 / 924, id="synthetic-after"),
    ],
)
def test_gini_on_hand_computed_distributions(counts, expected):
    assert imbalance.gini(counts) == pytest.approx(expected)


def test_gini_and_ratio_of_nothing_are_nan_and_negative_counts_rejected():
    assert math.isnan(imbalance.gini([]))
    assert math.isnan(imbalance.gini([0, 0]))
    assert math.isnan(imbalance.imbalance_ratio([]))
    with pytest.raises(ValueError, match=">= 0"):
        imbalance.gini([3, -1])


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param([7], 1.0, id="single"),
        pytest.param([10, 100, 50], 10.0, id="10-100-50"),
        pytest.param([1570, 140], 1570 / 140, id="paper-extremes"),
        pytest.param([0, 5], math.inf, id="empty-class"),
    ],
)
def test_imbalance_ratio(counts, expected):
    assert imbalance.imbalance_ratio(counts) == pytest.approx(expected)


def test_tier_counts_default_thresholds_follow_the_paper_convention():
    # > 100 many; 20..100 medium (both ends included); < 20 few
    counts = [101, 100, 20, 19, 0, 500]
    assert imbalance.tier_counts(counts) == {"many": 2, "medium": 2, "few": 2}


def test_tier_counts_with_configured_thresholds():
    counts = [101, 100, 50, 20, 19, 5]
    assert imbalance.tier_counts(counts, Tiers(many=50, few=10)) == {
        "many": 2,
        "medium": 3,
        "few": 1,
    }
    # few == many: no medium tier left (a class of exactly 10 would be medium)
    assert imbalance.tier_counts(counts, Tiers(many=10, few=10)) == {
        "many": 5,
        "medium": 0,
        "few": 1,
    }


def test_cumulative_share_and_stats():
    assert imbalance.cumulative_share([1, 3, 6]) == pytest.approx([0.6, 0.9, 1.0])
    s = imbalance.imbalance_stats([135, 58, 28, 10, 0])
    assert s.classes == 4 and s.empty == 1 and s.images == 231
    assert (s.max, s.min, s.median) == (135, 10, 43.0)
    assert s.imbalance_ratio == pytest.approx(13.5)
    assert s.gini == pytest.approx(405 / 924)
    assert (s.many, s.medium, s.few) == (1, 2, 1)
    assert s.head_share_20 == pytest.approx(135 / 231)  # top 20% of 4 classes = 1 class
