"""Our hard silhouettes against Blender's (Workbench, anti-aliasing off) from the same cameras.

Blender is a renderer nobody here wrote; ``blender_oracle`` runs it in the .venv-blender environment.
Skipped when that environment is missing, except in CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from backend.geometry import Camera, TexturedMesh
from backend.geometry.camera import axis_angle_to_quaternion
from backend.geometry.io import load_obj
from backend.geometry.metrics import mask_iou
from backend.geometry.templates import icosphere_template
from backend.render import RasterSettings, render
from tests.backend.render.blender_oracle import blender_python, render_with_blender

SPOT = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "data"
    / "meshes"
    / "spot"
    / "spot_triangulated.obj"
)


def _missing() -> str | None:
    try:
        blender_python()
    except FileNotFoundError as error:
        return str(error)
    return None


pytestmark = pytest.mark.skipif(
    _missing() is not None and os.environ.get("CI") != "true", reason=f"no Blender environment: {_missing()}"
)


def _cameras() -> dict[str, Camera]:
    rotation = axis_angle_to_quaternion(torch.tensor([[0.3, 1.0, 0.2]]), torch.tensor([0.9]))
    return {
        "weak": Camera.weak_perspective(1.1, torch.tensor([[0.05, -0.08]]), rotation),
        "lookat": Camera.look_at(2.732, 25.0, -40.0, 20.0),
    }


def _meshes() -> dict[str, TexturedMesh]:
    icosphere = icosphere_template().mesh
    meshes = {"icosphere": icosphere.with_vertices(icosphere.vertices * torch.tensor([0.6, 0.45, 0.7]))}
    if SPOT.is_file():
        meshes["spot"] = load_obj(SPOT)
    return meshes


def test_hard_silhouettes_agree_with_blender(tmp_path: Path) -> None:
    jobs = []
    ours = {}
    for mesh_name, mesh in _meshes().items():
        for camera_name, camera in _cameras().items():
            for size in (128, 256):
                name = f"{mesh_name}_{camera_name}_{size}"
                jobs.append({"name": name, "mesh": mesh, "camera": camera, "image_size": size})
                out = render(mesh.vertices, mesh.faces, camera, RasterSettings(image_size=size, soft=False))
                ours[name] = out.mask[0, ..., 0]
    assert len(jobs) == 8, "Spot must be part of the comparison (../shared/data/meshes/spot)"
    blender = render_with_blender(jobs, tmp_path)
    for name, silhouette in ours.items():
        reference = torch.from_numpy(blender[name]).float()
        assert reference.sum() > 0.05 * reference.numel(), f"{name}: Blender saw almost nothing"
        iou = float(mask_iou(silhouette, reference, soft=False))
        print(f"{name}: IoU {iou:.5f}")
        assert iou >= 0.99, f"{name}: IoU {iou:.4f} against Blender"
