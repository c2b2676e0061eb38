"""Normal estimation and the three orientation rules on a sphere, whose outward normal is p / |p|."""

from __future__ import annotations

import numpy as np
import pytest

from backend.meshing.normals import estimate_normals, orient_normals


@pytest.mark.parametrize("orientation", ["centroid", "tangent"])
def test_normals_point_out_of_the_sphere(sphere_points: np.ndarray, orientation: str) -> None:
    normals = estimate_normals(sphere_points, neighbours=20, orientation=orientation)  # type: ignore[arg-type]
    assert normals.shape == sphere_points.shape and normals.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-9)
    outward = sphere_points / np.linalg.norm(sphere_points, axis=1, keepdims=True)
    cosine = (normals * outward).sum(1)
    assert (cosine > 0.95).mean() > 0.99  # PCA on a curved patch tilts a little


def test_camera_orientation_faces_the_eye(sphere_points: np.ndarray) -> None:
    eye = np.array([0.0, 0.0, 3.0])
    normals = estimate_normals(sphere_points, orientation="camera", eye=eye)
    assert ((normals * (eye - sphere_points)).sum(1) >= 0).all()
    outward = sphere_points / np.linalg.norm(sphere_points, axis=1, keepdims=True)
    front = sphere_points[:, 2] > 0.1
    back = sphere_points[:, 2] < -0.1
    assert ((normals * outward).sum(1)[front] > 0.9).all()  # the seen side points outward ...
    assert ((normals * outward).sum(1)[back] < -0.9).all()  # ... the hidden side toward the camera


def test_orient_normals_flips_signs_by_rule(sphere_points: np.ndarray) -> None:
    outward = sphere_points / np.linalg.norm(sphere_points, axis=1, keepdims=True)
    signs = np.where(np.arange(len(outward)) % 3 == 0, -2.0, 0.5)  # mixed signs and lengths
    np.testing.assert_allclose(orient_normals(sphere_points, outward * signs[:, None]), outward, atol=1e-12)
    inward = orient_normals(sphere_points, -outward, "tangent")  # consistent but inward: flipped as a whole
    np.testing.assert_allclose(inward, outward, atol=1e-12)


def test_orientation_arguments_are_checked(sphere_points: np.ndarray) -> None:
    with pytest.raises(ValueError, match="eye"):
        estimate_normals(sphere_points, orientation="camera")
    with pytest.raises(ValueError, match="orientation"):
        estimate_normals(sphere_points, orientation="inward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="neighbours"):
        estimate_normals(sphere_points, neighbours=2)
