"""``training.evaluation.to_ground_truth_frame`` (bench-pointcloud's alignment of a ``fit`` result into the
ground truth's frame) with a look-at true camera."""

from __future__ import annotations

import torch

from backend.geometry.camera import Camera, axis_angle_to_quaternion
from training.evaluation import to_ground_truth_frame


def test_a_mesh_seen_by_a_weak_perspective_camera_returns_to_the_true_frame() -> None:
    torch.manual_seed(0)
    truth = torch.rand(200, 3) - 0.5  # (N, 3) object points in the true frame
    camera_true = Camera.look_at(2.732, 30.0, -45.0)
    rotation_true, translation_true = camera_true.view_transform()
    scale_true = 1 / (2.732 * torch.tan(torch.deg2rad(torch.tensor(15.0))))

    quaternion = axis_angle_to_quaternion(torch.tensor([[0.3, 1.0, -0.2]]), torch.tensor([1.1]))
    camera = Camera.weak_perspective(torch.tensor([0.8]), torch.tensor([[0.1, -0.05]]), quaternion)
    rotation, _ = camera.view_transform()
    # The fitted mesh: the object as ``camera`` must see it to give the true camera's (weak) projection,
    # at an arbitrary depth (which one view cannot tell).
    view_true = truth @ rotation_true[0].T + translation_true[0]  # (N, 3)
    view = (view_true - torch.tensor([0.1, -0.05, 0.0]) / scale_true) * scale_true / 0.8
    view[:, 2] += 0.7
    fitted = view @ rotation[0]

    aligned = to_ground_truth_frame(fitted, camera, camera_true, truth.mean(0))
    assert torch.allclose(aligned, truth, atol=1e-4)
    projected_true = camera_true.project(truth)[0, :, :2]
    # the aligned points sit where the fitted camera put them on the crop (up to perspective)
    assert (camera.project(fitted)[0, :, :2] - projected_true).abs().max() < 0.15
