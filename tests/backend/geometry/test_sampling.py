"""Tests for backend.geometry.sampling: points on the surface, uniform by area, reproducible by generator."""

from __future__ import annotations

import pytest
import torch

from backend.geometry.ops import face_areas
from backend.geometry.sampling import sample_surface
from backend.geometry.templates import icosphere_template
from tests.devices import DEVICES


def test_surface_samples_lie_on_the_mesh() -> None:
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 2], [1, 0, 2], [0, 1, 2]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    points = sample_surface(vertices, faces, 4000, torch.Generator().manual_seed(0))
    assert ((points[:, 2] == 0) | (points[:, 2] == 2)).all()
    assert (points[:, 0] + points[:, 1] <= 1 + 1e-6).all() and (points[:, :2] >= 0).all()
    assert abs(float((points[:, 2] == 0).float().mean()) - 0.5) < 0.05


def test_faces_are_drawn_in_proportion_to_their_area() -> None:
    """Against a naive loop: each sample is assigned to the triangle it lies in (by barycentric test)."""
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [5, 0, 0], [2, 3, 0]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 4.5
    points = sample_surface(vertices, faces, 20_000, torch.Generator().manual_seed(1))
    corners = vertices[faces].tolist()  # (F, 3, 3)
    counts = [0, 0]
    for x, y, _ in points.tolist():
        for index, ((ax, ay, _), (bx, by, _), (cx, cy, _)) in enumerate(corners):
            det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
            u = ((x - ax) * (cy - ay) - (cx - ax) * (y - ay)) / det
            v = ((bx - ax) * (y - ay) - (x - ax) * (by - ay)) / det
            if u >= -1e-6 and v >= -1e-6 and u + v <= 1 + 1e-6:
                counts[index] += 1
                break
    assert sum(counts) == 20_000
    assert abs(counts[1] / 20_000 - 0.9) < 0.01, counts
    # inside one triangle the density is uniform: a quarter of the large triangle's points lie in its
    # sub-triangle of a quarter of its area (the corner triangle with half the sides)
    large = points[points[:, 0] >= 2 - 1e-6]
    corner = ((large[:, 0] - 2) / 3 + large[:, 1] / 3 <= 0.5).float().mean()
    assert abs(float(corner) - 0.25) < 0.02


def test_the_generator_decides_the_points() -> None:
    sphere = icosphere_template(2).mesh
    first = sample_surface(sphere.vertices, sphere.faces, 500, torch.Generator().manual_seed(3))
    again = sample_surface(sphere.vertices, sphere.faces, 500, torch.Generator().manual_seed(3))
    other = sample_surface(sphere.vertices, sphere.faces, 500, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert float((first.norm(dim=1) - 1).abs().max()) < 0.1  # on the (inscribed) sphere's faces
    assert float(face_areas(sphere.vertices, sphere.faces).sum()) > 0


@pytest.mark.parametrize("device", DEVICES)
def test_a_cpu_generator_gives_the_same_points_on_any_device(device: str) -> None:
    sphere = icosphere_template(2).mesh
    here = sample_surface(sphere.vertices, sphere.faces, 300, torch.Generator().manual_seed(5))
    there = sample_surface(
        sphere.vertices.to(device), sphere.faces.to(device), 300, torch.Generator().manual_seed(5)
    )
    assert there.device.type == device
    torch.testing.assert_close(there.cpu(), here)


def test_bad_arguments_are_refused() -> None:
    vertices, faces = torch.zeros(3, 3), torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match=r"vertices must have shape \(V, 3\)"):
        sample_surface(torch.zeros(3, 2), faces, 10, torch.Generator())
    with pytest.raises(ValueError, match="only 3 vertices"):
        sample_surface(vertices, torch.tensor([[0, 1, 3]]), 10, torch.Generator())
    with pytest.raises(ValueError, match="count must be positive"):
        sample_surface(vertices, faces, 0, torch.Generator())
