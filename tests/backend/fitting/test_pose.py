"""``fit_pose``: the camera of a fixed mesh, fitted to its own silhouette."""

from __future__ import annotations

import torch

from backend.fitting.optimise import FitSettings
from backend.fitting.pose import fit_pose
from backend.fitting.report import reprojection_iou
from backend.geometry.templates import icosphere_template
from backend.progress import no_progress
from tests.backend.methods.test_fit import ellipsoid_mask

SMALL = FitSettings(iterations=60, resolution=64, hypotheses=2)


def test_pose_fit_recovers_the_view_of_a_known_shape() -> None:
    """With the true shape, the camera alone explains the mask; the mesh is not touched."""
    _, mask = ellipsoid_mask()
    template = icosphere_template(3).mesh
    truth = template.vertices * torch.tensor([0.5, 0.6, 1.0])
    fitted = fit_pose(truth, template.faces, mask, SMALL, no_progress)
    assert torch.equal(fitted.vertices, truth)
    assert fitted.camera.batch_size == 1 and len(fitted.hypothesis_losses) == 2
    iou = reprojection_iou(fitted.vertices, template.faces, fitted.camera, mask, SMALL.resolution)
    assert iou > 0.93


def test_a_given_camera_is_the_only_hypothesis() -> None:
    _, mask = ellipsoid_mask()
    template = icosphere_template(3).mesh
    truth = template.vertices * torch.tensor([0.5, 0.6, 1.0])
    first = fit_pose(truth, template.faces, mask, SMALL, no_progress)
    again = fit_pose(truth, template.faces, mask, SMALL.with_iterations(10), no_progress, camera=first.camera)
    assert again.hypothesis == 0 and again.hypothesis_losses == []  # one hypothesis: nothing to choose
    before = reprojection_iou(truth, template.faces, first.camera, mask, SMALL.resolution)
    after = reprojection_iou(truth, template.faces, again.camera, mask, SMALL.resolution)
    assert after > before - 0.02
