"""Texture transfer with ``mesh-inversion`` results, through the installed add-on and the session's server.

Every ``mesh-inversion`` result is the 482-vertex UV sphere (template ``uvsphere-482``) deformed, so two
of them share one UV layout: Transfer Texture between them is the add-on's copy path (an image swap).
Between a ``mesh-inversion`` result and a ``fit`` result (the icosphere, another layout) it is the
closest-point ("bake") path, both ways.

The method needs a checkpoint: ``inversion_checkpoint`` builds a small real generator in the main
environment (a subprocess: ``MeshGenerator`` with texture 32, width 4, mesh 32, seeded random weights,
its displacement head non-zero so the meshes are not the plain sphere) and writes it with the backend's
checkpoint writer into the session server's ``$MONO2MESH_HOME`` (conftest ``backend_home``), where the
server finds installed checkpoints; the add-on has no checkpoint option of its own. Its Start Backend
then refreshes the methods list. The options (``INVERSION_OPTIONS``) keep each inversion to a few
seconds on a CPU.
"""

from __future__ import annotations

import array
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import FAST_OPTIONS, MAIN_PYTHON, PHOTOS, REPO
from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct_with, run_jobs

BUNTING = PHOTOS / "bird_bunting.jpg"
WARBLER = PHOTOS / "bird_warbler.jpg"
METHOD = "mesh-inversion"
TEMPLATE = "uvsphere-482"
CHECKPOINT_NAME = "addon-test-tiny"
INVERSION_OPTIONS = {
    "crop_size": 64, "render_size": 32, "random_z": 4, "stages": 1, "stage_iterations": 2,
    "pose_iterations": 5, "pose_hypotheses": 2, "resolution": 32, "texture_points": 256,
    "mask_points": 256, "feature_texture_weight": 0.0, "cpu_threads": 1,
}  # fmt: skip
"""Tiny inversion settings: 4 random codes, 1 x 2 steps, 32 px renderings; no VGG features (the result's
texture is the generator's either way, and no VGG weights are loaded)."""
FIT_OPTIONS = {**FAST_OPTIONS, "texture_size": 64}

CHECKPOINT_SCRIPT = """
import sys

import torch
from torch import nn

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.models.mesh_inversion import TEMPLATE_ID, MeshGenerator, MeshInversionModelConfig

torch.manual_seed(7)
generator = MeshGenerator(MeshInversionModelConfig(width=4, texture_size=32, mesh_size=32))
with torch.no_grad():
    # fresh, z hardly reaches the outputs and the displacement head is zero (every code gives the
    # sphere): Kaiming-normal weights without biases, and a small non-zero displacement head
    for module in generator.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.kaiming_normal_(generator.fc.weight, nonlinearity="relu")
    generator.displacement_head.conv.weight.mul_(0.05)
generator.eval()
meta = CheckpointMeta(
    method="mesh-inversion",
    template=TEMPLATE_ID,
    config={"model": generator.config.model_dump(mode="json")},
    dataset={"name": "none: seeded random weights (add-on tests)"},
    step=1,
)
print(save_checkpoint(sys.argv[1], generator.state_dict(), meta))
"""


@pytest.fixture(scope="session")
def inversion_checkpoint(backend: Any, backend_home: Path) -> SimpleNamespace:
    """The tiny generator installed for the session's server; ``before``: the server's methods-list
    entry of ``mesh-inversion`` from before it was installed."""
    before = {entry["name"]: entry for entry in backend.client.methods()}.get(METHOD)
    stem = backend_home / "checkpoints" / METHOD / CHECKPOINT_NAME
    started = time.perf_counter()
    done = subprocess.run(
        [str(MAIN_PYTHON), "-c", CHECKPOINT_SCRIPT, str(stem)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path == stem.with_suffix(".safetensors") and path.is_file()
    return SimpleNamespace(path=path, before=before, seconds=time.perf_counter() - started)


@pytest.fixture
def inversion(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion_checkpoint: SimpleNamespace
) -> Iterator[SimpleNamespace]:
    """The add-on's methods list refreshed by its Start Backend (URL mode: health and methods on a
    worker), so that it lists the installed checkpoint; transfer jobs cleared before and after."""
    addon.transfer.jobs.clear()
    assert blender.ops.mono2mesh.start_backend() == {"FINISHED"}
    run_jobs(addon)
    info = addon.session.method_info(METHOD)
    assert info is not None and info["available"], info
    yield inversion_checkpoint
    addon.transfer.jobs.clear()


def _invert(bpy: ModuleType, addon: ModuleType, photo: Path, seed: int) -> Any:
    obj = reconstruct_with(bpy, addon, photo, METHOD, {**INVERSION_OPTIONS, "seed": seed})
    assert obj["mono2mesh_template"] == TEMPLATE
    assert obj["mono2mesh_checkpoint"] == f"{CHECKPOINT_NAME}.safetensors"
    # welded back to the sphere's 482 vertices, deformed: its distances from the bounding box's centre
    # (over the box's size) vary, where the plain sphere's are all about 0.5
    co = _coordinates(obj)
    assert len(co) == 482
    radii = np.linalg.norm((co - (co.max(axis=0) + co.min(axis=0)) / 2) / np.ptp(co, axis=0), axis=1)
    assert radii.std() > 0.005 and np.ptp(radii) > 0.04
    return obj


def _fit(bpy: ModuleType, addon: ModuleType, photo: Path) -> Any:
    obj = reconstruct_with(bpy, addon, photo, "fit", FIT_OPTIONS)
    assert obj["mono2mesh_template"] == "icosphere-642"
    return obj


def _select(bpy: ModuleType, source: Any, target: Any) -> None:
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    source.select_set(True)
    target.select_set(True)
    bpy.context.view_layer.objects.active = target


def _coordinates(obj: Any) -> np.ndarray:
    values = np.empty(3 * len(obj.data.vertices), dtype=np.float32)
    obj.data.vertices.foreach_get("co", values)
    return values.reshape(-1, 3)


def _image(addon: ModuleType, obj: Any) -> Any:
    node = addon.importer.texture_node(obj.active_material)
    assert node is not None and node.image is not None
    return node.image


def _covered(obj: Any, width: int, height: int) -> np.ndarray:
    """(height, width) bool: the texels (rows from v = 0 up, as ``Image.pixels``) whose centres lie in
    one of the object's UV triangles, i.e. the texels its surface shows."""
    mesh = obj.data
    mesh.calc_loop_triangles()
    loops = array.array("i", bytes(12 * len(mesh.loop_triangles)))
    mesh.loop_triangles.foreach_get("loops", loops)
    uvs = np.empty(2 * len(mesh.loops), dtype=np.float64)
    mesh.uv_layers.active.data.foreach_get("uv", uvs)
    corners = uvs.reshape(-1, 2)[np.array(loops)].reshape(-1, 3, 2) * (width, height)  # texel units
    covered = np.zeros((height, width), dtype=bool)
    for a, b, c in corners:
        low = np.maximum(np.floor(np.minimum(np.minimum(a, b), c) - 0.5), 0).astype(int)
        high = np.minimum(np.ceil(np.maximum(np.maximum(a, b), c) - 0.5), (width - 1, height - 1)).astype(int)
        if (high < low).any():
            continue
        xs, ys = np.meshgrid(np.arange(low[0], high[0] + 1) + 0.5, np.arange(low[1], high[1] + 1) + 0.5)

        def side(p: np.ndarray, q: np.ndarray, xs: np.ndarray = xs, ys: np.ndarray = ys) -> np.ndarray:
            return (q[0] - p[0]) * (ys - p[1]) - (q[1] - p[1]) * (xs - p[0])

        first, second, third = side(a, b), side(b, c), side(c, a)
        inside = ((first >= 0) & (second >= 0) & (third >= 0)) | ((first <= 0) & (second <= 0) & (third <= 0))
        covered[low[1] : high[1] + 1, low[0] : high[0] + 1] |= inside
    return covered


def _shown_rgb(addon: ModuleType, obj: Any, grow: int = 0) -> np.ndarray:
    """(N, 3) the colours of the object's texture at the texels its UV triangles cover, and ``grow``
    texels around them (bilinear sampling at a triangle's edge reads one texel further)."""
    image = _image(addon, obj)
    width, height = image.size
    covered = _covered(obj, width, height)
    for _ in range(grow):
        grown = covered.copy()
        grown[1:] |= covered[:-1]
        grown[:-1] |= covered[1:]
        grown[:, 1:] |= covered[:, :-1]
        grown[:, :-1] |= covered[:, 1:]
        covered = grown
    return pixels(image)[..., :3][covered]


def test_the_addon_lists_mesh_inversion_once_a_checkpoint_is_installed(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion: SimpleNamespace
) -> None:
    before = inversion.before
    assert before is not None and not before["available"] and before["needs_checkpoint"]
    assert "mono2mesh-train mesh-inversion-gan" in before["reason"]
    info = addon.session.method_info(METHOD)
    assert info["available"] and info["reason"] is None
    assert [checkpoint["name"] for checkpoint in info["checkpoints"]] == [CHECKPOINT_NAME]
    items = {item[0]: item for item in addon.session.method_enum_items()}
    assert items[METHOD][1] == METHOD and items[METHOD][3] == "NONE"  # not "(unavailable)", no ERROR icon
    assert items[METHOD][2] == info["description"]
    scene.mono2mesh.method = METHOD  # the panel's Method menu offers it
    assert scene.mono2mesh.method == METHOD


def test_two_mesh_inversion_results_share_a_layout_and_transfer_copies_the_image(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion: SimpleNamespace
) -> None:
    bpy = blender
    started = time.perf_counter()
    source = _invert(bpy, addon, BUNTING, seed=1)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = _invert(bpy, addon, WARBLER, seed=2)
    inverted = time.perf_counter() - started
    assert len(source.data.polygons) == len(target.data.polygons)
    assert addon.transfer.same_uv_layout(source, target) and addon.transfer.same_uv_layout(target, source)
    source_image, target_image = _image(addon, source), _image(addon, target)
    source_pixels, target_pixels = pixels(source_image).copy(), pixels(target_image).copy()
    # two different results: the copy below is visible
    assert source_image != target_image and np.abs(source_pixels - target_pixels).max() > 0.1
    source_material, target_material = source.active_material, target.active_material
    assert source_material != target_material
    source_mesh, target_mesh = source.data, target.data
    source_co, target_co = _coordinates(source), _coordinates(target)
    assert source_co.shape == target_co.shape and not np.allclose(source_co, target_co)
    images = set(bpy.data.images)
    _select(bpy, source, target)
    copied = time.perf_counter()
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}  # a copy: done at once, no job
    copied = time.perf_counter() - copied
    assert not addon.transfer.running(scene.name) and scene.name not in addon.transfer.jobs
    assert set(bpy.data.images) <= images  # no image made
    # the target shows the source's image, pixel for pixel, in its own material on its own mesh
    shown = _image(addon, target)
    assert shown == source_image
    assert np.array_equal(pixels(shown), source_pixels)
    assert target.active_material == target_material and len(target.material_slots) == 1
    assert target.data == target_mesh and np.array_equal(_coordinates(target), target_co)
    assert target["mono2mesh_template"] == TEMPLATE
    # the source is untouched
    assert source.active_material == source_material and len(source.material_slots) == 1
    assert _image(addon, source) == source_image and np.array_equal(pixels(source_image), source_pixels)
    assert source.data == source_mesh and np.array_equal(_coordinates(source), source_co)
    print(f"two inversions {inverted:.1f} s, copy {copied * 1000:.1f} ms")
    assert copied < 0.5


def _check_transferred(
    addon: ModuleType, scene: Any, source: Any, target: Any, material: Any, old: np.ndarray
) -> np.ndarray:
    """The target shows the job's new image in its own material, coloured from the source: returns
    its RGB (H, W, 3)."""
    job = addon.transfer.jobs[scene.name]
    assert job.state == "done", job.message
    assert job.uncoloured is not None and job.uncoloured < addon.transfer.UNCOLOURED_LIMIT
    image = _image(addon, target)
    assert image == job.image and image != _image(addon, source)
    size = scene.mono2mesh.bake_resolution
    assert image.size[:] == (size, size)
    assert target.active_material == material and len(target.material_slots) == 1
    rgb = pixels(image)[..., :3]
    shown = rgb[_covered(target, size, size)]
    source_rgb = _shown_rgb(addon, source)
    # every texel is a blend of source texels (closest point, margin and fill are averages of them)
    reach = _shown_rgb(addon, source, grow=1)
    low, high = reach.min(axis=0), reach.max(axis=0)
    assert ((shown >= low - 2 / 255) & (shown <= high + 2 / 255)).all()
    # the colours of the source's surface: its shown texels' mean, within 0.05 per channel, and its
    # pattern, not one flat colour (the fill of texels out of reach is the mean)
    assert np.abs(shown.mean(axis=0) - source_rgb.mean(axis=0)).max() < 0.05, (
        shown.mean(axis=0),
        source_rgb.mean(axis=0),
    )
    assert shown.std(axis=0).max() > 0.5 * source_rgb.std(axis=0).max()
    # and not the target's texture from before
    assert np.abs(shown.mean(axis=0) - old.mean(axis=0)).max() > 0.15, (shown.mean(axis=0), old.mean(axis=0))
    return rgb


def test_mesh_inversion_onto_a_fit_result_takes_the_bake_path(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion: SimpleNamespace
) -> None:
    bpy = blender
    source = _invert(bpy, addon, BUNTING, seed=1)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = _fit(bpy, addon, BUNTING)
    assert not addon.transfer.same_uv_layout(source, target)
    assert not addon.transfer.same_uv_layout(target, source)
    material, old_image = target.active_material, _image(addon, target)
    old = _shown_rgb(addon, target)
    scene.mono2mesh.bake_resolution = 64
    _select(bpy, source, target)
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.transfer_texture(wait=True) == {"FINISHED"}  # blocking: scripts
    seconds = time.perf_counter() - started
    _check_transferred(addon, scene, source, target, material, old)
    assert _image(addon, target) != old_image
    print(f"mesh-inversion -> fit at 64^2: {seconds:.2f} s")


def test_fit_result_onto_mesh_inversion_takes_the_bake_path(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion: SimpleNamespace
) -> None:
    bpy = blender
    source = _fit(bpy, addon, WARBLER)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = _invert(bpy, addon, WARBLER, seed=3)
    assert not addon.transfer.same_uv_layout(source, target)
    material = target.active_material
    old = _shown_rgb(addon, target)
    source_pixels = pixels(_image(addon, source)).copy()
    scene.mono2mesh.bake_resolution = 64
    _select(bpy, source, target)
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}  # the UI's path: timer slices
    assert addon.transfer.running(scene.name)
    deadline = time.monotonic() + 60
    while addon.transfer.poll() is not None:
        assert time.monotonic() < deadline
    seconds = time.perf_counter() - started
    _check_transferred(addon, scene, source, target, material, old)
    assert np.array_equal(pixels(_image(addon, source)), source_pixels)  # the source keeps its texture
    print(f"fit -> mesh-inversion at 64^2: {seconds:.2f} s")
