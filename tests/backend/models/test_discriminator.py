"""The WGAN critic: one score per image at UMR's sizes, no batch norm, per-sample independence."""

from __future__ import annotations

import pytest
import torch

from backend.models.discriminator import Discriminator


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("image_size", [64, 128])
def test_scores_one_number_per_image(image_size: int) -> None:
    torch.manual_seed(0)
    critic = Discriminator(in_channels=4, image_size=image_size)
    images = torch.rand(3, 4, image_size, image_size, requires_grad=True)
    scores = critic(images)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is not None for p in critic.parameters())


def test_has_no_batch_norm_and_scores_items_independently() -> None:
    torch.manual_seed(1)
    critic = Discriminator(in_channels=3, image_size=64, width=16)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm)
    assert not any(isinstance(module, norms) for module in critic.modules())
    images = torch.rand(4, 3, 64, 64)
    together = critic(images)
    alone = torch.cat([critic(images[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)  # what the gradient penalty needs


def test_checks_sizes() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        Discriminator(image_size=72)
    critic = Discriminator(in_channels=4, image_size=64)
    with pytest.raises(ValueError, match=r"expected images \(B, 4, 64, 64\)"):
        critic(torch.rand(1, 3, 64, 64))
