"""A screenshot-like check of the import: render the imported object with Cycles (1 sample) through a
camera equivalent to the backend's weak-perspective camera, and compare its silhouette with the
backend's mask over the crop box. The backend's own re-projection IoU (report ``silhouette_iou``) is
the oracle: a correctly oriented, placed and scaled import reproduces it; a wrong axis convention or
scale would not."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tests.blender_addon.helpers import PHOTOS
from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct

SIZE = 64


def _camera_matrix(report: dict[str, Any], obj: Any) -> tuple[Any, float]:
    """World matrix and ortho scale of a Blender camera that sees what the backend camera sees.

    Backend: ``x_ndc = s (R p)_x + t_x`` (same for y) with p in glTF axes. Blender: the importer maps
    glTF (x, y, z) to (x, -z, y) (matrix C), the add-on then stores ``M C p`` in the mesh (M: the
    recorded import matrix, scale k) and puts the object at L. So the camera-space point
    ``k (R p - c)`` is ``k (A M^-1 (v - L) - c)`` with ``A = R C^T``, ``c = (-t_x / s, -t_y / s, 10)``
    (10: in front), and the view is ``2 k / s`` wide.
    """
    from mathutils import Matrix, Quaternion, Vector

    camera = report["camera"]
    s = float(camera["scale"][0])
    tx, ty = camera["translation"][0]
    rotation = Quaternion(camera["rotation"][0]).normalized().to_matrix()  # (w, x, y, z)
    gltf_from_blender = Matrix(((1, 0, 0), (0, 0, 1), (0, -1, 0)))  # C^T
    values = [float(value) for value in obj["mono2mesh_import_matrix"]]
    imported = Matrix([values[row * 4 : row * 4 + 4] for row in range(4)])
    k = imported.to_scale()[0]
    a = (rotation @ gltf_from_blender).to_4x4()
    centre = Vector((-tx / s, -ty / s, 10.0))
    view = Matrix.Scale(k, 4) @ Matrix.Translation(-centre) @ a @ imported.inverted()
    view = view @ Matrix.Translation(-obj.location)
    return view.inverted(), 2.0 * k / s


def _render_silhouette(bpy: ModuleType, report: dict[str, Any], obj: Any, folder: Path) -> np.ndarray:
    scene = bpy.context.scene
    data = bpy.data.cameras.new("check")
    data.type = "ORTHO"
    camera = bpy.data.objects.new("check", data)
    scene.collection.objects.link(camera)
    camera.matrix_world, data.ortho_scale = _camera_matrix(report, obj)
    data.clip_end = 1000.0
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    scene.render.film_transparent = True
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.render.resolution_percentage = 100
    scene.render.filepath = str(folder / "render.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(folder / "render.png"))
    return pixels(image)[::-1, :, 3] > 0.5  # rows top-down


def _mask_crop(bpy: ModuleType, path: Path, box: dict[str, int]) -> np.ndarray:
    mask = pixels(bpy.data.images.load(str(path)))[::-1, :, 0] > 0.5  # (H, W) top-down
    side = box["side"]
    padded = np.zeros((mask.shape[0] + 2 * side, mask.shape[1] + 2 * side), dtype=bool)
    padded[side : side + mask.shape[0], side : side + mask.shape[1]] = mask
    crop = padded[box["y0"] + side : box["y0"] + 2 * side, box["x0"] + side : box["x0"] + 2 * side]
    rows = (np.arange(SIZE) + 0.5) * side / SIZE
    return crop[rows.astype(int)][:, rows.astype(int)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_render_matches_backend_silhouette(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, backend: Any, tmp_path: Path
) -> None:
    bpy = blender
    bird = PHOTOS / "bird_bunting.jpg"
    source = bird if bird.is_file() else photo
    obj = reconstruct(bpy, addon, source, iterations=40, resolution=64)
    report = json.loads((Path(obj["mono2mesh_output_dir"]) / f"{obj.name}.json").read_text())
    mask_path = backend.client.download(obj["mono2mesh_job_id"], "mask", tmp_path / "mask.png")
    rendered = _render_silhouette(bpy, report, obj, tmp_path)
    mask = _mask_crop(bpy, mask_path, report["crop_box"])
    ours = _iou(rendered, mask)
    upside_down = _iou(rendered[::-1], mask)
    print(f"IoU in Blender {ours:.3f}, backend {report['silhouette_iou']:.3f}, flipped {upside_down:.3f}")
    assert rendered.any()
    assert abs(ours - report["silhouette_iou"]) < 0.08
    if source == bird:  # the bird is not symmetric top to bottom: a wrong up axis would show
        assert upside_down < ours - 0.15
