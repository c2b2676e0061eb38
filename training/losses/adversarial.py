"""Adversarial losses, all of them, and how one optimiser trains both players.

The shared training loop has one optimiser and one backward per step, so a GAN's two players (a generator
and a critic / discriminator) must each get the gradient of their own objective from a single total.
Two exact ways, both here:

- Frozen critic, for any GAN loss (``two_player_losses``; texture completion's LSGAN or hinge): the
  critic's loss sees the fakes detached, so it reaches only the critic; the generator's loss goes through
  the critic called with detached parameters (``frozen_call``, ``torch.func.functional_call``), so it
  reaches only the generator. ``loss = g_weight * generator + d_weight * discriminator`` then gives each
  network its own gradient (simultaneous gradient descent on the two-player game).
- Gradient reversal, for the zero-sum WGAN loss only (adaptive-flow, UMR's recipe; one critic pass fewer):
  ``grad_reverse``: identity forward, gradient times ``-weight`` backward (UMR's weight 0.2). Feeding
  ``grad_reverse(fake, w)`` to ``wgan_critic_loss`` lets the critic descend the loss while the generator
  descends ``-w * mean critic(fake)`` (eq. 38 in the Wasserstein form). It is not exact for non-zero-sum
  losses (LSGAN's generator objective is not minus its discriminator's), hence the frozen critic there.

Losses:

- ``discriminator_loss(real, fake, kind)`` / ``generator_loss(fake, kind)``: on patch logits, ``kind``
  "lsgan" (least squares, Mao et al. 2017; pix2pix/CycleGAN's "lsgan") or "hinge" (SN-PatchGAN).
- ``wgan_critic_loss``: ``mean critic(fake) - mean critic(real) + gp_weight * GP``, the Wasserstein form
  of the seed paper's eq. 37 with eq. 39's gradient penalty (WGAN-GP). Renders of the predicted mesh
  (``fake``) and masked photos (``real``) go to ``backend.models.discriminator.Discriminator``.
- ``gradient_penalty``: eq. 39, ``mean (|grad_x critic(x)|_2 - 1)^2`` at random interpolates of real and
  (detached) fake samples, with a graph so that it trains the critic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Critic = Callable[[Tensor], Tensor]
"""Images (B, C, S, S) -> scores (B,) (or (B, 1))."""

GanLoss = Literal["lsgan", "hinge"]
"""The non-zero-sum GAN losses of ``discriminator_loss`` and ``generator_loss``."""


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.weight * grad, None


def grad_reverse(x: Tensor, weight: float) -> Tensor:
    """``x`` unchanged (any shape); backward multiplies the incoming gradient by ``-weight``."""
    if not weight >= 0:
        raise ValueError(f"weight must be non-negative, got {weight}")
    result: Tensor = _GradReverse.apply(x, float(weight))
    return result


def gradient_penalty(
    critic: Critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Scalar eq. 39: ``mean over items of (|grad_x critic(x)|_2 - 1)^2``.

    ``x = eps * real + (1 - eps) * fake`` with ``eps ~ U(0, 1)`` per item, fake (and real) detached, so
    only the critic receives gradients (the graph is kept, ``create_graph=True``).

    Args:
        critic: images (B, C, S, S) -> scores (B,).
        real, fake: (B, C, S, S) images.
        generator: random generator on the images' device for eps; None uses the global one.
    """
    if real.shape != fake.shape or real.dim() < 2:
        raise ValueError(f"real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)  # (B, 1, 1, 1)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # (B, C, S, S)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)  # (B, C, S, S)
    norm = torch.sqrt(grad.flatten(1).pow(2).sum(1) + 1e-12)  # (B,); eps keeps the 2nd derivative finite
    return (norm - 1).pow(2).mean()


def wgan_critic_loss(
    critic: Critic,
    real: Tensor,
    fake: Tensor,
    gp_weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """WGAN-GP critic loss ``mean critic(fake) - mean critic(real) + gp_weight * GP`` (a scalar).

    Args:
        critic: images (B, C, S, S) -> scores (B,).
        real: (B, C, S, S) real images.
        fake: (B, C, S, S) rendered images, usually ``grad_reverse(renders, weight)``.
        gp_weight: weight of the gradient penalty (WGAN-GP's 10).
        generator: for the penalty's interpolation weights.

    Returns:
        The loss and its detached parts: ``critic_real``, ``critic_fake`` (mean scores),
        ``wasserstein`` (``critic_real - critic_fake``) and ``gradient_penalty``.
    """
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real and fake images differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    score_real = critic(real).mean()
    score_fake = critic(fake).mean()
    count = min(real.shape[0], fake.shape[0])
    penalty = gradient_penalty(critic, real[:count], fake[:count], generator)
    loss = score_fake - score_real + gp_weight * penalty
    parts = {
        "critic_real": score_real.detach(),
        "critic_fake": score_fake.detach(),
        "wasserstein": (score_real - score_fake).detach(),
        "gradient_penalty": penalty.detach(),
    }
    return loss, parts


def discriminator_loss(real: Tensor, fake: Tensor, kind: GanLoss) -> Tensor:
    """The discriminator's loss on patch logits of real and fake images (any shapes); a scalar.

    lsgan: ``mean (D(real) - 1)^2 + mean D(fake)^2``;
    hinge: ``mean relu(1 - D(real)) + mean relu(1 + D(fake))``.
    """
    if kind == "lsgan":
        return (real - 1).pow(2).mean() + fake.pow(2).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(f"unknown GAN loss {kind!r}: expected 'lsgan' or 'hinge'")


def generator_loss(fake: Tensor, kind: GanLoss) -> Tensor:
    """The generator's adversarial loss on the patch logits of its images (any shape); a scalar.

    lsgan: ``mean (D(fake) - 1)^2``; hinge: ``-mean D(fake)``.
    """
    if kind == "lsgan":
        return (fake - 1).pow(2).mean()
    if kind == "hinge":
        return -fake.mean()
    raise ValueError(f"unknown GAN loss {kind!r}: expected 'lsgan' or 'hinge'")


def frozen_call(module: nn.Module, inputs: Tensor) -> Tensor:
    """``module(inputs)`` with the module's parameters detached: gradients reach ``inputs`` only."""
    state = {name: parameter.detach() for name, parameter in module.named_parameters()}
    state.update(dict(module.named_buffers()))
    result: Tensor = torch.func.functional_call(module, state, (inputs,))
    return result


@dataclass
class TwoPlayerLosses:
    """Both players' adversarial losses of one step (``two_player_losses``).

    Attributes:
        generator: the generator's loss (scalar); its gradient reaches the generator only.
        discriminator: the discriminator's loss (scalar); its gradient reaches the discriminator only.
        real_score, fake_score: the discriminator's mean logits on real and fake images (detached).
    """

    generator: Tensor
    discriminator: Tensor
    real_score: Tensor
    fake_score: Tensor


def two_player_losses(discriminator: nn.Module, real: Tensor, fake: Tensor, kind: GanLoss) -> TwoPlayerLosses:
    """The frozen-critic scheme of the module docstring for real and fake images (B, C, H, W).

    The discriminator sees ``cat([real, fake.detach()])`` once for its own loss and ``fake`` once more
    with ``frozen_call`` for the generator's. Pass the unwrapped module (not a DDP wrapper).
    """
    scores = discriminator(torch.cat([real, fake.detach()]))  # (2 B, ...)
    real_scores, fake_scores = scores.split(len(real))
    critic = discriminator_loss(real_scores, fake_scores, kind)
    adversarial = generator_loss(frozen_call(discriminator, fake), kind)
    return TwoPlayerLosses(adversarial, critic, real_scores.mean().detach(), fake_scores.mean().detach())
