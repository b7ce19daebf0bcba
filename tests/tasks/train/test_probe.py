"""The linear probe: logistic regression math and the penalty sweep."""

from __future__ import annotations

import numpy as np

from tv100.tasks.train.probe import fit_logistic
from tv100.tasks.train.sampling import logit_offsets, sampling_probabilities


def test_logit_adjusted_probe_shifts_scores_by_prior():
    """Trained with offsets τ·log π in the loss, the optimum's scores are the plain
    optimum's minus τ·log π (bias unpenalised, so the shift is exactly representable)."""
    rng = np.random.default_rng(0)
    counts = [120, 40, 10]
    centres = rng.normal(size=(3, 8))
    x = np.concatenate([centres[c] + rng.normal(size=(n, 8)) for c, n in enumerate(counts)])
    y = np.repeat(np.arange(3), counts)
    off = logit_offsets(dict(enumerate(counts)), 3, tau=1.0)
    W0, b0 = fit_logistic(x, y, 3, 1e-2, max_iter=500)
    W1, b1 = fit_logistic(x, y, 3, 1e-2, offsets=off, max_iter=500)
    np.testing.assert_allclose(W1, W0, atol=2e-3)
    shift = (b1 - b0) + off
    assert np.ptp(shift) < 5e-3  # b1 = b0 - τ log π + const
    assert np.ptp(off) > 2  # ...and the offsets are far from constant
    # Class-balanced weighting moves the minority class's bias up relative to the majority.
    wts = sampling_probabilities(y, "balanced") * len(y)
    _, b2 = fit_logistic(x, y, 3, 1e-2, sample_weights=wts, max_iter=500)
    assert (b2[2] - b2[0]) > (b0[2] - b0[0]) + 0.5
