"""Multi-hypothesis camera terms (UMR's 8 camera hypotheses per image).

- ``weighted_by_hypothesis``: a loss computed under each of H cameras, weighted by the predicted
  probability of each: ``sum_h p_h l_h`` per item.
- ``camera_entropy``: ``-sum_h p_h log p_h`` per item. The trainer ADDS ``-0.05 * entropy`` to its loss
  (our reading of UMR's camera-entropy term): higher entropy keeps every hypothesis receiving gradient
  instead of collapsing early onto one camera.
"""

from __future__ import annotations

import torch
from torch import Tensor

PROB_EPS = 1e-12
"""Probabilities are clamped to at least this inside the log (0 log 0 = 0, finite gradients)."""


def _check_probs(probs: Tensor) -> None:
    if probs.dim() != 2:
        raise ValueError(f"probs must have shape (B, H), got {tuple(probs.shape)}")


def weighted_by_hypothesis(losses: Tensor, probs: Tensor) -> Tensor:
    """(B,) ``sum_h probs * losses`` of per-hypothesis losses (B, H) and probabilities (B, H)."""
    _check_probs(probs)
    if losses.shape != probs.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and probs {tuple(probs.shape)} shapes differ")
    return (losses * probs).sum(dim=1)


def camera_entropy(probs: Tensor) -> Tensor:
    """(B,) entropy ``-sum_h p log p`` (nats) of hypothesis probabilities (B, H)."""
    _check_probs(probs)
    return -(probs * torch.log(probs.clamp(min=PROB_EPS))).sum(dim=1)
