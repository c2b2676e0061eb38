"""Refine (mesh swap, one undo step, the template id kept) and Transfer Texture (copy for the same UV
layout, also after a refinement; closest-point transfer otherwise, see test_transfer_bpy.py), driven
through the installed add-on's operators."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct, run_jobs


@pytest.fixture(autouse=True)
def _no_transfer_jobs(addon: ModuleType) -> Iterator[None]:
    """Each test starts and ends without the add-on's transfer jobs (they outlive a file load)."""
    addon.transfer.jobs.clear()
    yield
    addon.transfer.jobs.clear()


def _window_override(bpy: ModuleType) -> dict[str, Any]:
    window = bpy.context.window_manager.windows[0]
    area = next(area for area in window.screen.areas if area.type == "VIEW_3D")
    region = next(region for region in area.regions if region.type == "WINDOW")
    return {"window": window, "area": area, "region": region}


def test_refine_swaps_mesh_keeps_material_and_undoes(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    obj = reconstruct(bpy, addon, photo)
    name = obj.name
    obj.location = (3.0, 0.0, 1.0)
    obj.rotation_euler = (0.0, 0.0, 0.5)
    material = obj.active_material
    # the artist's edit: flatten the top half
    for vertex in obj.data.vertices:
        vertex.co.z = min(vertex.co.z, 0.2)
    edited_mesh = obj.data
    mesh_name = edited_mesh.name
    edited = [tuple(vertex.co) for vertex in edited_mesh.vertices]
    with bpy.context.temp_override(**_window_override(bpy)):
        bpy.ops.ed.undo_push(message="edit")
        assert bpy.ops.mono2mesh.refine() == {"FINISHED"}
        run_jobs(addon)
    settings = scene.mono2mesh
    assert settings.job_status == "succeeded", settings.message
    obj = bpy.data.objects[name]
    assert obj.data != edited_mesh and obj.data.name == mesh_name
    assert obj.active_material == material and len(obj.material_slots) == 1
    assert tuple(obj.location) == pytest.approx((3.0, 0.0, 1.0))
    assert obj.rotation_euler.z == pytest.approx(0.5)
    # the refined mesh has the template's UV layout (Blender renumbered its vertices): the same id
    assert obj["mono2mesh_template"] == "icosphere-642"
    assert obj["mono2mesh_job_id"] == settings.job_id
    # the refined mesh kept the edit (flattened top) in the object's frame
    zs = np.array([vertex.co.z for vertex in obj.data.vertices])
    assert zs.max() < 0.2 + 0.25
    with bpy.context.temp_override(**_window_override(bpy)):
        bpy.ops.ed.undo()
    obj = bpy.data.objects[name]  # undo reloads the data: old references are invalid
    assert obj.data.name == mesh_name
    restored = np.array([tuple(vertex.co) for vertex in obj.data.vertices])
    assert restored.shape == np.array(edited).shape and np.allclose(restored, edited)


def test_transfer_same_topology_copies_the_image(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    source = reconstruct(bpy, addon, photo)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = reconstruct(bpy, addon, photo)
    assert source["mono2mesh_template"] == target["mono2mesh_template"]
    source_image = addon.importer.texture_node(source.active_material).image
    target_material = target.active_material
    source.select_set(True)
    target.select_set(True)
    bpy.context.view_layer.objects.active = target
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}
    assert target.active_material == target_material  # its own material, now showing the source's image
    assert addon.importer.texture_node(target.active_material).image == source_image


def test_transfer_after_refine_still_copies(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    source = reconstruct(bpy, addon, photo)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = reconstruct(bpy, addon, photo)
    target_material = target.active_material
    with bpy.context.temp_override(**_window_override(bpy)):
        assert bpy.ops.mono2mesh.refine() == {"FINISHED"}
        run_jobs(addon)
    assert scene.mono2mesh.job_status == "succeeded", scene.mono2mesh.message
    target = bpy.data.objects[target.name]
    assert target["mono2mesh_template"] == source["mono2mesh_template"] == "icosphere-642"
    images = set(bpy.data.images)
    source.select_set(True)
    target.select_set(True)
    bpy.context.view_layer.objects.active = target
    assert addon.transfer.same_uv_layout(source, target)
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}  # a copy: done at once, no job
    assert not addon.transfer.running(scene.name)
    assert target.active_material == target_material
    assert addon.importer.texture_node(target.active_material).image == (
        addon.importer.texture_node(source.active_material).image
    )
    assert set(bpy.data.images) <= images  # no new image was made


def test_transfer_different_topology_uses_the_closest_surface(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, tmp_path: Path
) -> None:
    bpy = blender
    source = reconstruct(bpy, addon, photo)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.9, location=tuple(source.location))
    target = bpy.context.active_object
    scene.mono2mesh.bake_resolution = 64
    source.select_set(True)
    target.select_set(True)
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.transfer_texture(wait=True) == {"FINISHED"}
    assert time.perf_counter() - started < 30
    assert addon.transfer.jobs[scene.name].uncoloured < 0.05
    node = addon.importer.texture_node(target.active_material)
    image = node.image
    assert image.size[:] == (64, 64)
    assert Path(bpy.path.abspath(image.filepath)).is_file()
    rgb = pixels(image)[..., :3].reshape(-1, 3)
    # the transferred texture holds the source's red and blue, not an empty (black) image
    assert (rgb[:, 0] > rgb[:, 2] + 0.2).mean() > 0.05 and (rgb[:, 2] > rgb[:, 0] + 0.2).mean() > 0.05
