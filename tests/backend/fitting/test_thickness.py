"""The thickness prior: inside distances, the round-section half thickness, the middle plane and the
one-sided loss, against loops and closed forms; and its effect on a fit."""

from __future__ import annotations

import math

import numpy as np
import torch

from backend.fitting.optimise import FitSettings
from backend.fitting.shape import fit_template
from backend.fitting.thickness import (
    half_thickness_map,
    inside_distance,
    middle_depth,
    sample_map,
    thickness_loss,
)
from backend.geometry.templates import icosphere_template
from tests.backend.methods.test_fit import ellipsoid_mask


def test_inside_distance_is_the_distance_to_the_nearest_outside_pixel() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((12, 12)) < 0.7
    distance = inside_distance(mask).numpy()
    padded = np.pad(mask, 1)  # the border is outside
    outside = np.argwhere(~padded) - 1  # (N, 2) row, column of every outside pixel
    for row in range(12):
        for column in range(12):
            expected = 0.0
            if mask[row, column]:
                expected = np.sqrt(((outside - [row, column]) ** 2).sum(1)).min() * 2 / 12
            assert np.isclose(distance[row, column], expected, rtol=1e-6, atol=1e-7), (row, column)


def test_half_thickness_of_a_disc_is_its_chord() -> None:
    size, radius = 64, 20.0
    rows, columns = np.mgrid[:size, :size] + 0.5
    mask = (rows - 32) ** 2 + (columns - 32) ** 2 <= radius**2
    half = half_thickness_map(mask).numpy() * size / 2  # pixels
    assert (half[~mask] == 0).all()
    # at distance d from the rim a sphere of radius r is sqrt(d (2r - d)) deep on each side
    for offset in (0, 6, 12, 18):
        d = radius - offset
        row, column = 32, int(32 + offset)
        assert abs(half[row, column] - math.sqrt(d * (2 * radius - d))) < 1.6, offset


def test_middle_depth_is_the_least_squares_plane() -> None:
    generator = torch.Generator().manual_seed(0)
    projected = torch.rand(2, 50, 3, generator=generator, dtype=torch.float64) * 2 - 1
    depth = torch.rand(2, 50, generator=generator, dtype=torch.float64)
    middle = middle_depth(projected, depth)
    for item in range(2):
        design = np.c_[projected[item, :, :2].numpy(), np.ones(50)]
        plane, *_ = np.linalg.lstsq(design, depth[item].numpy(), rcond=None)
        np.testing.assert_allclose(middle[item].numpy(), design @ plane, atol=1e-6)
    planar = 0.3 * projected[..., 0] - 0.2 * projected[..., 1] + 0.1  # exactly a plane
    torch.testing.assert_close(middle_depth(projected, planar), planar, atol=1e-6, rtol=0)


def test_thickness_loss_matches_a_loop_and_its_gradient() -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[3:13, 2:14] = True
    half = half_thickness_map(mask).double()
    generator = torch.Generator().manual_seed(1)
    projected = (torch.rand(2, 30, 3, generator=generator, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    scale = torch.tensor([0.7, 1.3], dtype=torch.float64)
    loss = thickness_loss(projected, scale, half, slack=1.2)
    allowed = 1.2 * sample_map(half, projected[..., :2].detach())
    for item in range(2):
        depth = projected[item, :, 2].detach() * scale[item]
        middle = middle_depth(projected[None, item].detach(), depth[None])[0]
        total = 0.0
        for vertex in range(30):
            excess = max(abs(float(depth[vertex] - middle[vertex])) - float(allowed[item, vertex]), 0.0)
            total += excess**2
        assert math.isclose(float(loss[item].detach()), total / 30, rel_tol=1e-9, abs_tol=1e-12)
    # the prior is sampled where the vertex projects, detached: the gradient moves depths (and the plane)
    image_points = projected[..., :2].detach()
    depths = projected[..., 2:].detach().clone().requires_grad_()

    def of_depths(depth: torch.Tensor) -> torch.Tensor:
        return thickness_loss(torch.cat([image_points, depth], dim=-1), scale, half, 1.2)

    assert torch.autograd.gradcheck(of_depths, (depths,))
    inside = projected.detach().clone()
    inside[..., 2] = 0.0  # on the middle plane: nothing to pay
    assert torch.equal(thickness_loss(inside, scale, half, 1.0), torch.zeros(2, dtype=torch.float64))


def test_the_prior_makes_a_fitted_template_thinner_along_the_view() -> None:
    _, mask = ellipsoid_mask(64)
    settings = FitSettings(iterations=60, resolution=64, hypotheses=1)

    def depth_extent(weight: float) -> tuple[float, float]:
        fitted = fit_template(
            icosphere_template(), mask, FitSettings(**{**settings.__dict__, "thickness_weight": weight}),
            lambda fraction, stage: None,
        )  # fmt: skip
        rotation, _ = fitted.camera.view_transform()
        view = fitted.vertices @ rotation[0].T  # (V, 3) in the view frame
        depth = float(view[:, 2].max() - view[:, 2].min()) * float(fitted.camera.weak.scale[0])
        return depth, fitted.final_loss

    free, prior = depth_extent(0.0), depth_extent(30.0)
    assert prior[0] < 0.9 * free[0], (free, prior)
