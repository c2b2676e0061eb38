"""Transfer Texture between different UV layouts (closest surface point after normalising both
meshes), driven through the installed add-on: a bird onto a UV sphere beside it, a refusal for a
target out of reach, the timer's slices and Cancel, and the scene's render settings left alone.

The bird is one real photo reconstructed with a short fit; the backend is the session's server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import PHOTOS
from tests.blender_addon.test_panels_bpy import Drawn, RecordingLayout
from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct

BIRD = PHOTOS / "bird_bunting.jpg"
BIRD_OPTIONS = {"iterations": 60, "resolution": 64, "crop_size": 128, "texture_size": 64}


@pytest.fixture
def transfers(addon: ModuleType) -> Iterator[ModuleType]:
    """The add-on's transfer module, its jobs cleared before and after the test."""
    addon.transfer.jobs.clear()
    yield addon.transfer
    addon.transfer.jobs.clear()


@pytest.fixture
def bird(blender: ModuleType, addon: ModuleType, scene: Any) -> Any:
    if not BIRD.is_file():
        pytest.skip(f"the bird photo {BIRD} is missing")
    return reconstruct(blender, addon, BIRD, **BIRD_OPTIONS)


def _uv_sphere_beside(bpy: ModuleType, bird: Any) -> Any:
    location = (bird.location.x + 3.0, bird.location.y + 1.0, bird.location.z)
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.7, location=location)
    return bpy.context.active_object


def _textured(bpy: ModuleType, addon: ModuleType, target: Any) -> tuple[Any, Any]:
    """Give ``target`` a material with a plain green image; return (material, image)."""
    image = bpy.data.images.new(f"{target.name}_before", 8, 8)
    image.pixels.foreach_set(np.tile([0.1, 0.8, 0.1, 1.0], 64).astype(np.float32))
    material = addon.importer.ensure_textured_material(target, image, f"{target.name}_material")
    return material, image


def _select(bpy: ModuleType, source: Any, target: Any) -> None:
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    source.select_set(True)
    target.select_set(True)
    bpy.context.view_layer.objects.active = target


def _corner_tiles(bpy: ModuleType, location: tuple[float, float, float]) -> Any:
    """Eight small flat squares at the corners of a 2 m box, each with its own UV tile.

    Normalised (bounding box centred, largest side 1) the squares lie in the planes z = -0.5 and
    z = 0.5: half the normalised size away from a flat source (a plane, normalised into z = 0),
    beyond the transfer's reach (0.35). (A fitted bird leaves the corners of its box empty too,
    0.37 to 0.6 away, but how far depends on the fit.)
    """
    vertices, faces, uvs = [], [], []
    side = 0.08
    for number, (sx, sy, sz) in enumerate((x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)):
        corner = (sx * 1.0, sy * 1.0, sz * 1.0)
        inward = (-sx * side, -sy * side)
        start = len(vertices)
        vertices += [
            corner,
            (corner[0] + inward[0], corner[1], corner[2]),
            (corner[0] + inward[0], corner[1] + inward[1], corner[2]),
            (corner[0], corner[1] + inward[1], corner[2]),
        ]
        faces.append((start, start + 1, start + 2, start + 3))
        u, v = (number % 4) / 4, (number // 4) / 2
        uvs += [(u, v), (u + 0.25, v), (u + 0.25, v + 0.5), (u, v + 0.5)]
    mesh = bpy.data.meshes.new("corner_tiles")
    mesh.from_pydata(vertices, [], faces)
    layer = mesh.uv_layers.new(name="UVMap")
    layer.data.foreach_set("uv", np.array(uvs, dtype=np.float32).ravel())
    obj = bpy.data.objects.new("corner_tiles", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = location
    return obj


def _render_settings(scene: Any) -> tuple[Any, ...]:
    return (scene.render.engine, scene.cycles.samples, scene.cycles.device, scene.cycles.use_denoising)


def test_bird_onto_uv_sphere_is_coloured_like_the_bird(
    blender: ModuleType, addon: ModuleType, scene: Any, bird: Any, transfers: ModuleType
) -> None:
    bpy = blender
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.cycles.samples = 77
    scene.cycles.device = "GPU"
    before = _render_settings(scene)
    sphere = _uv_sphere_beside(bpy, bird)
    scene.mono2mesh.bake_resolution = 128
    _select(bpy, bird, sphere)
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.transfer_texture(wait=True) == {"FINISHED"}
    seconds = time.perf_counter() - started
    job = transfers.jobs[scene.name]
    assert job.state == "done" and job.uncoloured is not None and job.uncoloured < 0.05, job.message
    assert seconds < 20
    assert _render_settings(scene) == before  # no render engine was involved
    image = addon.importer.texture_node(sphere.active_material).image
    assert image == job.image and image.size[:] == (128, 128)
    assert Path(bpy.path.abspath(image.filepath)).is_file()
    rgb = pixels(image)[..., :3].reshape(-1, 3)
    bird_rgb = pixels(addon.importer.texture_node(bird.active_material).image)[..., :3].reshape(-1, 3)
    assert rgb.mean() > 0.1 and (rgb.max(axis=1) > 0.05).mean() > 0.95  # not black
    assert np.abs(rgb.mean(axis=0) - bird_rgb.mean(axis=0)).max() < 0.1
    assert rgb.std(axis=0).max() > 0.02  # the bird's pattern, not one flat colour


def test_target_out_of_reach_is_refused_untouched_then_applied_on_request(
    blender: ModuleType, addon: ModuleType, scene: Any, transfers: ModuleType
) -> None:
    bpy = blender
    bpy.ops.mesh.primitive_plane_add(size=2.0, location=(0.0, 0.0, 0.0))
    picture = bpy.context.active_object  # a flat, textured source: a long way from the tiles
    _textured(bpy, addon, picture)
    tiles = _corner_tiles(bpy, (4.0, 0.0, 0.0))
    material, image = _textured(bpy, addon, tiles)
    scene.mono2mesh.bake_resolution = 64
    images = set(bpy.data.images)
    _select(bpy, picture, tiles)
    with pytest.raises(RuntimeError, match="out of reach"):
        bpy.ops.mono2mesh.transfer_texture(wait=True)
    job = transfers.jobs[scene.name]
    assert job.state == "refused" and job.uncoloured == 1.0
    assert tiles.active_material == material and len(tiles.material_slots) == 1
    assert addon.importer.texture_node(material).image == image
    assert set(bpy.data.images) == images  # no result image was even created
    # "Apply Anyway" applies the refused result without computing it again
    assert bpy.ops.mono2mesh.transfer_texture(force=True) == {"FINISHED"}
    assert job.state == "done"
    applied = addon.importer.texture_node(tiles.active_material).image
    assert applied == job.image and applied != image


class _OperatorLayout(RecordingLayout):
    """The recording layout whose ``operator`` returns the button's properties, as Blender's does."""

    def operator(self, idname: str, **kwargs: Any) -> Any:
        super().operator(idname, **kwargs)
        return SimpleNamespace(force=False)


def test_panel_shows_progress_cancel_refusal_and_apply_anyway(
    blender: ModuleType, addon: ModuleType, scene: Any, transfers: ModuleType
) -> None:
    bpy = blender
    bpy.ops.mesh.primitive_plane_add(size=2.0)
    picture = bpy.context.active_object
    _textured(bpy, addon, picture)
    tiles = _corner_tiles(bpy, (4.0, 0.0, 0.0))
    scene.mono2mesh.bake_resolution = 32
    _select(bpy, picture, tiles)

    def draw() -> Drawn:
        drawn = Drawn()
        layout = _OperatorLayout(bpy, drawn)
        addon.panels.VIEW3D_PT_mono2mesh_result.draw(SimpleNamespace(layout=layout), bpy.context)
        return drawn

    assert "mono2mesh.transfer_texture" in draw().texts("operator")
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}
    drawn = draw()
    assert drawn.texts("progress") == ["Transfer: preparing"]
    assert "mono2mesh.cancel_transfer" in drawn.texts("operator")
    assert "mono2mesh.transfer_texture" not in drawn.texts("operator")
    while transfers.poll() is not None:
        pass
    drawn = draw()
    assert not drawn.texts("progress")
    assert any("out of reach" in text for text in drawn.texts("label"))
    assert drawn.texts("operator").count("mono2mesh.transfer_texture") == 2  # and Apply Anyway


def test_a_file_load_mid_transfer_leaves_no_stale_job(
    blender: ModuleType, addon: ModuleType, scene: Any, transfers: ModuleType
) -> None:
    bpy = blender

    def start() -> Any:
        bpy.ops.mesh.primitive_plane_add(size=2.0)
        picture = bpy.context.active_object
        _textured(bpy, addon, picture)
        bpy.ops.mesh.primitive_uv_sphere_add(location=(3.0, 0.0, 0.0))
        _select(bpy, picture, bpy.context.active_object)
        bpy.context.scene.mono2mesh.bake_resolution = 32
        assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}
        return transfers.jobs[bpy.context.scene.name]

    first = start()
    bpy.ops.wm.read_homefile(use_empty=True)  # removes the timer, and the objects
    assert not transfers.running(bpy.context.scene.name)
    second = start()
    assert first.state == "canceled" and second.state == "running"
    while transfers.poll() is not None:
        pass
    assert second.state in ("done", "refused"), second.message


def test_timer_slices_are_short_and_cancel_leaves_the_target_untouched(
    blender: ModuleType, addon: ModuleType, scene: Any, bird: Any, transfers: ModuleType
) -> None:
    bpy = blender
    sphere = _uv_sphere_beside(bpy, bird)
    material, image = _textured(bpy, addon, sphere)
    scene.mono2mesh.bake_resolution = 256
    images = set(bpy.data.images)
    _select(bpy, bird, sphere)
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}  # returns at once
    job = transfers.jobs[scene.name]
    assert job.state == "running" and bpy.app.timers.is_registered(transfers.poll)
    assert not bpy.ops.mono2mesh.transfer_texture.poll()  # one transfer per scene at a time
    started = time.perf_counter()
    assert transfers.poll() is not None
    assert time.perf_counter() - started < 0.5
    assert job.state == "running" and 0.0 < job.progress < 0.9
    assert bpy.ops.mono2mesh.cancel_transfer() == {"FINISHED"}
    assert job.state == "canceled" and transfers.poll() is None
    assert sphere.active_material == material and addon.importer.texture_node(material).image == image
    assert set(bpy.data.images) == images
    # again, to the end: every call of the timer's function is a short slice
    _select(bpy, bird, sphere)
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}
    job = transfers.jobs[scene.name]
    durations, progress = [], []
    deadline = time.monotonic() + 60
    while True:
        started = time.perf_counter()
        interval = transfers.poll()
        durations.append(time.perf_counter() - started)
        progress.append(job.progress)
        if interval is None:
            break
        assert time.monotonic() < deadline
    assert job.state == "done", job.message
    assert len(durations) >= 3 and max(durations) < 0.5, max(durations)
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert addon.importer.texture_node(sphere.active_material).image == job.image
    assert sphere.active_material == material  # its own material (one user), showing the result
