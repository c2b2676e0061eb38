"""``mesh_point_cloud``: a point cloud to a clean, outward-facing triangle mesh within a face budget.

Contract: ``mesh_point_cloud(cloud, options, eye=None)`` runs, timing each stage,

1. ``normals``: the cloud's own normals when it has them (unless ``options.recompute_normals``), else
   Open3D's PCA estimate oriented by ``options.orientation`` (``backend.meshing.normals``);
2. ``poisson``: screened Poisson at ``options.depth`` (``backend.meshing.poisson``);
3. ``trim``: vertices below the ``options.density_quantile`` of Poisson's densities removed;
4. ``cleanup``: degenerate and duplicate faces out, the largest component kept, unused vertices out;
5. ``decimate``: quadric decimation down to ``options.face_budget`` faces when above it;

and finally makes the faces counter-clockwise seen from outside (positive signed volume). The input is
checked first (``check_points``); every problem, and running past ``options.time_limit`` seconds for the
whole call, raises ``MeshingError`` with a message naming it; so does a missing Open3D (imported here,
when the stage runs, not when the module is imported).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from backend.geometry.mesh import PointCloud
from backend.meshing.cleanup import clean_mesh, decimate, is_closed, orient_outward
from backend.meshing.errors import MeshingError, import_open3d, run_with_time_limit
from backend.meshing.normals import ORIENTATIONS, Orientation, estimate_normals
from backend.meshing.poisson import MAX_DEPTH, MIN_DEPTH, check_points, poisson_reconstruct, trim_low_density


@dataclass(frozen=True)
class MeshingOptions:
    """Settings of ``mesh_point_cloud``; the defaults suit a network's 2k-16k points in a unit box."""

    depth: int = 8
    """Poisson octree depth (a grid of at most 2^depth per axis); 9+ adds nothing below 16k points."""
    normal_neighbours: int = 30
    """Nearest neighbours of the PCA normal estimate."""
    orientation: Orientation = "centroid"
    """Normal orientation: "centroid" (outward), "camera" (toward ``eye``) or "tangent" (propagated)."""
    tangent_neighbours: int = 10
    """Graph neighbours of the "tangent" orientation."""
    recompute_normals: bool = False
    """Estimate normals even when the cloud has its own."""
    density_quantile: float = 0.02
    """Vertices below this quantile of Poisson density are removed (0 keeps a closed surface closed)."""
    face_budget: int = 20000
    """Most faces of the result (quadric decimation above it); about what Blender handles with ease."""
    time_limit: float = 60.0
    """Seconds for the whole call before ``MeshingError`` (see ``backend.meshing.errors``)."""
    scale: float = 1.1
    """Poisson cube diameter over the samples' bounding-cube diameter."""
    linear_fit: bool = False
    """Poisson iso-vertices by linear interpolation."""
    min_points: int = 100
    """Fewest points accepted."""
    flatness: float = 1e-3
    """Clouds thinner than this fraction of their extent along an axis are rejected as flat."""

    def __post_init__(self) -> None:
        if not MIN_DEPTH <= self.depth <= MAX_DEPTH:
            raise ValueError(f"depth must lie in [{MIN_DEPTH}, {MAX_DEPTH}], got {self.depth}")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if self.normal_neighbours < 3 or self.tangent_neighbours < 3:
            raise ValueError("normal_neighbours and tangent_neighbours must be at least 3")
        if not 0.0 <= self.density_quantile < 1.0:
            raise ValueError(f"density_quantile must lie in [0, 1), got {self.density_quantile}")
        if self.face_budget < 4:
            raise ValueError(f"face_budget must be at least 4, got {self.face_budget}")
        if not self.time_limit > 0:
            raise ValueError(f"time_limit must be positive, got {self.time_limit}")
        if self.min_points < 4:
            raise ValueError(f"min_points must be at least 4, got {self.min_points}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MeshingResult:
    """What ``mesh_point_cloud`` made.

    Attributes:
        vertices: (V, 3) float32 positions in the cloud's frame.
        faces: (F, 3) int64, counter-clockwise seen from outside.
        timings: seconds per stage ("normals", "poisson", "trim", "cleanup", "decimate", "total").
        stats: "points", "depth", "normals" ("given" or "estimated"), "orientation", "poisson_vertices",
            "poisson_faces", "trimmed_vertices", the cleanup counts of ``clean_mesh``, "decimated",
            "flipped" (winding reversed to face outward), "vertices", "faces", "closed" (watertight).
    """

    vertices: Tensor
    faces: Tensor
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def mesh_point_cloud(
    cloud: PointCloud, options: MeshingOptions | None = None, *, eye: Tensor | None = None
) -> MeshingResult:
    """The triangle mesh of ``cloud`` (module docstring).

    Args:
        cloud: N points (N, 3), optionally with outward normals (N, 3).
        options: settings (defaults: ``MeshingOptions()``).
        eye: (3,) or (1, 3) camera centre in the cloud's frame, needed by ``orientation="camera"``.
    """
    options = options or MeshingOptions()
    import_open3d()  # no Open3D: a MeshingError saying how to install it, before any work
    start = time.perf_counter()

    def remaining(stage: str) -> float:
        left = options.time_limit - (time.perf_counter() - start)
        if left <= 0:
            raise MeshingError(f"meshing exceeded its time limit of {options.time_limit:g} s before {stage}")
        return left

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    points = cloud.points.detach().cpu().double().numpy()  # (N, 3)
    check_points(points, options.min_points, options.flatness)
    eye_point = None if eye is None else eye.detach().cpu().double().numpy().reshape(-1)
    if cloud.normals is not None and not options.recompute_normals:
        normals = cloud.normals.detach().cpu().double().numpy()  # (N, 3)
        source = "given"
    else:
        normals = run_with_time_limit(
            lambda: estimate_normals(
                points, options.normal_neighbours, options.orientation, eye_point, options.tangent_neighbours
            ),
            remaining("normal estimation"),
            "normal estimation",
        )
        source = "estimated"
    lap("normals")

    surface = poisson_reconstruct(
        points,
        normals,
        options.depth,
        scale=options.scale,
        linear_fit=options.linear_fit,
        time_limit=remaining("Poisson reconstruction"),
    )
    lap("poisson")
    vertices, faces, trimmed = trim_low_density(
        surface.vertices, surface.faces, surface.densities, options.density_quantile
    )
    lap("trim")
    vertices, faces, removed = clean_mesh(vertices, faces)
    lap("cleanup")
    decimated = len(faces) > options.face_budget
    if decimated:
        vertices, faces = run_with_time_limit(
            lambda: decimate(vertices, faces, options.face_budget), remaining("decimation"), "decimation"
        )
    faces, flipped = orient_outward(vertices, faces)
    lap("decimate")
    timings["total"] = time.perf_counter() - start
    stats: dict[str, Any] = {
        "points": len(points),
        "depth": options.depth,
        "normals": source,
        "orientation": options.orientation,
        "poisson_vertices": len(surface.vertices),
        "poisson_faces": len(surface.faces),
        "trimmed_vertices": trimmed,
        **removed,
        "decimated": decimated,
        "flipped": flipped,
        "vertices": len(vertices),
        "faces": len(faces),
        "closed": is_closed(faces),
    }
    return MeshingResult(
        torch.from_numpy(np.ascontiguousarray(vertices, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(faces, dtype=np.int64)),
        timings,
        stats,
    )
