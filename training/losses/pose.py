"""DPC's pose ensemble loss: the best of K candidate rotations learns, a student is distilled from it.

``pose_ensemble_loss(candidate_costs, candidates, student)`` keeps each sample's smallest candidate cost
(DPC's min over candidates: only the best candidate gets a gradient) and pulls the student quaternion
towards the detached best candidate (``backend.geometry.rotations.quaternion_distance``,
``1 - <q, q'>^2``); the result is a ``PoseLoss`` of scalars and the winners' indices. The trainer
(``training.pointcloud_poisson``) weights the student term (DPC: 20).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.geometry.rotations import quaternion_distance


@dataclass(frozen=True)
class PoseLoss:
    """DPC's ensemble terms, scalars: ``candidates`` (mean over samples of the best candidate's distance),
    ``student`` (mean distance of the student to the detached best candidate), ``best`` (B,) indices."""

    candidates: Tensor
    student: Tensor
    best: Tensor


def pose_ensemble_loss(candidate_costs: Tensor, candidates: Tensor, student: Tensor) -> PoseLoss:
    """Min-over-candidates loss and student distillation.

    Args:
        candidate_costs: (B, K) cost of each candidate (differentiable); only each sample's smallest is
            kept, so only the best candidate of each sample gets a gradient.
        candidates: (B, K, 4) unit quaternions.
        student: (B, 4) unit quaternion, pulled to the best candidate (detached).
    """
    if candidate_costs.shape != candidates.shape[:2] or student.shape != (candidates.shape[0], 4):
        raise ValueError(
            f"shapes do not fit: costs {tuple(candidate_costs.shape)}, candidates "
            f"{tuple(candidates.shape)}, student {tuple(student.shape)}"
        )
    best_cost, best = candidate_costs.min(dim=1)  # (B,), (B,)
    target = candidates[torch.arange(len(best), device=best.device), best].detach()  # (B, 4)
    return PoseLoss(best_cost.mean(), quaternion_distance(student, target).mean(), best)
