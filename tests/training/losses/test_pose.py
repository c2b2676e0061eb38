"""``training.losses.pose``: DPC's pose ensemble loss picks each sample's best candidate, gives it alone the
gradient and distils it into the student."""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry.camera import axis_angle_to_quaternion
from backend.geometry.rotations import quaternion_distance
from training.losses.pose import pose_ensemble_loss


def test_pose_ensemble_picks_the_best_candidate_and_distils_it() -> None:
    y_axis, x_axis = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    identity = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    quarter_y = axis_angle_to_quaternion(y_axis, torch.tensor([math.pi / 2]))
    half_x = axis_angle_to_quaternion(x_axis, torch.tensor([math.pi]))
    truth = axis_angle_to_quaternion(y_axis, torch.tensor([math.pi / 2 + 0.1]))  # near quarter_y
    candidates = torch.cat([identity, quarter_y, half_x])[None].requires_grad_(True)  # (1, 3, 4)
    student = identity.clone().requires_grad_(True)  # (1, 4)
    costs = quaternion_distance(candidates, truth[:, None])  # (1, 3)
    pose = pose_ensemble_loss(costs, candidates, student)
    assert pose.best.tolist() == [1]
    torch.testing.assert_close(pose.candidates, costs[0, 1])
    torch.testing.assert_close(pose.student, quaternion_distance(identity, quarter_y)[0])  # 0.5
    (pose.candidates + 20 * pose.student).backward()
    assert candidates.grad is not None and student.grad is not None
    assert candidates.grad[0, [0, 2]].abs().sum() == 0 and candidates.grad[0, 1].abs().sum() > 0
    # the student term reaches the student only (the best candidate is detached): its gradient is 20 x
    expected = torch.autograd.grad(quaternion_distance(student, quarter_y.detach()).sum(), student)[0]
    torch.testing.assert_close(student.grad, 20 * expected)
    with pytest.raises(ValueError, match="shapes do not fit"):
        pose_ensemble_loss(costs[:, :2], candidates, student)
