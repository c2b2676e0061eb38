"""Gradient reversal, WGAN-GP penalty and critic loss with hand-made critics; LSGAN and hinge losses by
hand; the frozen-critic two-player scheme gives each network exactly its own gradient."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from training.losses.adversarial import (
    discriminator_loss,
    frozen_call,
    generator_loss,
    grad_reverse,
    gradient_penalty,
    two_player_losses,
    wgan_critic_loss,
)

SHAPE = (3, 2, 4, 4)  # (B, C, S, S)


def _linear_critic(weight: Tensor) -> Callable[[Tensor], Tensor]:
    """D(x) = sum(weight * x) per item, weight (C, S, S)."""
    return lambda images: (images * weight).flatten(1).sum(1)


def test_grad_reverse_is_identity_forward_and_negates_the_gradient() -> None:
    torch.manual_seed(0)
    x = torch.randn(SHAPE, requires_grad=True)
    y = grad_reverse(x, 0.2)
    assert torch.equal(y, x)
    upstream = torch.randn(SHAPE)
    (grad,) = torch.autograd.grad(y, x, grad_outputs=upstream)
    torch.testing.assert_close(grad, -0.2 * upstream)
    with pytest.raises(ValueError, match="non-negative"):
        grad_reverse(x, -1.0)


def test_gradient_penalty_vanishes_for_a_unit_gradient_critic() -> None:
    torch.manual_seed(1)
    real, fake = torch.rand(SHAPE), torch.rand(SHAPE)
    unit = torch.randn(SHAPE[1:])
    unit = unit / unit.norm()
    assert float(gradient_penalty(_linear_critic(unit), real, fake)) < 1e-10
    # |grad| = 2 everywhere: (2 - 1)^2 = 1; the critic's weights receive the penalty's gradient
    weight = (2 * unit).requires_grad_(True)
    penalty = gradient_penalty(_linear_critic(weight), real, fake)
    assert math.isclose(float(penalty.detach()), 1.0, rel_tol=1e-5)
    penalty.backward()
    assert weight.grad is not None
    torch.testing.assert_close(weight.grad, 2 * (2 - 1) * unit, rtol=1e-5, atol=1e-6)


def test_gradient_penalty_of_a_quadratic_critic_at_the_interpolates() -> None:
    torch.manual_seed(2)
    real, fake = torch.rand(SHAPE), torch.rand(SHAPE, requires_grad=True)
    penalty = gradient_penalty(
        lambda x: x.pow(2).flatten(1).sum(1), real, fake, torch.Generator().manual_seed(7)
    )
    eps = torch.rand(SHAPE[0], 1, 1, 1, generator=torch.Generator().manual_seed(7))
    mixed = eps * real + (1 - eps) * fake.detach()
    expected = ((2 * mixed).flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.testing.assert_close(penalty.detach(), expected)
    penalty.backward()
    assert fake.grad is None  # fake is detached inside the penalty


def test_wgan_critic_loss_signs() -> None:
    torch.manual_seed(3)
    real = torch.ones(SHAPE)
    renders = torch.zeros(SHAPE, requires_grad=True)
    weight = torch.full(SHAPE[1:], 1 / math.sqrt(32)).requires_grad_(True)  # unit norm: GP = 0
    critic = _linear_critic(weight)
    loss, parts = wgan_critic_loss(critic, real, grad_reverse(renders, 0.2))
    # real scores sum(w) = 32 / sqrt(32), fake scores 0
    assert math.isclose(float(parts["critic_real"]), math.sqrt(32), rel_tol=1e-6)
    assert float(parts["critic_fake"]) == 0.0
    assert math.isclose(float(parts["wasserstein"]), math.sqrt(32), rel_tol=1e-6)
    assert float(parts["gradient_penalty"]) < 1e-10
    assert math.isclose(float(loss.detach()), -math.sqrt(32), rel_tol=1e-5)
    loss.backward()
    # the critic descends: its weights move to score real higher than fake (grad = -(mean real))
    assert weight.grad is not None
    torch.testing.assert_close(weight.grad, -torch.ones(SHAPE[1:]), rtol=1e-5, atol=1e-6)
    # the generator gets -0.2 x d mean critic(fake) / d fake: descending it raises the fake scores
    assert renders.grad is not None
    torch.testing.assert_close(renders.grad, (-0.2 * weight.detach() / SHAPE[0]).expand(SHAPE))
    # the penalty term enters with gp_weight
    double = _linear_critic(2 * weight.detach())
    loss2, parts2 = wgan_critic_loss(double, real, renders.detach(), gp_weight=3.0)
    assert math.isclose(float(parts2["gradient_penalty"]), 1.0, rel_tol=1e-5)
    assert math.isclose(float(loss2), -2 * math.sqrt(32) + 3.0, rel_tol=1e-5)


def test_gan_losses() -> None:
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert float(discriminator_loss(ones, zeros, "lsgan")) == 0.0
    assert float(discriminator_loss(zeros, ones, "lsgan")) == 2.0
    assert float(generator_loss(ones, "lsgan")) == 0.0 and float(generator_loss(zeros, "lsgan")) == 1.0
    assert float(discriminator_loss(ones, -ones, "hinge")) == 0.0
    assert float(discriminator_loss(zeros, zeros, "hinge")) == 2.0
    assert float(generator_loss(3 * ones, "hinge")) == -3.0
    with pytest.raises(ValueError, match="unknown GAN loss"):
        generator_loss(ones, "wgan")  # type: ignore[arg-type]


def test_frozen_call_reaches_the_input_only() -> None:
    layer = torch.nn.Conv2d(3, 1, 3)
    inputs = torch.rand(2, 3, 8, 8, requires_grad=True)
    result = frozen_call(layer, inputs)
    assert torch.equal(result, layer(inputs))
    result.sum().backward()
    assert inputs.grad is not None and layer.weight.grad is None
    assert layer.bias is not None and layer.bias.grad is None


@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_two_player_losses_give_each_network_exactly_its_own_gradient(kind: str) -> None:
    torch.manual_seed(5)
    generator = torch.nn.Conv2d(3, 3, 3, padding=1)
    discriminator = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 3)
    )
    real, noise = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    players = list(generator.parameters()), list(discriminator.parameters())
    terms = two_player_losses(discriminator, real, generator(noise), kind)  # type: ignore[arg-type]
    (0.7 * terms.generator + 1.3 * terms.discriminator).backward()
    got = [[p.grad.clone() for p in group] for group in players]  # type: ignore[union-attr]
    # each player's own objective, differentiated alone with plain (unfrozen, undetached) calls
    fake = generator(noise)
    own_generator = 0.7 * generator_loss(discriminator(fake), kind)  # type: ignore[arg-type]
    own_critic = 1.3 * discriminator_loss(discriminator(real), discriminator(fake), kind)  # type: ignore[arg-type]
    expected = (
        torch.autograd.grad(own_generator, players[0], retain_graph=True),
        torch.autograd.grad(own_critic, players[1]),
    )
    for got_group, want_group in zip(got, expected, strict=True):
        assert sum(float(want.abs().sum()) for want in want_group) > 0
        for value, want in zip(got_group, want_group, strict=True):
            torch.testing.assert_close(value, want)
    assert float(terms.real_score) == pytest.approx(float(discriminator(real).mean().detach()))
    assert not terms.real_score.requires_grad and not terms.fake_score.requires_grad
