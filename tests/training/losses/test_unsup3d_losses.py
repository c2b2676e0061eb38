"""Unsup3d's confidence-weighted losses: hand-computed values, loop oracles, the confidence that minimises
each term, masks (the reference's average pooling of a full-resolution mask), gradcheck, and one full
training step of the reference's objective through the networks and the image formation."""

from __future__ import annotations

import math

import pytest
import torch

from backend.models.unsup3d import Unsup3dModelConfig, Unsup3dNet, reconstruct
from backend.models.vgg import load_vgg16_features
from training.losses.unsup3d import EPS, perceptual_loss, photometric_loss


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_photometric_loss_by_hand() -> None:
    """Two pixels, three channels: per-pixel L1 distances 0.6 and 0.1, sigmas 0.5 and 2."""
    reconstruction = torch.tensor([[[[0.3, 0.0]], [[0.6, 0.3]], [[0.9, 0.0]]]], dtype=torch.float64)
    target = torch.zeros_like(reconstruction)
    sigma = torch.tensor([[[[0.5, 2.0]]]], dtype=torch.float64)
    first = 0.6 * math.sqrt(2) / 0.5 + math.log(0.5)
    second = 0.1 * math.sqrt(2) / 2.0 + math.log(2.0)
    torch.testing.assert_close(
        photometric_loss(reconstruction, target), torch.tensor([0.35], dtype=torch.float64)
    )
    torch.testing.assert_close(
        photometric_loss(reconstruction, target, sigma),
        torch.tensor([(first + second) / 2], dtype=torch.float64),
    )
    mask = torch.tensor([[[[1.0, 0.0]]]], dtype=torch.float64)
    torch.testing.assert_close(
        photometric_loss(reconstruction, target, sigma, mask), torch.tensor([first], dtype=torch.float64)
    )


def test_perceptual_loss_by_hand() -> None:
    """Two positions, two channels: squared distances (1 + 9) / 2 = 5 and (4 + 0) / 2 = 2; sigmas 1, 0.5."""
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]], dtype=torch.float64)
    target = torch.zeros_like(features)
    sigma = torch.tensor([[[[1.0, 0.5]]]], dtype=torch.float64)
    first, second = 5.0 / 2.0 + math.log(1.0), 2.0 / (2 * 0.25) + math.log(0.5)
    torch.testing.assert_close(perceptual_loss(features, target), torch.tensor([3.5], dtype=torch.float64))
    torch.testing.assert_close(
        perceptual_loss(features, target, sigma), torch.tensor([(first + second) / 2], dtype=torch.float64)
    )


def _photometric_oracle(
    rec: torch.Tensor, tgt: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor
) -> list[float]:
    batch, channels, height, width = rec.shape
    result = []
    for b in range(batch):
        total, area = 0.0, 0.0
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    s = float(sigma[b, 0, i, j]) + EPS
                    term = abs(float(rec[b, c, i, j] - tgt[b, c, i, j])) * math.sqrt(2) / s + math.log(s)
                    total += float(mask[b, 0, i, j]) * term
                    area += float(mask[b, 0, i, j])
        result.append(total / area)
    return result


def _perceptual_oracle(
    rec: torch.Tensor, tgt: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor
) -> list[float]:
    batch, channels, height, width = rec.shape
    result = []
    for b in range(batch):
        total, area = 0.0, 0.0
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    s = float(sigma[b, 0, i, j])
                    term = float(rec[b, c, i, j] - tgt[b, c, i, j]) ** 2 / (2 * s * s + EPS) + math.log(
                        s + EPS
                    )
                    total += float(mask[b, 0, i, j]) * term
                    area += float(mask[b, 0, i, j])
        result.append(total / area)
    return result


def test_losses_against_loop_oracles() -> None:
    generator = torch.Generator().manual_seed(0)
    rec, tgt = torch.rand(2, 3, 4, 5, generator=generator), torch.rand(2, 3, 4, 5, generator=generator)
    sigma = 0.05 + torch.rand(2, 1, 4, 5, generator=generator)
    mask = (torch.rand(2, 1, 4, 5, generator=generator) > 0.3).float()
    torch.testing.assert_close(
        photometric_loss(rec, tgt, sigma, mask), torch.tensor(_photometric_oracle(rec, tgt, sigma, mask))
    )
    features, target = (
        torch.randn(2, 6, 4, 5, generator=generator),
        torch.randn(2, 6, 4, 5, generator=generator),
    )
    torch.testing.assert_close(
        perceptual_loss(features, target, sigma, mask),
        torch.tensor(_perceptual_oracle(features, target, sigma, mask)),
    )


def test_a_full_resolution_mask_is_average_pooled_to_the_features() -> None:
    """The reference pools the image-sized mask over k x k blocks: (B, 1, 4 h, 4 w) -> (B, 1, h, w)."""
    generator = torch.Generator().manual_seed(1)
    features, target = (
        torch.randn(2, 4, 3, 2, generator=generator),
        torch.randn(2, 4, 3, 2, generator=generator),
    )
    sigma = 0.5 + torch.rand(2, 1, 3, 2, generator=generator)
    mask = (torch.rand(2, 1, 12, 8, generator=generator) > 0.4).float()
    pooled = torch.zeros(2, 1, 3, 2)
    for i in range(3):
        for j in range(2):
            pooled[:, :, i, j] = mask[:, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean(dim=(2, 3))
    torch.testing.assert_close(
        perceptual_loss(features, target, sigma, mask), perceptual_loss(features, target, sigma, pooled)
    )
    torch.testing.assert_close(
        perceptual_loss(features, target, sigma, mask),
        torch.tensor(_perceptual_oracle(features, target, sigma, pooled)),
    )
    with pytest.raises(ValueError, match="whole multiple"):
        perceptual_loss(features, target, sigma, torch.ones(2, 1, 7, 8))


def test_the_best_confidence_is_the_distance_scale() -> None:
    """d/dsigma vanishes at sigma = sqrt(2) l (Laplacian) and sigma = |d| (Gaussian, one channel)."""
    rec = torch.tensor([[[[0.7, 0.2]]]], dtype=torch.float64)
    target = torch.zeros_like(rec)
    sigma = (math.sqrt(2) * rec - EPS).requires_grad_(True)
    photometric_loss(rec, target, sigma).sum().backward()
    assert sigma.grad is not None
    torch.testing.assert_close(sigma.grad, torch.zeros_like(sigma), atol=1e-6, rtol=0)
    sigma = (rec.clone() - EPS).requires_grad_(True)
    perceptual_loss(rec, target, sigma).sum().backward()
    assert sigma.grad is not None
    torch.testing.assert_close(sigma.grad, torch.zeros_like(sigma), atol=1e-5, rtol=0)


def test_empty_masks_give_zero_and_finite_gradients() -> None:
    rec = torch.rand(2, 3, 4, 4, requires_grad=True)
    mask = torch.ones(2, 1, 4, 4)
    mask[1] = 0
    loss = photometric_loss(rec, torch.rand(2, 3, 4, 4), torch.ones(2, 1, 4, 4), mask)
    assert loss[1] == 0 and loss[0] > 0
    loss.sum().backward()
    assert rec.grad is not None and torch.isfinite(rec.grad).all() and (rec.grad[1] == 0).all()


def test_gradcheck() -> None:
    generator = torch.Generator().manual_seed(2)
    rec = torch.rand(2, 3, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    tgt = torch.rand(2, 3, 3, 3, generator=generator, dtype=torch.float64)
    sigma = (0.2 + torch.rand(2, 1, 3, 3, generator=generator, dtype=torch.float64)).requires_grad_(True)
    mask = torch.rand(2, 1, 3, 3, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda r, s: photometric_loss(r, tgt, s, mask), (rec, sigma))
    assert torch.autograd.gradcheck(lambda r, s: perceptual_loss(r, tgt, s, mask), (rec, sigma))
    assert torch.autograd.gradcheck(lambda r: perceptual_loss(r, tgt), (rec,))


def test_shapes_are_checked() -> None:
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="share a"):
        photometric_loss(images, torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match="sigma must have shape"):
        photometric_loss(images, images, torch.ones(2, 2, 4, 4))
    with pytest.raises(ValueError, match="mask must have shape"):
        photometric_loss(images, images, None, torch.ones(2, 1, 8, 8))


def test_one_training_step_reaches_every_network() -> None:
    """The reference's objective at 64 x 64 on a batch of 2 (VGG16's seeded random features here):
    L1(recon) + 0.5 L1(flip) + perc(recon) + 0.5 perc(flip), confidences from the network; every one of the
    five networks gets a finite, non-zero gradient."""
    torch.manual_seed(3)
    config = Unsup3dModelConfig()
    net = Unsup3dNet(config)
    vgg = load_vgg16_features("cpu")
    images = torch.rand(2, 3, 64, 64)
    out = net(images)
    result = reconstruct(out, config)
    scaled = images * 2 - 1  # the reference compares images in [-1, 1]
    sigma, sigma_perc = out.conf_photometric, out.conf_perceptual
    total = photometric_loss(result.image * 2 - 1, scaled, sigma[:, :1], result.mask)
    total = total + 0.5 * photometric_loss(result.flip_image * 2 - 1, scaled, sigma[:, 1:], result.mask)
    target_features = vgg(images)
    for branch, image in enumerate((result.image, result.flip_image)):
        weight = 1.0 if branch == 0 else 0.5
        features = vgg(image)
        total = total + weight * perceptual_loss(
            features, target_features, sigma_perc[:, branch : branch + 1], result.mask
        )
    assert total.shape == (2,) and torch.isfinite(total).all()
    total.mean().backward()
    for name in ("depth_net", "albedo_net", "light_net", "view_net", "confidence_net"):
        grads = [p.grad for p in getattr(net, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, name
