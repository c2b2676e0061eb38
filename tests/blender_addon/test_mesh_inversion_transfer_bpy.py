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

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import PHOTOS
from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct_with
from tests.blender_addon.transfer_checks import (
    check_baked,
    check_listed,
    coordinates,
    fit_result,
    install_checkpoint,
    refresh_methods,
    run_transfer,
    select,
    shown_rgb,
    texture_image,
)

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
    return install_checkpoint(backend, backend_home, METHOD, CHECKPOINT_NAME, CHECKPOINT_SCRIPT)


@pytest.fixture
def inversion(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion_checkpoint: SimpleNamespace
) -> Iterator[SimpleNamespace]:
    """The add-on's methods list refreshed, so that it lists the installed checkpoint; transfer jobs
    cleared before and after."""
    refresh_methods(blender, addon, METHOD)
    yield inversion_checkpoint
    addon.transfer.jobs.clear()


def _invert(bpy: ModuleType, addon: ModuleType, photo: Path, seed: int) -> Any:
    obj = reconstruct_with(bpy, addon, photo, METHOD, {**INVERSION_OPTIONS, "seed": seed})
    assert obj["mono2mesh_template"] == TEMPLATE
    assert obj["mono2mesh_checkpoint"] == f"{CHECKPOINT_NAME}.safetensors"
    # welded back to the sphere's 482 vertices, deformed: its distances from the bounding box's centre
    # (over the box's size) vary, where the plain sphere's are all about 0.5
    co = coordinates(obj)
    assert len(co) == 482
    radii = np.linalg.norm((co - (co.max(axis=0) + co.min(axis=0)) / 2) / np.ptp(co, axis=0), axis=1)
    assert radii.std() > 0.005 and np.ptp(radii) > 0.04
    return obj


def test_the_addon_lists_mesh_inversion_once_a_checkpoint_is_installed(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion: SimpleNamespace
) -> None:
    check_listed(addon, scene, inversion, METHOD, "mono2mesh-train mesh-inversion-gan")


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
    source_image, target_image = texture_image(addon, source), texture_image(addon, target)
    source_pixels, target_pixels = pixels(source_image).copy(), pixels(target_image).copy()
    # two different results: the copy below is visible
    assert source_image != target_image and np.abs(source_pixels - target_pixels).max() > 0.1
    source_material, target_material = source.active_material, target.active_material
    assert source_material != target_material
    source_mesh, target_mesh = source.data, target.data
    source_co, target_co = coordinates(source), coordinates(target)
    assert source_co.shape == target_co.shape and not np.allclose(source_co, target_co)
    images = set(bpy.data.images)
    select(bpy, source, target)
    copied = time.perf_counter()
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}  # a copy: done at once, no job
    copied = time.perf_counter() - copied
    assert not addon.transfer.running(scene.name) and scene.name not in addon.transfer.jobs
    assert set(bpy.data.images) <= images  # no image made
    # the target shows the source's image, pixel for pixel, in its own material on its own mesh
    shown = texture_image(addon, target)
    assert shown == source_image
    assert np.array_equal(pixels(shown), source_pixels)
    assert target.active_material == target_material and len(target.material_slots) == 1
    assert target.data == target_mesh and np.array_equal(coordinates(target), target_co)
    assert target["mono2mesh_template"] == TEMPLATE
    # the source is untouched
    assert source.active_material == source_material and len(source.material_slots) == 1
    assert texture_image(addon, source) == source_image and np.array_equal(
        pixels(source_image), source_pixels
    )
    assert source.data == source_mesh and np.array_equal(coordinates(source), source_co)
    print(f"two inversions {inverted:.1f} s, copy {copied * 1000:.1f} ms")
    assert copied < 0.5


def test_mesh_inversion_onto_a_fit_result_takes_the_bake_path(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion: SimpleNamespace
) -> None:
    bpy = blender
    source = _invert(bpy, addon, BUNTING, seed=1)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = fit_result(bpy, addon, BUNTING)
    assert not addon.transfer.same_uv_layout(source, target)
    assert not addon.transfer.same_uv_layout(target, source)
    material, old_image = target.active_material, texture_image(addon, target)
    old = shown_rgb(addon, target)
    scene.mono2mesh.bake_resolution = 64
    seconds = run_transfer(bpy, addon, scene, source, target, blocking=True)  # scripts' path
    check_baked(addon, scene, source, target, material, old, like_source=True, old_gap=0.15)
    assert texture_image(addon, target) != old_image
    print(f"mesh-inversion -> fit at 64^2: {seconds:.2f} s")


def test_fit_result_onto_mesh_inversion_takes_the_bake_path(
    blender: ModuleType, addon: ModuleType, scene: Any, inversion: SimpleNamespace
) -> None:
    bpy = blender
    source = fit_result(bpy, addon, WARBLER)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = _invert(bpy, addon, WARBLER, seed=3)
    assert not addon.transfer.same_uv_layout(source, target)
    material = target.active_material
    old = shown_rgb(addon, target)
    source_pixels = pixels(texture_image(addon, source)).copy()
    scene.mono2mesh.bake_resolution = 64
    seconds = run_transfer(bpy, addon, scene, source, target, blocking=False)  # the UI's: timer slices
    check_baked(addon, scene, source, target, material, old, like_source=True, old_gap=0.15)
    assert np.array_equal(pixels(texture_image(addon, source)), source_pixels)  # the source keeps its texture
    print(f"fit -> mesh-inversion at 64^2: {seconds:.2f} s")
