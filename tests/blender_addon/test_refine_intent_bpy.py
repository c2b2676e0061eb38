"""Refine through the installed add-on keeps an edit the photo cannot see (issue 15).

The edit is computed in the object's local frame from the mesh itself and the photo's view direction
(the report's camera carried through the recorded import transform), so it does not depend on where
the import places the object.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tests.blender_addon.test_reconstruct_bpy import reconstruct, run_jobs
from tests.blender_addon.test_refine_transfer_bpy import _window_override


def _local_axis(addon: ModuleType, obj: Any, camera: dict[str, Any], row: int) -> np.ndarray:
    """Row ``row`` of the camera's world-to-view rotation (0 right, 1 up, 2 towards the camera) as a
    unit vector in the object's mesh frame."""
    from mathutils import Vector

    axis = addon.importer.camera_rotation(camera)[row]  # glTF axes
    blender_axes = Vector((axis[0], -axis[2], axis[1]))  # glTF (x, y, z) -> Blender (x, -z, y)
    local = addon.importer.import_matrix(obj).to_3x3() @ blender_axes
    return np.array(local.normalized())


def _coordinates(obj: Any) -> np.ndarray:
    values = np.empty(len(obj.data.vertices) * 3, dtype=np.float64)
    obj.data.vertices.foreach_get("co", values)
    return values.reshape(-1, 3)


def test_refine_keeps_an_edit_of_the_hidden_side(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    fitted = {"iterations": 200, "resolution": 64, "texture_size": 32}
    obj = reconstruct(bpy, addon, photo, **fitted)  # fitted well: Refine has little to correct
    name = obj.name
    reports = sorted(Path(obj["mono2mesh_output_dir"]).glob("*.json"))
    camera = json.loads(reports[0].read_text(encoding="utf-8"))["camera"]
    towards, up = _local_axis(addon, obj, camera, 2), _local_axis(addon, obj, camera, 1)

    before = _coordinates(obj)
    size = float((before.max(0) - before.min(0)).max())
    depth = (before - before.mean(0)) @ towards  # (V,) > 0 on the side the photo saw
    # the hidden half stretched away from the camera, up to 30 % of the size at the back
    push = np.clip(-depth, 0, None) / float((-depth).max()) * 0.3 * size
    edited = before - push[:, None] * towards
    obj.data.vertices.foreach_set("co", edited.astype(np.float32).reshape(-1))
    obj.data.update()

    def extent(points: np.ndarray, axis: np.ndarray) -> float:  # free of the placement's origin
        return float(np.ptp(points @ axis))

    scene.mono2mesh.extra_options = json.dumps(fitted)
    with bpy.context.temp_override(**_window_override(bpy)):
        assert bpy.ops.mono2mesh.refine() == {"FINISHED"}
        run_jobs(addon)
    assert scene.mono2mesh.job_status == "succeeded", scene.mono2mesh.message
    after = _coordinates(bpy.data.objects[name])
    # Refine keeps the recorded import transform, so extents compare directly
    survived = (extent(after, towards) - extent(before, towards)) / (
        extent(edited, towards) - extent(before, towards)
    )
    assert survived >= 0.9, f"only {survived:.0%} of the edit survived Refine"
    assert abs(extent(after, up) / extent(before, up) - 1) < 0.1  # the outline barely moved
