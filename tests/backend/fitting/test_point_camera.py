"""``fit_point_camera``: moments then a 2-D Chamfer fit recover a known weak-perspective camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.fitting.point_camera import fit_point_camera, mask_points_ndc
from backend.geometry.camera import Camera, axis_angle_to_quaternion, quaternion_multiply
from backend.geometry.metrics import mask_iou
from backend.geometry.templates import icosphere_template
from backend.render.renderer import render
from backend.render.settings import RasterSettings

SIZE = 96


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def ellipsoid() -> tuple[torch.Tensor, torch.Tensor]:
    """An elongated, lop-sided ellipsoid (V, 3), (F, 3): its outline pins down scale and rotation."""
    mesh = icosphere_template(3).mesh
    vertices = mesh.vertices * torch.tensor([0.2, 0.25, 0.45])
    vertices[:, 2] += 0.1 * vertices[:, 1].clamp_min(0) * 4  # a bump toward +z on top
    return vertices, mesh.faces


def silhouette(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera) -> torch.Tensor:
    return render(vertices, faces, camera, RasterSettings(SIZE, soft=False)).alpha[0, ..., 0]  # (S, S)


def turn(quaternion: torch.Tensor, axis: list[float], degrees: float) -> torch.Tensor:
    delta = axis_angle_to_quaternion(torch.tensor([axis]), torch.tensor([math.radians(degrees)]))
    return quaternion_multiply(delta, quaternion[None])[0]


def test_mask_points_are_pixel_centres_in_ndc() -> None:
    mask = np.zeros((4, 4), bool)
    mask[0, 3] = mask[3, 0] = True
    points = mask_points_ndc(mask)
    assert torch.allclose(points, torch.tensor([[0.75, 0.75], [-0.75, -0.75]]))


def test_recovers_a_known_camera_from_a_perturbed_rotation() -> None:
    vertices, faces = ellipsoid()
    truth_rotation = turn(torch.tensor([1.0, 0.0, 0.0, 0.0]), [0.0, 1.0, 0.0], 70.0)
    truth = Camera.weak_perspective(torch.tensor([1.3]), torch.tensor([[0.12, -0.08]]), truth_rotation[None])
    mask = silhouette(vertices, faces, truth) > 0.5
    start = turn(truth_rotation, [1.0, 0.0, 0.3], 12.0)

    moments, _ = fit_point_camera(vertices, mask.numpy(), start, iterations=0)
    fitted, chamfer = fit_point_camera(vertices, mask.numpy(), start, iterations=150)

    iou_moments = float(mask_iou(silhouette(vertices, faces, moments), mask, soft=False))
    iou_fitted = float(mask_iou(silhouette(vertices, faces, fitted), mask, soft=False))
    assert iou_moments > 0.7  # centroid and spread alone are close
    assert iou_fitted > 0.9 and iou_fitted > iou_moments + 0.1
    assert chamfer < 1e-3
    assert torch.allclose(fitted.weak.translation, truth.weak.translation, atol=0.03)
    assert abs(float(fitted.weak.scale[0]) - 1.3) < 0.1


@pytest.mark.parametrize(
    ("points", "mask", "rotation", "message"),
    [
        (torch.zeros(5, 3), np.zeros((8, 8), bool), torch.tensor([1.0, 0, 0, 0]), "mask is empty"),
        (torch.zeros(0, 3), np.ones((8, 8), bool), torch.tensor([1.0, 0, 0, 0]), "points"),
        (torch.zeros(5, 3), np.ones((8, 8), bool), torch.tensor([1.0, 0, 0]), "rotation"),
    ],
)
def test_bad_input_is_named(
    points: torch.Tensor, mask: np.ndarray, rotation: torch.Tensor, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_point_camera(points, mask, rotation)


def test_the_camera_holds_no_autograd_state() -> None:
    vertices, faces = ellipsoid()
    mask = silhouette(
        vertices, faces, Camera.weak_perspective(1.0, torch.zeros(1, 2), torch.tensor([[1.0, 0, 0, 0]]))
    )
    camera, _ = fit_point_camera(vertices, mask.numpy() > 0.5, torch.tensor([1.0, 0, 0, 0]), iterations=2)
    assert not any(value.requires_grad for value in camera.tensors().values())
