"""Long-tail sampling, logit offsets and the learning-rate schedule: pure functions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tv100.tasks.train.sampling import (
    epoch_order,
    logit_offsets,
    lr_factor,
    sampling_probabilities,
    train_counts_of,
)


def test_sampler_class_frequencies():
    counts = np.array([100, 25, 4])
    labels = np.repeat(np.arange(3), counts)
    order = epoch_order(labels, seed=3, epoch=0, sampling="uniform")
    assert sorted(order.tolist()) == list(range(len(labels)))  # a permutation
    draws = {s: np.concatenate([labels[epoch_order(labels, 3, e, s)] for e in range(40)])
             for s in ("balanced", "sqrt")}
    freq = {s: np.bincount(d, minlength=3) / d.size for s, d in draws.items()}
    np.testing.assert_allclose(freq["balanced"], [1 / 3] * 3, atol=0.03)
    np.testing.assert_allclose(freq["sqrt"], np.sqrt(counts) / np.sqrt(counts).sum(), atol=0.03)
    p = sampling_probabilities(labels, "balanced")
    assert p.sum() == pytest.approx(1.0)
    assert p[labels == 2].sum() == pytest.approx(1 / 3)
    # The order is a function of (seed, epoch) only.
    a = epoch_order(labels, 3, 5, "balanced")
    assert np.array_equal(a, epoch_order(labels, 3, 5, "balanced"))
    assert not np.array_equal(a, epoch_order(labels, 3, 6, "balanced"))
    assert not np.array_equal(a, epoch_order(labels, 4, 5, "balanced"))
    with pytest.raises(ValueError, match="sampling='often'"):
        sampling_probabilities(labels, "often")


def test_logit_offsets_math():
    off = logit_offsets({0: 60, 1: 30, 2: 10}, 4, tau=1.5)
    # A class with no training image counts as one: finite offsets.
    np.testing.assert_allclose(off, 1.5 * np.log(np.array([60, 30, 10, 1]) / 101))
    assert np.all(logit_offsets({0: 5, 1: 50}, 2, tau=0.0) == 0)
    # Equal counts: equal offsets (softmax-invariant).
    assert np.ptp(logit_offsets({0: 7, 1: 7, 2: 7}, 3, tau=1.0)) == 0


def test_train_counts_of():
    splits = pa.table({"class_index": [0, 0, 1, 2, 2], "split": ["train", "test", "train",
                                                                  "val", "val"]})
    assert train_counts_of(splits) == {0: 1, 1: 1}


def test_lr_schedule():
    assert [lr_factor(s, 4, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 20) == 1.0
    assert lr_factor(12, 4, 20) == pytest.approx(0.5)
    assert lr_factor(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    vals = [lr_factor(s, 4, 20) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(vals, vals[1:], strict=False))
