"""Long-tail metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from tv100.tasks.train.metrics import Tiers, classification_metrics, metric_rows, topk_correct


def one_hot_scores(pred, n_classes):
    s = np.zeros((len(pred), n_classes))
    s[np.arange(len(pred)), pred] = 1.0
    return s


def test_top1_balanced_and_tiers():
    # class 0: 4 samples, 3 right; class 1: 2 samples, 0 right; class 2: 1 sample, right.
    labels = [0, 0, 0, 0, 1, 1, 2]
    pred = [0, 0, 0, 1, 0, 2, 2]
    m = classification_metrics(one_hot_scores(pred, 6), labels,
                               train_counts={0: 500, 1: 50, 2: 5})
    assert m["top1"] == pytest.approx(4 / 7)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0 + 1) / 3)
    assert m["per_class"] == {0: 0.75, 1: 0.0, 2: 1.0}
    assert (m["many"], m["medium"], m["few"]) == (0.75, 0.0, 1.0)
    assert m["tier_classes"] == {"many": 1, "medium": 1, "few": 1}
    assert dict(metric_rows(m))["top1"] == pytest.approx(4 / 7)


def test_top5_and_ties():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]])
    assert topk_correct(scores, np.array([4]), 5).tolist() == [True]
    assert topk_correct(scores, np.array([5]), 5).tolist() == [False]
    # Fewer than 5 classes: top-5 is always right.
    assert classification_metrics(np.eye(3), [2, 0, 1])["top5"] == 1.0


def test_configurable_tiers_and_validation():
    t = Tiers(many=10, few=2)
    assert [t.tier(c) for c in (11, 10, 2, 1)] == ["many", "medium", "medium", "few"]
    with pytest.raises(ValueError, match="few <= many"):
        Tiers(many=5, few=10)
    with pytest.raises(ValueError, match="scores shape"):
        classification_metrics(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics(np.zeros((1, 2)), [2])
    assert classification_metrics(np.zeros((0, 2)), [])["top1"] is None
