"""``fit``'s refinement keeps an artist's edit where the photo cannot see it (issue 15).

A fit result of the side-viewed ellipsoid is edited, then refined against the same photo: an edit along
the view direction survives, a symmetric input stays symmetric, an edit the silhouette contradicts is
pulled back, and the texture stays where the surface stayed.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from backend.fitting.refine_terms import mirror_pairs, nearest_mirror_pairs, symmetrize_offsets_by_pairs
from backend.methods.base import Reconstruction, no_progress
from backend.methods.fit import FitMethod, FitOptions
from tests.backend.methods.test_fit import SMALL, ellipsoid_mask

# The ellipsoid photo is taken level, so its base fit starts level too. From the default 20 degrees above,
# the base fit lands on a camera 17 degrees up and a shape tilted to match; the refinement's camera fit
# (shape frozen, hypotheses from scratch) then finds a pose that turns the spike 65 degrees out of the
# image plane, towards the viewer, and the spike survives (0.99; 0.66 from the level fit; issue 20).
LEVEL = {**SMALL, "start_elevation": 0.0}


@functools.cache
def fitted() -> tuple[Reconstruction, np.ndarray, np.ndarray]:
    """The fit result of the ellipsoid photo (shared by the tests), the photo and its mask."""
    image, mask = ellipsoid_mask()
    return FitMethod("cpu").reconstruct(image, mask, FitOptions(**LEVEL), no_progress), image, mask


def refine(vertices: torch.Tensor, **options: object) -> Reconstruction:
    result, image, mask = fitted()
    edited = dataclasses.replace(result.mesh, vertices=vertices)
    return FitMethod("cpu").reconstruct(
        image, mask, FitOptions(**{**LEVEL, **options}), no_progress, init_mesh=edited
    )


def view_axes(result: Reconstruction) -> torch.Tensor:
    """(3, 3) rows: the camera's image x, image y and towards-the-camera axes in world space."""
    return result.camera.view_transform()[0][0]


def size_of(vertices: torch.Tensor) -> float:
    return float((vertices.max(0).values - vertices.min(0).values).max())


def survival(before: torch.Tensor, edited: torch.Tensor, after: torch.Tensor) -> float:
    """Share of the edit (edited - before) still in after - before, projected on the edit, over the
    vertices the edit moved."""
    edit = edited - before  # (V, 3)
    moved = edit.norm(dim=-1) > 1e-6
    kept = ((after - before)[moved] * edit[moved]).sum()
    return float(kept / edit[moved].pow(2).sum())


def mirror_distance(vertices: torch.Tensor) -> float:
    """Largest distance of a vertex's mirror image (x -> 2 mean x - x) to the nearest vertex."""
    flipped = vertices.clone()
    flipped[:, 0] = 2 * vertices[:, 0].mean() - vertices[:, 0]
    return float(torch.cdist(flipped.double(), vertices.double()).min(dim=1).values.max())


def test_an_edit_along_the_view_direction_survives() -> None:
    result, _, _ = fitted()
    before = result.mesh.vertices
    towards = view_axes(result)[2]
    depth = (before - before.mean(0)) @ towards  # (V,) > 0: the camera's side
    # the hidden (back) half stretched away from the camera, up to 30 % of the size at the back
    push = (-depth).clamp_min(0) / float((-depth).max()) * 0.3 * size_of(before)
    edited = before - push[:, None] * towards
    refined = refine(edited).mesh.vertices
    assert survival(before, edited, refined) >= 0.9


def test_a_symmetric_edit_stays_symmetric_and_survives() -> None:
    result, _, _ = fitted()
    before = result.mesh.vertices
    assert mirror_distance(before) < 1e-6
    # widen the object by 30 % about its symmetry plane: the photo (a side view) sees no width
    edited = before * torch.tensor([1.3, 1.0, 1.0])
    refined = refine(edited).mesh.vertices
    assert mirror_distance(refined) < 1e-4 * size_of(before)
    assert survival(before, edited, refined) >= 0.9


def test_an_edit_the_silhouette_contradicts_is_pulled_back() -> None:
    result, _, _ = fitted()
    before = result.mesh.vertices
    up = view_axes(result)[1]
    height = before @ up
    top = float(height.max())
    # the top 20 % pulled up by 40 % of the size: far outside the mask
    ramp = ((height - (top - 0.2 * size_of(before))) / (0.2 * size_of(before))).clamp(0, 1)
    edited = before + (0.4 * size_of(before) * ramp)[:, None] * up
    refined = refine(edited, iterations=200)
    # Partly: the camera, fitted first with the shape frozen, shrinks to explain part of the spike
    # (survival 0.68 at 200 iterations, IoU 0.97; the code before issue 15: 0.96 and 0.94).
    assert survival(before, edited, refined.mesh.vertices) < 0.8
    assert refined.report.silhouette_iou is not None and refined.report.silhouette_iou > 0.95
    # the texture of the surface that moved back into view comes from the photo (red), the rest stays
    texture = refined.mesh.texture
    red = (texture[..., 0] > 0.6) & (texture[..., 1] < 0.35) & (texture[..., 2] < 0.35)
    assert float(red.float().mean()) > 0.5


def test_the_texture_stays_where_the_surface_stayed() -> None:
    result, _, _ = fitted()
    green = torch.tensor([0.1, 0.8, 0.1]).expand_as(result.mesh.texture).clone()
    edited = dataclasses.replace(result.mesh, texture=green)
    _, image, mask = fitted()
    refined = FitMethod("cpu").reconstruct(image, mask, FitOptions(**LEVEL), no_progress, init_mesh=edited)
    texture = refined.mesh.texture
    kept = (texture - torch.tensor([0.1, 0.8, 0.1])).abs().max(dim=-1).values < 0.05
    assert float(kept.float().mean()) > 0.9  # not re-projected (and slid) where nothing moved


def test_a_deliberately_asymmetric_edit_stays_asymmetric() -> None:
    result, _, _ = fitted()
    before = result.mesh.vertices
    # widen only the right side (x > 0) by 30 %: not symmetric, so nothing ties the two sides
    edited = before.clone()
    edited[:, 0] = torch.where(before[:, 0] > 0, 1.3 * before[:, 0], before[:, 0])
    refined = refine(edited).mesh.vertices
    assert survival(before, edited, refined) >= 0.9
    assert mirror_distance(refined) > 0.5 * mirror_distance(edited)


def test_mirror_pairs_detects_symmetry_within_tolerance() -> None:
    result, _, _ = fitted()
    vertices = result.mesh.vertices + torch.tensor([0.5, 0.0, 0.0])  # moved sideways: still symmetric
    pairs = mirror_pairs(vertices)
    assert pairs is not None and torch.equal(pairs[pairs], torch.arange(vertices.shape[0]))
    bent = vertices.clone()
    bent[0] += torch.tensor([0.0, 0.1, 0.0])
    assert mirror_pairs(bent) is None
    loose = nearest_mirror_pairs(bent)
    assert (loose >= 0).sum() >= vertices.shape[0] - 4
    offsets = torch.randn(1, vertices.shape[0], 3)
    symmetric = symmetrize_offsets_by_pairs(offsets, pairs)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(symmetric[0], symmetric[0, pairs] * flip)
