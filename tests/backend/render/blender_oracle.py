"""Blender as an independent oracle for hard silhouettes, driven from the main environment.

``render_with_blender`` writes each job's mesh as an OBJ and its camera as plain numbers, runs
``blender_silhouettes.py`` once with the Python of ``.venv-blender`` (``bpy`` as a module, no torch),
and returns one (H, W) bool silhouette per job, row 0 at the top of the image. This module never
imports bpy; Blender runs in a subprocess.

A job is a dict::

    {"name": "cube",               # letters, digits, "_", "-", "."
     "vertices": (V, 3) array,     # numpy or torch; world space, as our renderer sees it
     "faces": (F, 3) int array,    # or "mesh": a TexturedMesh instead of vertices and faces
     "camera": Camera,             # backend.geometry.Camera with batch size 1
     "image_size": 128}

Camera conversion: ``Camera.view_transform()`` gives ``p_view = R p + t`` for both kinds (for
weak_perspective, t already folds in the NDC translation divided by the scale), so Blender gets R and
t plus ``ndc_scale = scale`` (an orthographic camera) or ``viewing_angle_deg = viewing_angle`` (a
perspective camera whose half field of view it is).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.geometry import Camera

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).resolve().with_name("blender_silhouettes.py")
BLENDER_PYTHON_ENV = "MONO2MESH_BLENDER_PYTHON"
"""Environment variable that overrides where the Blender environment's Python is."""
TIMEOUT_S = 300


def blender_python() -> Path:
    """The Python of the Blender environment: ``$MONO2MESH_BLENDER_PYTHON`` or ``<repo>/.venv-blender``.

    Raises:
        FileNotFoundError: with how to create the environment, when it is missing.
    """
    override = os.environ.get(BLENDER_PYTHON_ENV)
    path = Path(override) if override else REPO_ROOT / ".venv-blender" / "bin" / "python"
    if not path.is_file():
        raise FileNotFoundError(
            f"the Blender Python {path} is missing; create it with "
            f"`python3.11 -m venv .venv-blender && .venv-blender/bin/pip install bpy==5.0.1 pytest` "
            f"in {REPO_ROOT}, or set {BLENDER_PYTHON_ENV}"
        )
    return path


def camera_spec(camera: Camera) -> dict[str, Any]:
    """The JSON camera of ``blender_silhouettes.py`` for a Camera of batch size 1."""
    if camera.batch_size != 1:
        raise ValueError(f"Blender renders one camera per job, got a batch of {camera.batch_size}")
    rotation, translation = camera.view_transform()  # (1, 3, 3), (1, 3)
    spec: dict[str, Any] = {
        "rotation": rotation[0].detach().double().cpu().tolist(),
        "translation": translation[0].detach().double().cpu().tolist(),
    }
    if camera.kind == "weak_perspective":
        spec.update(projection="orthographic", ndc_scale=float(camera.weak.scale[0]))
    elif camera.kind == "look_at":
        spec.update(projection="perspective", viewing_angle_deg=float(camera.orbit.viewing_angle[0]))
    else:
        raise ValueError(f"unknown camera kind {camera.kind!r}")
    return spec


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write vertices (V, 3) and 0-based triangles (F, 3) as an OBJ (exact for float32 positions)."""
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in vertices.tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
    path.write_text("\n".join(lines) + "\n")


def _as_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def render_with_blender(
    jobs: Sequence[dict[str, Any]], tmp_dir: Path, engine: str = "BLENDER_WORKBENCH"
) -> dict[str, np.ndarray]:
    """Render the hard silhouette of every job in one Blender process.

    Args:
        jobs: dicts as in the module docstring; names must be unique.
        tmp_dir: a folder for the OBJs, the spec and Blender's PNG/NPY outputs (kept for inspection).
        engine: "BLENDER_WORKBENCH" (default, rasterised) or "CYCLES" (1 sample at the pixel centre).

    Returns:
        name -> (H, W) bool silhouette (alpha > 0.5 without anti-aliasing), row 0 at the top.

    Raises:
        ValueError: a malformed job. FileNotFoundError: no Blender Python.
        RuntimeError: Blender failed or timed out (its output is in the message).
    """
    tmp_dir = Path(tmp_dir)
    mesh_dir, out_dir = tmp_dir / "meshes", tmp_dir / "silhouettes"
    mesh_dir.mkdir(parents=True, exist_ok=True)
    spec_jobs = []
    for job in jobs:
        name = job["name"]
        if "mesh" in job:
            vertices, faces = _as_numpy(job["mesh"].vertices), _as_numpy(job["mesh"].faces)
        else:
            vertices, faces = _as_numpy(job["vertices"]), _as_numpy(job["faces"])
        if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(
                f"job {name!r}: need vertices (V, 3) and faces (F, 3), got {vertices.shape}, {faces.shape}"
            )
        mesh_path = mesh_dir / f"{name}.obj"
        write_obj(mesh_path, vertices.astype(np.float64), faces.astype(np.int64))
        spec_jobs.append(
            {
                "name": name,
                "mesh": str(mesh_path),
                "image_size": int(job["image_size"]),
                "camera": camera_spec(job["camera"]),
            }
        )
    spec_path = tmp_dir / "spec.json"
    spec_path.write_text(json.dumps({"engine": engine, "jobs": spec_jobs}, indent=1))

    command = [str(blender_python()), str(SCRIPT), str(spec_path), str(out_dir)]
    # The Blender environment has its own numpy; keep the main environment's paths out of it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(
            f"Blender did not finish in {TIMEOUT_S} s: {' '.join(command)}\n{error.output}"
        ) from error
    if result.returncode != 0:
        raise RuntimeError(
            f"Blender exited with {result.returncode}: {' '.join(command)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return {job["name"]: np.load(out_dir / f"{job['name']}.npy").astype(bool) for job in spec_jobs}
