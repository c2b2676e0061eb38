"""Tests for backend.geometry.rotations: the quaternion and matrix distances agree with each other and with
the rotation angle."""

from __future__ import annotations

import math

import torch

from backend.geometry.camera import axis_angle_to_quaternion, quaternion_to_matrix
from backend.geometry.rotations import quaternion_distance, rotation_angle_deg, rotation_distance


def test_rotation_distances_agree() -> None:
    torch.manual_seed(2)
    first = torch.nn.functional.normalize(torch.randn(64, 4), dim=1)
    second = torch.nn.functional.normalize(torch.randn(64, 4), dim=1)
    matrices_1, matrices_2 = quaternion_to_matrix(first), quaternion_to_matrix(second)
    torch.testing.assert_close(rotation_distance(matrices_1, matrices_2), quaternion_distance(first, second))
    frobenius = (matrices_1 - matrices_2).square().sum(dim=(1, 2)) / 8
    torch.testing.assert_close(quaternion_distance(first, second), frobenius)
    torch.testing.assert_close(quaternion_distance(first, -first), torch.zeros(64), atol=1e-6, rtol=0)
    angle = torch.tensor([0.3, 1.0, 2.5])
    turned = quaternion_to_matrix(axis_angle_to_quaternion(torch.tensor([[0.0, 0, 1]]).expand(3, 3), angle))
    torch.testing.assert_close(rotation_angle_deg(turned, torch.eye(3).expand(3, 3, 3)), torch.rad2deg(angle))


def test_distances_against_the_angle_of_a_loop() -> None:
    """sin^2(angle / 2) of the relative rotation, computed one pair at a time from R1^T R2."""
    torch.manual_seed(6)
    first = torch.nn.functional.normalize(torch.randn(16, 4, dtype=torch.float64), dim=1)
    second = torch.nn.functional.normalize(torch.randn(16, 4, dtype=torch.float64), dim=1)
    matrices_1, matrices_2 = quaternion_to_matrix(first), quaternion_to_matrix(second)
    angles = []
    for one, two in zip(matrices_1, matrices_2, strict=True):
        relative = one.T @ two
        cosine = max(-1.0, min(1.0, (float(torch.trace(relative)) - 1) / 2))
        angles.append(math.acos(cosine))
    expected = torch.tensor([math.sin(a / 2) ** 2 for a in angles], dtype=torch.float64)
    torch.testing.assert_close(quaternion_distance(first, second), expected)
    torch.testing.assert_close(rotation_distance(matrices_1, matrices_2), expected)
    degrees = torch.tensor([math.degrees(a) for a in angles], dtype=torch.float64)
    torch.testing.assert_close(rotation_angle_deg(matrices_1, matrices_2), degrees)
