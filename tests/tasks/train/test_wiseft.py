"""WiSE-FT's weight interpolation (the α sweep runs in ``test_recipes``)."""

from __future__ import annotations


def test_interpolate_state():
    import torch

    from tv100.tasks.train.wiseft import interpolate_state

    zero = {"w": torch.zeros(2, 2), "n": torch.tensor([1])}
    tuned = {"w": torch.full((2, 2), 4.0), "n": torch.tensor([7])}
    assert torch.equal(interpolate_state(zero, tuned, 0.0)["w"], zero["w"])
    assert torch.equal(interpolate_state(zero, tuned, 1.0)["w"], tuned["w"])
    mid = interpolate_state(zero, tuned, 0.25)
    assert torch.allclose(mid["w"], torch.full((2, 2), 1.0))
    assert mid["n"].item() == 7  # integer buffers are not averaged
