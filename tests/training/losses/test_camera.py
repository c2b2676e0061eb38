"""Camera-hypothesis weighting and entropy."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses.camera import camera_entropy, weighted_by_hypothesis


def test_weighted_by_hypothesis_against_a_loop() -> None:
    torch.manual_seed(0)
    losses = torch.rand(3, 8)
    probs = torch.softmax(torch.randn(3, 8), dim=1)
    weighted = weighted_by_hypothesis(losses, probs)
    assert weighted.shape == (3,)
    for b in range(3):
        expected = sum(float(probs[b, h] * losses[b, h]) for h in range(8))
        assert math.isclose(float(weighted[b]), expected, rel_tol=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        weighted_by_hypothesis(losses[:, :4], probs)


def test_camera_entropy() -> None:
    probs = torch.tensor([[0.25] * 4, [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]], requires_grad=True)
    entropy = camera_entropy(probs)
    torch.testing.assert_close(entropy.detach(), torch.tensor([math.log(4), 0.0, math.log(2)]))
    entropy.sum().backward()  # finite despite zero probabilities
    assert probs.grad is not None and torch.isfinite(probs.grad).all()
    # the gradient of -sum p log p is -(log p + 1)
    torch.testing.assert_close(probs.grad[0], torch.full((4,), -(math.log(0.25) + 1)))
    with pytest.raises(ValueError, match=r"\(B, H\)"):
        camera_entropy(torch.ones(4))
