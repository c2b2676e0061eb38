"""Silhouette and regulariser losses against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry.camera import Camera
from backend.geometry.ops import uniform_laplacian
from backend.geometry.templates import icosphere_template
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from training.losses.regularisers import softras_flatten, softras_laplacian
from training.losses.silhouette import iou_loss, multiview_iou_loss


def test_iou_loss_against_a_loop() -> None:
    torch.manual_seed(0)
    pred, target = torch.rand(3, 5, 5), (torch.rand(3, 5, 5) > 0.5).float()
    for b in range(3):
        inter = sum(float(pred[b, i, j] * target[b, i, j]) for i in range(5) for j in range(5))
        union = sum(
            float(pred[b, i, j] + target[b, i, j] - pred[b, i, j] * target[b, i, j])
            for i in range(5)
            for j in range(5)
        )
        assert math.isclose(float(iou_loss(pred, target)[b]), 1 - inter / union, rel_tol=1e-5)
    assert float(iou_loss(target, target).max()) < 1e-6
    with pytest.raises(ValueError, match="shapes differ"):
        iou_loss(pred, target[:, :4])


def test_multiview_loss_is_zero_for_the_true_shape_and_views() -> None:
    template = icosphere_template(2).mesh
    truth = template.vertices * torch.tensor([0.2, 0.3, 0.45])  # (V, 3)
    settings = RasterSettings(32, sigma=1e-5)
    camera_a = Camera.look_at(2.732, torch.tensor([30.0, 30.0]), torch.tensor([0.0, -90.0]))
    camera_b = Camera.look_at(2.732, torch.tensor([30.0, 30.0]), torch.tensor([-45.0, -150.0]))
    hard = RasterSettings(32, soft=False)
    mask_a = render(truth, template.faces, camera_a, hard).alpha[..., 0]
    mask_b = render(truth, template.faces, camera_b, hard).alpha[..., 0]
    both = truth.expand(2, -1, -1)
    good = multiview_iou_loss(both, both, template.faces, camera_a, camera_b, mask_a, mask_b, settings)
    sphere = (template.vertices * 0.3).expand(2, -1, -1)
    bad = multiview_iou_loss(sphere, sphere, template.faces, camera_a, camera_b, mask_a, mask_b, settings)
    assert float(good) < 0.08 < float(bad)
    # it is the mean of the four single-view losses
    parts = []
    for vertices in (sphere, sphere):
        for camera, mask in ((camera_a, mask_a), (camera_b, mask_b)):
            parts.append(iou_loss(render(vertices, template.faces, camera, settings).alpha[..., 0], mask))
    torch.testing.assert_close(bad, torch.stack(parts).mean(), rtol=1e-5, atol=1e-6)


def test_softras_laplacian_sums_over_vertices() -> None:
    template = icosphere_template(1).mesh
    torch.manual_seed(1)
    vertices = template.vertices + 0.05 * torch.randn_like(template.vertices)
    dense = uniform_laplacian(template.faces, template.num_vertices).to_dense()
    expected = (dense @ vertices).pow(2).sum()
    torch.testing.assert_close(softras_laplacian(vertices[None], template.faces)[0], expected)
    assert float(softras_flatten(vertices[None], template.faces)[0]) > 0
