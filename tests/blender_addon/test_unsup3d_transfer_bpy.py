"""Texture transfer with ``unsup3d`` results, through the installed add-on and the session's server.

Every ``unsup3d`` result is the 64 x 64 depth grid of the network's canonical view (template
``depthgrid-64``), its UVs the canonical image grid. Without the mask cut (``mask_cut: false``) and with
the same ``close`` two results have the very same UV layout, so Transfer Texture between them is the
add-on's copy path (an image swap); between an ``unsup3d`` result and a ``fit`` result (the icosphere) it
is the closest-point ("bake") path, both ways.

The method needs a checkpoint: ``unsup3d_checkpoint`` builds a small network in the main environment (a
subprocess: ``Unsup3dNet`` with ``nf`` 16, seeded random weights) and writes it with the backend's
checkpoint writer into the session server's ``$MONO2MESH_HOME`` (conftest ``backend_home``), where the
server finds installed checkpoints; Start Backend then refreshes the add-on's methods list. The photos
are Unsup3d's own demo inputs (a face, a cat face: tightly framed, taken whole, no mask), the ``fit``
results a bird; ``UNSUP3D_OPTIONS`` keep each reconstruction well under a second on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import PHOTOS, REPO
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

FACES = REPO.parent / "shared" / "data" / "faces"
HUMAN, CAT = FACES / "human_001_face.png", FACES / "cat_001_cat.png"
BUNTING = PHOTOS / "bird_bunting.jpg"
METHOD = "unsup3d"
TEMPLATE = "depthgrid-64"
CHECKPOINT_NAME = "addon-test-unsup3d"
UNSUP3D_OPTIONS = {"crop_size": 64, "texture_size": 64, "mask_cut": False, "resolution": 32}
"""A 64 px crop and texture; the whole grid (no mask cut), closed by the default mirrored back."""
GRID_VERTICES = 64 * 64 + 63 * 63

CHECKPOINT_SCRIPT = """
import sys

import torch

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.models.unsup3d import TEMPLATE_ID, Unsup3dModelConfig, Unsup3dNet

torch.manual_seed(7)
network = Unsup3dNet(Unsup3dModelConfig(nf=16, zdim=8, confidence_zdim=8, encoder_nf=4)).eval()
meta = CheckpointMeta(
    method="unsup3d",
    template=TEMPLATE_ID,
    config={"model": network.config.model_dump(mode="json")},
    dataset={"name": "none: seeded random weights (add-on tests)"},
    step=1,
)
print(save_checkpoint(sys.argv[1], network.state_dict(), meta))
"""


@pytest.fixture(scope="session")
def unsup3d_checkpoint(backend: Any, backend_home: Path) -> SimpleNamespace:
    """The tiny network installed for the session's server; ``before``: the server's methods-list entry
    of ``unsup3d`` from before it was installed."""
    return install_checkpoint(backend, backend_home, METHOD, CHECKPOINT_NAME, CHECKPOINT_SCRIPT)


@pytest.fixture
def unsup3d(
    blender: ModuleType, addon: ModuleType, scene: Any, unsup3d_checkpoint: SimpleNamespace
) -> Iterator[SimpleNamespace]:
    """The add-on's methods list refreshed, so that it lists the installed checkpoint; transfer jobs
    cleared before and after."""
    refresh_methods(blender, addon, METHOD)
    yield unsup3d_checkpoint
    addon.transfer.jobs.clear()


def _relief(bpy: ModuleType, addon: ModuleType, photo: Path) -> Any:
    obj = reconstruct_with(bpy, addon, photo, METHOD, UNSUP3D_OPTIONS)
    assert obj["mono2mesh_template"] == TEMPLATE
    assert obj["mono2mesh_checkpoint"] == f"{CHECKPOINT_NAME}.safetensors"
    # the whole grid and its mirrored back: one vertex per grid vertex and twin after the weld, standing
    # on the floor (its lowest point at its origin's height)
    assert len(obj.data.vertices) == 2 * GRID_VERTICES
    assert abs(float(coordinates(obj)[:, 2].min())) < 1e-4
    return obj


def test_the_addon_lists_unsup3d_once_a_checkpoint_is_installed(
    blender: ModuleType, addon: ModuleType, scene: Any, unsup3d: SimpleNamespace
) -> None:
    check_listed(addon, scene, unsup3d, METHOD, "mono2mesh-train unsup3d")


def test_two_unsup3d_results_share_the_grid_and_transfer_copies_the_image(
    blender: ModuleType, addon: ModuleType, scene: Any, unsup3d: SimpleNamespace
) -> None:
    bpy = blender
    source = _relief(bpy, addon, HUMAN)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = _relief(bpy, addon, CAT)
    assert addon.transfer.same_uv_layout(source, target) and addon.transfer.same_uv_layout(target, source)
    source_image, target_image = texture_image(addon, source), texture_image(addon, target)
    source_pixels, target_pixels = pixels(source_image).copy(), pixels(target_image).copy()
    assert source_image != target_image and np.abs(source_pixels - target_pixels).max() > 0.1
    target_material, target_mesh, target_co = target.active_material, target.data, coordinates(target)
    source_co = coordinates(source)
    assert not np.allclose(source_co, target_co)  # two different reliefs
    images = set(bpy.data.images)
    select(bpy, source, target)
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}  # a copy: done at once, no job
    copied = time.perf_counter() - started
    assert not addon.transfer.running(scene.name) and scene.name not in addon.transfer.jobs
    assert set(bpy.data.images) <= images
    shown = texture_image(addon, target)
    assert shown == source_image and np.array_equal(pixels(shown), source_pixels)
    assert target.active_material == target_material and len(target.material_slots) == 1
    assert target.data == target_mesh and np.array_equal(coordinates(target), target_co)
    assert texture_image(addon, source) == source_image and np.array_equal(
        pixels(source_image), source_pixels
    )
    assert np.array_equal(coordinates(source), source_co)
    print(f"unsup3d copy {copied * 1000:.1f} ms")


def test_a_relief_closed_otherwise_has_another_layout(
    blender: ModuleType, addon: ModuleType, scene: Any, unsup3d: SimpleNamespace
) -> None:
    """The same grid without its back (``close: none``) is another layout: not copied onto."""
    bpy = blender
    closed = _relief(bpy, addon, HUMAN)
    scene.cursor.location = (3.0, 0.0, 0.0)
    front = reconstruct_with(bpy, addon, HUMAN, METHOD, {**UNSUP3D_OPTIONS, "close": "none"})
    assert len(front.data.vertices) == GRID_VERTICES and front["mono2mesh_template"] == TEMPLATE
    assert not addon.transfer.same_uv_layout(closed, front)


def test_unsup3d_onto_a_fit_result_takes_the_bake_path(
    blender: ModuleType, addon: ModuleType, scene: Any, unsup3d: SimpleNamespace
) -> None:
    bpy = blender
    source = _relief(bpy, addon, HUMAN)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = fit_result(bpy, addon, BUNTING)
    assert not addon.transfer.same_uv_layout(source, target)
    assert not addon.transfer.same_uv_layout(target, source)
    material, old = target.active_material, shown_rgb(addon, target)
    scene.mono2mesh.bake_resolution = 64
    seconds = run_transfer(bpy, addon, scene, source, target, blocking=True)  # scripts' path
    check_baked(addon, scene, source, target, material, old, like_source=False, old_gap=0.05)
    print(f"unsup3d -> fit at 64^2: {seconds:.2f} s")


def test_fit_result_onto_unsup3d_takes_the_bake_path(
    blender: ModuleType, addon: ModuleType, scene: Any, unsup3d: SimpleNamespace
) -> None:
    bpy = blender
    source = fit_result(bpy, addon, BUNTING)
    scene.cursor.location = (3.0, 0.0, 0.0)
    target = _relief(bpy, addon, CAT)
    assert not addon.transfer.same_uv_layout(source, target)
    material, old = target.active_material, shown_rgb(addon, target)
    source_pixels = pixels(texture_image(addon, source)).copy()
    scene.mono2mesh.bake_resolution = 64
    seconds = run_transfer(bpy, addon, scene, source, target, blocking=False)  # the UI's: timer slices
    check_baked(addon, scene, source, target, material, old, like_source=False, old_gap=0.05)
    assert np.array_equal(pixels(texture_image(addon, source)), source_pixels)
    print(f"fit -> unsup3d at 64^2: {seconds:.2f} s")
