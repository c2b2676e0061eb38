"""Poisson on a sampled sphere, density trimming against a loop oracle, and the input guards."""

from __future__ import annotations

import time

import numpy as np
import open3d as o3d
import pytest

from backend.meshing.cleanup import is_closed, signed_volume
from backend.meshing.errors import MeshingError, run_with_time_limit
from backend.meshing.normals import estimate_normals
from backend.meshing.poisson import check_points, poisson_reconstruct, trim_low_density

RADIUS = 0.4  # of the conftest's sphere_points


def test_poisson_sphere_is_closed_round_and_outward(sphere_points: np.ndarray) -> None:
    surface = poisson_reconstruct(sphere_points, estimate_normals(sphere_points), depth=6)
    assert surface.faces.dtype == np.int64 and surface.faces.shape[1] == 3
    assert surface.densities.shape == (len(surface.vertices),)
    assert is_closed(surface.faces)
    radius = np.linalg.norm(surface.vertices, axis=1)
    assert np.abs(radius - RADIUS).max() < 0.01 * RADIUS
    volume = signed_volume(surface.vertices, surface.faces)
    assert volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.02)  # positive: outward faces


def test_inward_normals_turn_the_surface_inside_out(sphere_points: np.ndarray) -> None:
    surface = poisson_reconstruct(sphere_points, -estimate_normals(sphere_points), depth=5)
    assert signed_volume(surface.vertices, surface.faces) < 0


def test_trimming_removes_the_extrapolated_cap(sphere_points: np.ndarray) -> None:
    """An open hemisphere: Poisson closes it with a low-density cap that trimming cuts away."""
    half = sphere_points[sphere_points[:, 2] > 0]
    surface = poisson_reconstruct(half, estimate_normals(half), depth=6)
    assert (surface.vertices[:, 2] < -0.1 * RADIUS).sum() > 50
    vertices, faces, removed = trim_low_density(surface.vertices, surface.faces, surface.densities, 0.2)
    threshold = np.quantile(surface.densities, 0.2)
    kept_faces = [f for f in surface.faces.tolist() if all(surface.densities[i] >= threshold for i in f)]
    used = sorted({i for f in kept_faces for i in f})  # loop oracle of the kept vertices, in order
    np.testing.assert_array_equal(vertices, surface.vertices[used])
    np.testing.assert_array_equal(vertices[faces], surface.vertices[np.array(kept_faces)])
    assert removed == len(surface.vertices) - len(used)
    assert (vertices[:, 2] < -0.1 * RADIUS).sum() == 0
    unchanged = trim_low_density(surface.vertices, surface.faces, surface.densities, 0.0)
    assert unchanged[0] is surface.vertices and unchanged[2] == 0
    with pytest.raises(ValueError, match="quantile"):
        trim_low_density(surface.vertices, surface.faces, surface.densities, 1.0)


def test_input_guards_name_the_problem(sphere_points: np.ndarray) -> None:
    with pytest.raises(MeshingError, match="too few points"):
        check_points(sphere_points[:20])
    with pytest.raises(MeshingError, match="NaN"):
        check_points(np.where(np.arange(3000)[:, None] == 7, np.nan, sphere_points))
    with pytest.raises(MeshingError, match="infinite"):
        poisson_reconstruct(np.where(np.arange(3000)[:, None] == 7, np.inf, sphere_points), sphere_points)
    flat = sphere_points * np.array([1.0, 1.0, 1e-5])
    with pytest.raises(MeshingError, match="coplanar"):
        check_points(flat)
    line = sphere_points * np.array([1.0, 1e-5, 1e-5])
    with pytest.raises(MeshingError, match="collinear"):
        check_points(line)
    with pytest.raises(MeshingError, match="coincide"):
        check_points(np.ones((200, 3)))
    with pytest.raises(MeshingError, match="zero length"):
        poisson_reconstruct(sphere_points, np.zeros_like(sphere_points))
    with pytest.raises(ValueError, match="depth"):
        poisson_reconstruct(sphere_points, sphere_points, depth=20)
    check_points(sphere_points)  # a sphere passes


def test_poisson_over_its_time_limit_raises(sphere_points: np.ndarray) -> None:
    with pytest.raises(MeshingError, match="time limit"):
        poisson_reconstruct(sphere_points, estimate_normals(sphere_points), depth=5, time_limit=1e-4)


def test_empty_poisson_output_raises(sphere_points: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    def empty(*args: object, **kwargs: object) -> tuple[o3d.geometry.TriangleMesh, o3d.utility.DoubleVector]:
        return o3d.geometry.TriangleMesh(), o3d.utility.DoubleVector()

    monkeypatch.setattr(o3d.geometry.TriangleMesh, "create_from_point_cloud_poisson", staticmethod(empty))
    with pytest.raises(MeshingError, match="empty mesh"):
        poisson_reconstruct(sphere_points, estimate_normals(sphere_points))


def test_time_limit_returns_results_and_errors_and_abandons_slow_work() -> None:
    assert run_with_time_limit(lambda: 42, 5.0, "answer") == 42

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_with_time_limit(fail, 5.0, "failing")
    start = time.perf_counter()
    with pytest.raises(MeshingError, match="sleeping exceeded the time limit"):
        run_with_time_limit(
            lambda: time.sleep(3.0), 0.05, "sleeping"
        )  # releases the GIL: raised at the limit
    assert time.perf_counter() - start < 1.5
    with pytest.raises(ValueError, match="positive"):
        run_with_time_limit(lambda: 1, 0.0, "nothing")
