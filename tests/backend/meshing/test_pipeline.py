"""``mesh_point_cloud`` end to end on sphere clouds: closed, outward, in budget, timed, guarded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.geometry.mesh import PointCloud
from backend.meshing import MeshingError, MeshingOptions, mesh_point_cloud
from backend.meshing.cleanup import is_closed, signed_volume

STAGES = {"normals", "poisson", "trim", "cleanup", "decimate", "total"}


def cloud_of(points: np.ndarray, normals: np.ndarray | None = None) -> PointCloud:
    return PointCloud(
        torch.from_numpy(points).float(), None if normals is None else torch.from_numpy(normals).float()
    )


def test_sphere_cloud_becomes_a_closed_outward_mesh_within_budget(sphere_points: np.ndarray) -> None:
    options = MeshingOptions(depth=6, density_quantile=0.0, face_budget=3000)
    result = mesh_point_cloud(cloud_of(sphere_points), options)
    assert result.vertices.dtype == torch.float32 and result.faces.dtype == torch.int64
    assert result.vertices.shape[1] == 3 and result.faces.shape[1] == 3
    vertices, faces = result.vertices.double().numpy(), result.faces.numpy()
    assert len(faces) <= 3000 and result.stats["decimated"]
    assert is_closed(faces) and result.stats["closed"]
    assert signed_volume(vertices, faces) == pytest.approx(4 / 3 * np.pi * 0.4**3, rel=0.03)
    assert np.abs(np.linalg.norm(vertices, axis=1) - 0.4).max() < 0.01
    assert set(result.timings) == STAGES and all(value >= 0 for value in result.timings.values())
    assert result.timings["total"] >= result.timings["poisson"] > 0
    stats = result.stats
    assert stats["points"] == 3000 and stats["depth"] == 6 and stats["normals"] == "estimated"
    assert stats["vertices"] == len(vertices) and stats["faces"] == len(faces)
    assert stats["poisson_faces"] > 3000 and stats["trimmed_vertices"] == 0


def test_trimming_opens_the_surface_and_is_reported(sphere_points: np.ndarray) -> None:
    result = mesh_point_cloud(cloud_of(sphere_points), MeshingOptions(depth=5, density_quantile=0.05))
    assert result.stats["trimmed_vertices"] > 0 and not result.stats["decimated"]
    assert result.stats["faces"] == len(result.faces) < result.stats["poisson_faces"]


def test_given_inward_normals_are_kept_and_the_result_still_faces_out(sphere_points: np.ndarray) -> None:
    inward = -sphere_points / np.linalg.norm(sphere_points, axis=1, keepdims=True)
    options = MeshingOptions(depth=5, density_quantile=0.0)
    result = mesh_point_cloud(cloud_of(sphere_points, inward), options)
    assert result.stats["normals"] == "given" and result.stats["flipped"]
    assert signed_volume(result.vertices.double().numpy(), result.faces.numpy()) > 0
    recomputed = mesh_point_cloud(
        cloud_of(sphere_points, inward), MeshingOptions(depth=5, density_quantile=0.0, recompute_normals=True)
    )
    assert recomputed.stats["normals"] == "estimated" and not recomputed.stats["flipped"]


def test_camera_orientation_needs_an_eye(sphere_points: np.ndarray) -> None:
    options = MeshingOptions(depth=5, orientation="camera")
    with pytest.raises(ValueError, match="eye"):
        mesh_point_cloud(cloud_of(sphere_points), options)
    result = mesh_point_cloud(cloud_of(sphere_points), options, eye=torch.tensor([0.0, 0.0, 3.0]))
    assert result.stats["orientation"] == "camera" and len(result.faces) > 0


def test_errors_for_bad_clouds_and_the_time_limit(sphere_points: np.ndarray) -> None:
    with pytest.raises(MeshingError, match="too few points"):
        mesh_point_cloud(cloud_of(sphere_points[:50]))
    with pytest.raises(MeshingError, match="coplanar"):
        mesh_point_cloud(cloud_of(sphere_points * np.array([1.0, 1.0, 0.0])))
    with pytest.raises(MeshingError, match="time limit"):
        mesh_point_cloud(cloud_of(sphere_points), MeshingOptions(depth=5, time_limit=1e-4))
    assert issubclass(MeshingError, ValueError)


@pytest.mark.parametrize(
    ("field", "value"),
    [("depth", 2), ("density_quantile", 1.0), ("face_budget", 3), ("time_limit", 0.0), ("orientation", "up")],
)
def test_options_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MeshingOptions(**{field: value})  # type: ignore[arg-type]
    assert MeshingOptions().to_dict()["depth"] == 8
