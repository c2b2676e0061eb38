"""Distances between rotations, as unit quaternions ``[w, x, y, z]`` or as 3 x 3 matrices.

The quaternion conversions live in ``backend.geometry.camera`` (``quaternion_to_matrix``); here:

- ``quaternion_distance(q1, q2) = 1 - <q1, q2>^2``: 0 for the same rotation (either sign of q), 1 for
  rotations 180 degrees apart; DPC's pose loss. It equals ``sin^2(angle / 2)`` and ``|R1 - R2|_F^2 / 8``.
- ``rotation_distance(R1, R2) = (3 - trace(R1^T R2)) / 4``: the same number from the matrices.
- ``rotation_angle_deg(R1, R2)``: the angle in degrees of the rotation taking R1 to R2 (``R1^T R2``),
  the pose error of the evaluations.
"""

from __future__ import annotations

import torch
from torch import Tensor


def quaternion_distance(first: Tensor, second: Tensor) -> Tensor:
    """``1 - <q1, q2>^2`` (...,) of unit quaternions (..., 4): 0 for the same rotation (either sign), 1 for
    rotations 180 degrees apart; DPC's student loss. Equals ``|R1 - R2|_F^2 / 8`` = ``sin^2(angle / 2)``.

    >>> identity = torch.tensor([1.0, 0.0, 0.0, 0.0])
    >>> quaternion_distance(identity, -identity), quaternion_distance(identity, torch.tensor([0.0, 1, 0, 0]))
    (tensor(0.), tensor(1.))
    """
    return 1 - (first * second).sum(dim=-1).square()


def rotation_distance(first: Tensor, second: Tensor) -> Tensor:
    """``(3 - trace(R1^T R2)) / 4`` (...,) of rotation matrices (..., 3, 3): ``quaternion_distance`` of their
    quaternions, computed without converting the matrices."""
    return (3 - (first * second).sum(dim=(-2, -1))) / 4


def rotation_angle_deg(first: Tensor, second: Tensor) -> Tensor:
    """Angles (...,) in degrees of the rotations taking rotation matrices (..., 3, 3) to (..., 3, 3)."""
    cosine = (((first * second).sum(dim=(-2, -1)) - 1) / 2).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine))
