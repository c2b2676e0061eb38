"""Undo and redo of results imported by the polling timer: each finished reconstruction and each
finished refinement is exactly one undo step (``workflow.push_undo``), whatever ran before it."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tests.blender_addon.test_reconstruct_bpy import reconstruct, run_jobs
from tests.blender_addon.test_refine_transfer_bpy import _window_override


def _undo(bpy: ModuleType) -> None:
    with bpy.context.temp_override(**_window_override(bpy)):
        assert bpy.ops.ed.undo() == {"FINISHED"}


def _redo(bpy: ModuleType) -> None:
    with bpy.context.temp_override(**_window_override(bpy)):
        assert bpy.ops.ed.redo() == {"FINISHED"}


def test_reconstruction_is_one_undo_step(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    assert bpy.context.window_manager.windows  # the bpy module has a window even in background mode
    # the artist's previous action, an undo step of its own
    with bpy.context.temp_override(**_window_override(bpy)):
        bpy.ops.mesh.primitive_cube_add(location=(4.0, 0.0, 0.0))
        bpy.ops.ed.undo_push(message="Add Cube")
    # the reconstruction, finished by the polling function outside any operator (as the timer does)
    obj = reconstruct(bpy, addon, photo)
    assert obj.name == "disk_photo"
    assert sorted(o.name for o in bpy.data.objects) == ["Cube", "disk_photo"]
    _undo(bpy)
    # one undo removes only the reconstruction: the cube (the action before it) stays
    assert sorted(o.name for o in bpy.data.objects) == ["Cube"]
    assert "disk_photo" not in bpy.data.meshes
    _redo(bpy)
    assert sorted(o.name for o in bpy.data.objects) == ["Cube", "disk_photo"]
    obj = bpy.data.objects["disk_photo"]  # redo reloads the data: old references are invalid
    image = addon.importer.texture_node(obj.active_material).image
    assert image.packed_file is not None and image.size[0] > 0
    settings = bpy.context.scene.mono2mesh
    # the step holds the finished job, so redo never brings back a scene that looks busy
    assert settings.job_status == "succeeded" and not settings.busy


def test_refinement_is_one_undo_step_with_redo(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    obj = reconstruct(bpy, addon, photo)
    name = obj.name
    for vertex in obj.data.vertices:  # the artist's edit, its own undo step
        vertex.co.z = min(vertex.co.z, 0.8)
    edited = np.array([tuple(vertex.co) for vertex in obj.data.vertices])
    with bpy.context.temp_override(**_window_override(bpy)):
        bpy.ops.ed.undo_push(message="edit")
    assert bpy.ops.mono2mesh.refine() == {"FINISHED"}
    run_jobs(addon)
    assert scene.mono2mesh.job_status == "succeeded", scene.mono2mesh.message
    refined = np.array([tuple(vertex.co) for vertex in bpy.data.objects[name].data.vertices])
    assert refined.shape == edited.shape and not np.allclose(refined, edited)
    _undo(bpy)
    back = np.array([tuple(vertex.co) for vertex in bpy.data.objects[name].data.vertices])
    assert np.allclose(back, edited)  # the edit survives; only the refinement went
    _redo(bpy)
    again = np.array([tuple(vertex.co) for vertex in bpy.data.objects[name].data.vertices])
    assert np.allclose(again, refined)
    assert bpy.context.scene.mono2mesh.job_status == "succeeded"


def test_three_reconstructions_are_three_undo_steps(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    with bpy.context.temp_override(**_window_override(bpy)):
        bpy.ops.ed.undo_push(message="start")
    names = [reconstruct(bpy, addon, photo).name for _ in range(3)]
    assert len(set(names)) == 3
    for count in (2, 1, 0):  # each undo removes exactly the latest reconstruction
        _undo(bpy)
        assert sorted(o.name for o in bpy.data.objects) == sorted(names[:count])
    for count in (1, 2, 3):  # and each redo brings exactly one back
        _redo(bpy)
        assert sorted(o.name for o in bpy.data.objects) == sorted(names[:count])
