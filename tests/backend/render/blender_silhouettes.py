"""Render hard silhouettes with Blender: an independent oracle for our rasterizer's coverage.

Run it with the Python of the Blender environment (``bpy`` as a module), never the main one::

    .venv-blender/bin/python tests/backend/render/blender_silhouettes.py SPEC.json OUT_DIR

``SPEC.json`` holds ``{"jobs": [job, ...]}`` and optionally ``"engine"`` (``"BLENDER_WORKBENCH"``, the
default, or ``"CYCLES"``). Each job is::

    {"name": "square",                      # letters, digits, "_", "-", "."; names the output files
     "mesh": "path/to/mesh.obj",            # only `v` and `f` lines are read; polygons become fans
     "image_size": 128,                     # square image, image_size x image_size pixels
     "camera": {"rotation": [[...], [...], [...]],  # world-to-view, p_view = R p + t
                "translation": [tx, ty, tz],
                "projection": "orthographic", "ndc_scale": s}      # x_ndc = s * x_view
             or {..., "projection": "perspective", "viewing_angle_deg": a}}  # half field of view

For each job it writes ``OUT_DIR/<name>.png`` (Blender's render, for a person to look at) and
``OUT_DIR/<name>.npy``: a (H, W) uint8 array, 1 where the rendered alpha is above 0.5, row 0 at the
top of the image, as everywhere in the project. It prints one line per job and exits non-zero with a
message on the first error.

The mesh goes into Blender's world exactly as given (no axis conversion): the camera's matrix_world
is set explicitly to the view-to-world transform, and a Blender camera looks down its local -Z with
local +Y up, which is our view convention. So camera-to-world rotation = R^T, camera location
= -R^T t, ``ortho_scale = 2 / ndc_scale`` and perspective ``angle = 2 * viewing_angle``.
Anti-aliasing is off, so each pixel is one sample at its centre and alpha is exactly 0 or 1.

Module level uses the standard library and numpy only (``bpy`` is imported inside ``main``) so that
pytest can collect this file for doctests in an environment without Blender.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

ENGINES = ("BLENDER_WORKBENCH", "CYCLES")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


class SpecError(ValueError):
    """The spec or a mesh file is malformed."""


def read_obj(path: Path) -> tuple[list[tuple[float, float, float]], list[tuple[int, int, int]]]:
    """Vertices and fan-triangulated faces (0-based) of an OBJ file; other statements are ignored.

    Face corners may be ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn``; negative indices count back from
    the last vertex read so far. Triangles with a repeated vertex are dropped (they cover nothing).
    """
    vertices: list[tuple[float, float, float]] = []
    faces: list[tuple[int, int, int]] = []
    for line_number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            if words[0] == "v":
                if len(words) < 4:
                    raise SpecError("a vertex needs three coordinates")
                x, y, z = (float(w) for w in words[1:4])
                vertices.append((x, y, z))
            elif words[0] == "f":
                if len(words) < 4:
                    raise SpecError("a face needs at least three corners")
                corners = [_obj_index(word.split("/", 1)[0], len(vertices)) for word in words[1:]]
                for k in range(1, len(corners) - 1):
                    triangle = (corners[0], corners[k], corners[k + 1])
                    if len(set(triangle)) == 3:
                        faces.append(triangle)
        except (ValueError, SpecError) as error:
            raise SpecError(f"{path}:{line_number}: {error} in {line.strip()!r}") from error
    if not vertices or not faces:
        raise SpecError(f"{path}: no vertices or no faces")
    for x, y, z in vertices:
        if not all(math.isfinite(c) for c in (x, y, z)):
            raise SpecError(f"{path}: a vertex is not finite: {(x, y, z)}")
    return vertices, faces


def _obj_index(word: str, count: int) -> int:
    """0-based index of an OBJ vertex reference (1-based, or negative relative to ``count``)."""
    index = int(word)
    resolved = index - 1 if index > 0 else count + index
    if index == 0 or not 0 <= resolved < count:
        raise SpecError(f"vertex index {index} out of range (1..{count} read so far)")
    return resolved


def view_to_world(rotation: list, translation: list) -> np.ndarray:
    """The camera-to-world 4x4 matrix for ``p_view = R p + t``: rotation R^T, location -R^T t.

    >>> view_to_world([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [0, 0, -5])[:3, 3].tolist() == [0, 0, 5]
    True
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    if rotation.shape != (3, 3) or translation.shape != (3,):
        raise SpecError(f"rotation must be 3x3 and translation 3, got {rotation.shape}, {translation.shape}")
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) or np.linalg.det(rotation) < 0:
        raise SpecError(f"rotation is not a proper rotation matrix: {rotation.tolist()}")
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.T
    matrix[:3, 3] = -rotation.T @ translation
    return matrix


def check_job(job: dict) -> None:
    """Raise SpecError unless ``job`` has every field this script needs, with sane values."""
    for key in ("name", "mesh", "image_size", "camera"):
        if key not in job:
            raise SpecError(f"job {job.get('name', '?')!r} has no {key!r}")
    if not isinstance(job["name"], str) or not NAME_PATTERN.match(job["name"]):
        raise SpecError(f"job name {job['name']!r} must match {NAME_PATTERN.pattern}")
    size = job["image_size"]
    if not isinstance(size, int) or not 1 <= size <= 8192:
        raise SpecError(f"job {job['name']!r}: image_size must be an int in [1, 8192], got {size!r}")
    camera = job["camera"]
    projection = camera.get("projection")
    if projection == "orthographic":
        if not camera.get("ndc_scale", 0) > 0:
            raise SpecError(f"job {job['name']!r}: orthographic camera needs ndc_scale > 0")
    elif projection == "perspective":
        if not 0 < camera.get("viewing_angle_deg", 0) < 90:
            raise SpecError(f"job {job['name']!r}: perspective camera needs viewing_angle_deg in (0, 90)")
    else:
        raise SpecError(
            f"job {job['name']!r}: projection must be orthographic or perspective, got {projection!r}"
        )


def setup_scene(bpy, engine: str):
    """The one empty scene all jobs render in: no AA, transparent film, RGBA 8-bit PNG output."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = engine
    scene.render.film_transparent = True
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.use_border = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    if engine == "BLENDER_WORKBENCH":
        scene.display.render_aa = "OFF"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "SINGLE"
        shading.show_shadows = shading.show_cavity = shading.show_object_outline = False
        shading.show_backface_culling = False
    else:
        scene.cycles.samples = 1
        scene.cycles.use_denoising = False
        scene.cycles.pixel_filter_type = "BOX"
        scene.cycles.filter_width = 0.01
        scene.cycles.seed = 0
    return scene


def render_job(bpy, scene, job: dict, out_dir: Path) -> tuple[np.ndarray, float]:
    """Render one job; returns the (H, W) uint8 0/1 silhouette (row 0 at the top) and seconds spent."""
    from mathutils import Matrix

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for block in (bpy.data.meshes, bpy.data.cameras, bpy.data.images):
        for item in list(block):
            block.remove(item)

    vertices, faces = read_obj(Path(job["mesh"]))
    mesh = bpy.data.meshes.new(job["name"])
    mesh.from_pydata(vertices, [], faces)
    mesh.update()
    mesh_object = bpy.data.objects.new(job["name"], mesh)
    scene.collection.objects.link(mesh_object)

    spec = job["camera"]
    camera = bpy.data.cameras.new("camera")
    camera.sensor_fit = "AUTO"
    camera.shift_x = camera.shift_y = 0.0
    if spec["projection"] == "orthographic":
        camera.type = "ORTHO"
        camera.ortho_scale = 2.0 / float(spec["ndc_scale"])
    else:
        camera.type = "PERSP"
        camera.angle = 2.0 * math.radians(float(spec["viewing_angle_deg"]))
    matrix = view_to_world(spec["rotation"], spec["translation"])
    # Near/far: everything in front of the camera, up to well beyond the mesh.
    depth = -(np.asarray(vertices) @ np.asarray(spec["rotation"]).T + np.asarray(spec["translation"]))[:, 2]
    camera.clip_start = 1e-3
    camera.clip_end = max(1e3, 2.0 * float(np.abs(depth).max()) + 1.0)
    camera_object = bpy.data.objects.new("camera", camera)
    scene.collection.objects.link(camera_object)
    camera_object.matrix_world = Matrix(matrix.tolist())
    scene.camera = camera_object

    size = job["image_size"]
    scene.render.resolution_x = scene.render.resolution_y = size
    png = out_dir / f"{job['name']}.png"
    scene.render.filepath = str(png)
    start = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    seconds = time.perf_counter() - start

    image = bpy.data.images.load(str(png), check_existing=False)
    if tuple(image.size) != (size, size):
        raise RuntimeError(f"job {job['name']!r}: rendered {tuple(image.size)}, expected {(size, size)}")
    pixels = np.empty(size * size * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    alpha = pixels.reshape(size, size, 4)[::-1, :, 3]  # Blender's row 0 is the bottom row
    partial = int(((alpha > 0.01) & (alpha < 0.99)).sum())
    if partial:
        raise RuntimeError(
            f"job {job['name']!r}: {partial} pixels have fractional alpha; is anti-aliasing on?"
        )
    return (alpha > 0.5).astype(np.uint8), seconds


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: blender_silhouettes.py SPEC.json OUT_DIR", file=sys.stderr)
        return 2
    spec_path, out_dir = Path(argv[0]), Path(argv[1])
    try:
        import bpy
    except ImportError as error:
        print(f"error: bpy is not importable by {sys.executable}: {error}", file=sys.stderr)
        return 1
    try:
        spec = json.loads(spec_path.read_text())
        jobs = spec.get("jobs")
        if not isinstance(jobs, list) or not jobs:
            raise SpecError(f"{spec_path}: 'jobs' must be a non-empty list")
        engine = spec.get("engine", "BLENDER_WORKBENCH")
        if engine not in ENGINES:
            raise SpecError(f"engine must be one of {ENGINES}, got {engine!r}")
        for job in jobs:
            check_job(job)
        names = [job["name"] for job in jobs]
        if len(set(names)) != len(names):
            raise SpecError(f"job names must be unique: {names}")
        out_dir.mkdir(parents=True, exist_ok=True)
        scene = setup_scene(bpy, engine)
        for job in jobs:
            silhouette, seconds = render_job(bpy, scene, job, out_dir)
            np.save(out_dir / f"{job['name']}.npy", silhouette)
            size = job["image_size"]
            print(
                f"{job['name']}: {size}x{size} {engine} {job['camera']['projection']} "
                f"covered={int(silhouette.sum())} render_s={seconds:.3f}",
                flush=True,
            )
    except Exception as error:  # report any failure as one clear line and a non-zero exit
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
