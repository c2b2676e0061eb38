"""Screened Poisson surface reconstruction (Open3D) with guards, and density trimming.

Contract:

- ``check_points(points, min_points, flatness)`` raises ``MeshingError`` for the inputs that make
  Open3D's Poisson solver fail, hang or return nonsense: too few points, NaN or infinite coordinates,
  and clouds that are (nearly) a single point, a line or a plane (principal-component check: the
  spread along the thinnest axis relative to the widest).
- ``poisson_reconstruct(points, normals, depth, ...)`` runs
  ``o3d.geometry.TriangleMesh.create_from_point_cloud_poisson`` (Kazhdan and Hoppe's screened Poisson,
  octree depth ``depth``: a grid of at most 2^depth cells per axis) under a time limit
  (``backend.meshing.errors.run_with_time_limit``) and returns the surface with its per-vertex density
  (how many samples supported the octree node: low where Poisson extrapolated across holes). The
  surface's faces are counter-clockwise seen from the side the normals point to. An empty or non-finite
  result raises ``MeshingError``.
- ``trim_low_density(vertices, faces, densities, quantile)`` removes the vertices whose density is below
  the ``quantile`` of all densities (and the faces that used them). Trimming opens the surface where it
  cuts; 0 disables it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backend.meshing.cleanup import remove_unreferenced_vertices
from backend.meshing.errors import MeshingError, import_open3d, run_with_time_limit

if TYPE_CHECKING:
    import open3d as o3d

MIN_DEPTH, MAX_DEPTH = 3, 12
"""Poisson octree depths accepted; depth 12 already needs gigabytes for dense clouds."""


@dataclass(frozen=True)
class PoissonSurface:
    """Open3D's Poisson output as arrays.

    Attributes:
        vertices: (V, 3) float64 positions.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from where the normals point.
        densities: (V,) float64 density of the samples around each vertex (higher is better supported).
    """

    vertices: np.ndarray
    faces: np.ndarray
    densities: np.ndarray


def check_points(points: np.ndarray, min_points: int = 100, flatness: float = 1e-3) -> None:
    """Raise ``MeshingError`` unless (N, 3) ``points`` can carry a Poisson surface (module docstring).

    Args:
        points: (N, 3) positions.
        min_points: fewest points accepted.
        flatness: the cloud is rejected as planar (linear) when its standard deviation along the third
            (second) principal axis is below ``flatness`` times that along the first.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise MeshingError(f"points must have shape (N, 3), got {points.shape}")
    count = points.shape[0]
    if count < min_points:
        raise MeshingError(f"too few points for Poisson meshing: {count} (at least {min_points} needed)")
    finite = np.isfinite(points).all(axis=1)  # (N,)
    if not finite.all():
        raise MeshingError(
            f"the point cloud contains NaN or infinite coordinates ({int((~finite).sum())} points)"
        )
    centred = points.astype(np.float64) - points.mean(axis=0, dtype=np.float64)  # (N, 3)
    spread = np.linalg.svd(centred, compute_uv=False) / np.sqrt(count)  # (3,) std along principal axes
    scale = max(float(np.abs(points).max()), 1.0)
    if spread[0] <= 1e-9 * scale:
        raise MeshingError("all points coincide: there is no surface to reconstruct")
    if spread[1] < flatness * spread[0]:
        raise MeshingError(
            f"the points are (nearly) collinear (spread ratio {spread[1] / spread[0]:.2g}): "
            "no surface can be reconstructed"
        )
    if spread[2] < flatness * spread[0]:
        raise MeshingError(
            f"the points are (nearly) coplanar (spread ratio {spread[2] / spread[0]:.2g}): a closed Poisson "
            "surface needs points with depth"
        )


def poisson_reconstruct(
    points: np.ndarray,
    normals: np.ndarray,
    depth: int = 8,
    *,
    scale: float = 1.1,
    linear_fit: bool = False,
    time_limit: float = 60.0,
) -> PoissonSurface:
    """Screened Poisson surface of oriented points (module docstring).

    Args:
        points: (N, 3) positions (checked with ``check_points``' defaults except the flatness test,
            which belongs to the caller).
        normals: (N, 3) outward normals; their orientation decides inside and outside.
        depth: octree depth, 3..12.
        scale: reconstruction cube diameter over the samples' bounding-cube diameter.
        linear_fit: place iso-vertices by linear interpolation.
        time_limit: seconds before ``MeshingError``.
    """
    if not isinstance(depth, int) or not MIN_DEPTH <= depth <= MAX_DEPTH:
        raise ValueError(f"Poisson depth must be an integer in [{MIN_DEPTH}, {MAX_DEPTH}], got {depth!r}")
    if not scale >= 1.0:
        raise ValueError(f"Poisson scale must be at least 1 (a cube around the samples), got {scale}")
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != points.shape:
        raise MeshingError(f"normals must match the points' shape {points.shape}, got {normals.shape}")
    if not np.isfinite(normals).all():
        raise MeshingError("the normals contain NaN or infinite values")
    if (np.linalg.norm(normals, axis=1) < 1e-6).any():
        raise MeshingError("some normals have zero length: Poisson needs a direction at every point")
    if not np.isfinite(points).all():
        raise MeshingError("the point cloud contains NaN or infinite coordinates")
    open3d = import_open3d()  # MeshingError when Open3D is missing
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(points))
    cloud.normals = open3d.utility.Vector3dVector(normals)

    def solve() -> tuple[o3d.geometry.TriangleMesh, o3d.utility.DoubleVector]:
        return open3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
            cloud, depth=depth, scale=scale, linear_fit=linear_fit
        )

    try:
        mesh, densities = run_with_time_limit(solve, time_limit, f"Poisson reconstruction (depth {depth})")
    except RuntimeError as error:
        raise MeshingError(f"Open3D Poisson reconstruction failed: {error}") from error
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(faces) == 0 or len(vertices) == 0:
        raise MeshingError(
            "Poisson reconstruction returned an empty mesh: the points are too sparse or their normals "
            "are inconsistent"
        )
    if not np.isfinite(vertices).all():
        raise MeshingError("Poisson reconstruction returned non-finite vertices")
    return PoissonSurface(vertices, faces, np.asarray(densities, dtype=np.float64))


def trim_low_density(
    vertices: np.ndarray, faces: np.ndarray, densities: np.ndarray, quantile: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop the vertices below the ``quantile`` of ``densities`` (module docstring).

    Args:
        vertices: (V, 3); faces: (F, 3) int64; densities: (V,).
        quantile: in [0, 1); 0 returns the mesh unchanged.

    Returns:
        vertices: (V', 3); faces: (F', 3) re-indexed; removed: V - V', the vertices dropped (those under
        the threshold and those only their faces used).
    """
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"density quantile must lie in [0, 1), got {quantile}")
    if densities.shape != (len(vertices),):
        raise ValueError(f"densities must have shape ({len(vertices)},), got {densities.shape}")
    if quantile == 0.0:
        return vertices, faces, 0
    keep = densities >= np.quantile(densities, quantile)  # (V,)
    faces = faces[keep[faces].all(axis=1)]
    if len(faces) == 0:
        raise MeshingError(f"trimming at density quantile {quantile} removed every face")
    kept_vertices, faces = remove_unreferenced_vertices(vertices, faces)
    return kept_vertices, faces, len(vertices) - len(kept_vertices)
