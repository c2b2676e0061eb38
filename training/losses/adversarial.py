"""Adversarial texture loss (seed paper eq. 37-39) in UMR's single-optimiser WGAN-GP form.

Renders of the predicted mesh from random views (``fake``) and masked input images (``real``) go to a
critic (``backend.models.discriminator.Discriminator``, scores (B,), unbounded).

- ``wgan_critic_loss``: ``mean critic(fake) - mean critic(real) + gp_weight * GP``, the Wasserstein
  form of eq. 37 with eq. 39's gradient penalty (WGAN-GP). Minimising it trains the critic.
- ``grad_reverse``: identity forward, gradient times ``-weight`` backward (UMR's gradient reversal layer,
  weight 0.2). Feeding ``grad_reverse(fake, w)`` to ``wgan_critic_loss`` lets one optimiser train both:
  the critic descends the loss while the generator receives ``-w`` times its gradient, i.e. descends
  ``-w * mean critic(fake)`` (eq. 38 in the Wasserstein form).
- ``gradient_penalty``: eq. 39, ``mean (|grad_x critic(x)|_2 - 1)^2`` at random interpolates of real and
  (detached) fake samples, with a graph so that it trains the critic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Critic = Callable[[Tensor], Tensor]
"""Images (B, C, S, S) -> scores (B,) (or (B, 1))."""


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
