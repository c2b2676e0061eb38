"""``mono2mesh bench meshing``: the whole meshing stage against the raw Open3D Poisson call, in one run.

Workload: ``--points`` (default 8000, a network's output size) points sampled uniformly by area, with a
fixed seed, on a closed surface: by default a bird-like blob the backend builds itself (the level-4
icosphere stretched into an ellipsoid with a head and a tail bump, symmetric about x = 0); with
``--mesh PATH`` any mesh file (e.g. the textured Spot model of ../shared/data/meshes), scaled into the
unit box. The points carry no normals, as a network's do not.

Each repeat times, alternating which goes first:

- **raw**: what a bare script does, ``estimate_normals`` (KNN 30), the normals flipped away from the
  centroid (< 0.1 ms, without it Poisson's inside and outside are random) and
  ``create_from_point_cloud_poisson(depth)``;
- **stage**: ``backend.meshing.mesh_point_cloud`` with default options at the same depth (checks,
  normals, Poisson, trimming, cleanup, decimation to 20k faces, orientation), with its per-stage times;

then, on the stage's mesh, ``unwrap_uvs`` (xatlas) and ``bake_texture`` from a side view of a synthetic
photo at ``--texture-size``. One untimed warm-up of raw and stage comes first. The JSON report gives the
medians, every run, the ratio stage / raw (goal: at most ``GOAL_RATIO``) and the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag, OptionsCommand
from backend.geometry.camera import Camera
from backend.geometry.io import load_mesh
from backend.geometry.mesh import PointCloud
from backend.geometry.sampling import sample_surface
from backend.geometry.templates import icosphere_template
from backend.meshing.bake import bake_texture
from backend.meshing.errors import MeshingError
from backend.meshing.unwrap import unwrap_uvs, uv_overlap_fraction

# Open3D (and the pipeline, which needs it) is imported inside the functions that use it: the CLI builds
# its parser from this module, and every ``mono2mesh`` command would otherwise pay Open3D's second.

GOAL_RATIO = 1.5
"""The whole stage may take at most this multiple of the raw Open3D call."""


class MeshingBenchOptions(Config):
    """The options of ``mono2mesh bench meshing``."""

    points: PositiveInt = 8000
    """Points in the cloud."""
    depth: int = 8
    """Poisson depth."""
    repeats: PositiveInt = 5
    """Timed runs of each."""
    mesh: Path | None = None
    """Sample the cloud on this mesh file."""
    texture_size: Annotated[int, Field(ge=16)] = 1024
    """Baked texture side."""
    no_texture: Annotated[bool, Flag(switch=True)] = False
    """Skip the unwrap and bake timings."""
    seed: int = 0
    """Sampling seed."""


def _main(args: MeshingBenchOptions) -> int:
    """Run the benchmark and print its JSON report; 1 when meshing fails."""
    try:
        points, source = make_cloud(args.points, args.seed, args.mesh)
        report = run(points, args.depth, args.repeats, None if args.no_texture else args.texture_size)
    except (MeshingError, ValueError, FileNotFoundError) as error:
        print(f"bench meshing: {error}", file=sys.stderr)
        return 1
    report["input"] = source
    print(json.dumps(report, indent=2))
    return 0


COMMAND = OptionsCommand(MeshingBenchOptions, "bench meshing", _main)
"""``mono2mesh bench meshing``: one flag per field of ``MeshingBenchOptions``, then ``_main``."""

add_arguments, main = COMMAND.add_arguments, COMMAND.main


def make_cloud(count: int, seed: int = 0, mesh_path: Path | None = None) -> tuple[Tensor, str]:
    """(N, 3) float32 points on the benchmark surface (module docstring) and a description of it."""
    if mesh_path is None:
        vertices, faces = bird_blob()
        source = "bird-like blob (icosphere level 4, ellipsoid with head and tail)"
    else:
        mesh = load_mesh(mesh_path)
        vertices, faces = mesh.vertices, mesh.faces
        low, high = vertices.min(0).values, vertices.max(0).values
        vertices = (vertices - (low + high) / 2) / float((high - low).max())  # centred in the unit box
        source = str(mesh_path)
    return sample_surface(vertices.float(), faces, count, torch.Generator().manual_seed(seed)), source


def bird_blob() -> tuple[Tensor, Tensor]:
    """A smooth closed blob symmetric about x = 0: vertices (V, 3) inside [-0.5, 0.5]^3, faces (F, 3)."""
    sphere = icosphere_template(level=4).mesh
    unit = sphere.vertices  # (V, 3) on the unit sphere
    head = torch.tensor([0.0, 0.5, 0.85], device=unit.device)
    tail = torch.tensor([0.0, 0.1, -1.0], device=unit.device)
    radius = 1.0 + 0.35 * torch.exp(-((unit - head) ** 2).sum(1) / 0.08)
    radius = radius + 0.25 * torch.exp(-((unit - tail) ** 2).sum(1) / 0.05)
    vertices = unit * radius[:, None] * torch.tensor([0.22, 0.25, 0.32], device=unit.device)  # (V, 3)
    return vertices, sphere.faces


def raw_poisson(points: np.ndarray, depth: int) -> tuple[float, int, int]:
    """Seconds, vertices and faces of the bare Open3D script on (N, 3) float64 ``points``."""
    import open3d as o3d

    start = time.perf_counter()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=30))
    cloud.orient_normals_towards_camera_location(cloud.get_center())
    cloud.normals = o3d.utility.Vector3dVector(-np.asarray(cloud.normals))  # away from the centroid
    mesh, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    return time.perf_counter() - start, len(mesh.vertices), len(mesh.triangles)


def run(points: Tensor, depth: int, repeats: int, texture_size: int | None) -> dict[str, Any]:
    """The JSON-ready report (module docstring) for (N, 3) ``points``."""
    import open3d as o3d
    import xatlas

    from backend.meshing.pipeline import MeshingOptions, mesh_point_cloud

    cloud = PointCloud(points)
    array = points.double().numpy()
    options = MeshingOptions(depth=depth)
    raw_poisson(array, depth)  # warm-up
    mesh_point_cloud(cloud, options)
    raw_runs: list[float] = []
    stage_runs: list[float] = []
    stage_timings: list[dict[str, float]] = []
    for repeat in range(repeats):
        order = ("raw", "stage") if repeat % 2 == 0 else ("stage", "raw")
        for which in order:
            if which == "raw":
                seconds, raw_vertices, raw_faces = raw_poisson(array, depth)
                raw_runs.append(seconds)
            else:
                start = time.perf_counter()
                result = mesh_point_cloud(cloud, options)
                stage_runs.append(time.perf_counter() - start)
                stage_timings.append(result.timings)
    raw_median, stage_median = statistics.median(raw_runs), statistics.median(stage_runs)
    report: dict[str, Any] = {
        "benchmark": "meshing",
        "points": len(points),
        "depth": depth,
        "repeats": repeats,
        "raw_poisson_s": _summary(raw_runs),
        "raw_mesh": {"vertices": raw_vertices, "faces": raw_faces},
        "stage_s": _summary(stage_runs),
        "stage_breakdown_median_s": {
            name: round(statistics.median(t[name] for t in stage_timings), 4) for name in stage_timings[0]
        },
        "ratio": round(stage_median / raw_median, 3),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": stage_median <= GOAL_RATIO * raw_median,
        "mesh": result.stats,
    }
    if texture_size is not None:
        report.update(_texture_timings(result.vertices, result.faces, repeats, texture_size))
    report["versions"] = {"open3d": o3d.__version__, "xatlas": getattr(xatlas, "__version__", "unknown")}
    report["machine"] = machine_info()
    return report


def _texture_timings(vertices: Tensor, faces: Tensor, repeats: int, size: int) -> dict[str, Any]:
    """Unwrap and bake medians on the stage's mesh, from a side view of a synthetic 256 x 256 photo."""
    unwrap_runs, bake_runs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        uvs, face_uvs = unwrap_uvs(vertices, faces, resolution=size)
        unwrap_runs.append(time.perf_counter() - start)
    half = float(np.sqrt(0.5))
    device = vertices.device
    camera = Camera.weak_perspective(
        torch.tensor([1.6], device=device),
        torch.zeros(1, 2, device=device),
        torch.tensor([[half, 0, -half, 0]], device=device),
    )
    rows, columns = np.mgrid[0:256, 0:256] / 255.0
    image = np.stack([rows, columns, 1 - rows], axis=-1).astype(np.float32)  # (256, 256, 3) colour ramps
    mask = np.ones((256, 256), bool)
    for _ in range(repeats):
        start = time.perf_counter()
        baked = bake_texture(vertices, faces, uvs, face_uvs, camera, image, mask, (size, size))
        bake_runs.append(time.perf_counter() - start)
    return {
        "unwrap_s": _summary(unwrap_runs),
        "uv_vertices": len(uvs),
        "uv_overlap_fraction": round(uv_overlap_fraction(uvs, face_uvs, 512), 6),
        "bake_s": _summary(bake_runs),
        "texture_size": [size, size],
        "photo_fraction": round(baked.photo_fraction, 4),
        "mirrored_fraction": round(baked.mirrored_fraction, 4),
    }


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 4), "runs": [round(v, 4) for v in values]}


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m backend.bench.meshing")
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
