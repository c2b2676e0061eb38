"""What the add-on tests of texture transfer with checkpointed methods share (mesh-inversion, unsup3d).

- ``install_checkpoint(backend, home, method, name, script)``: runs ``script`` (Python source that
  writes a small checkpoint with ``backend.checkpoints.save_checkpoint`` to ``sys.argv[1]`` and prints
  its path) in the main environment, into the session server's ``$MONO2MESH_HOME`` (conftest
  ``backend_home``), where the server finds installed checkpoints. Returns ``path``, ``before`` (the
  server's methods-list entry of ``method`` from before) and ``seconds``.
- ``refresh_methods(blender, addon, method)``: the add-on's Start Backend (URL mode: health and methods
  on a worker) and its timer, so its methods list has the installed checkpoint; transfer jobs cleared.
  ``check_listed``: the method was unavailable before (its reason names its trainer) and is offered now.
- ``fit_result(bpy, addon, photo)``: a short ``fit`` (the icosphere), the other layout of the bake tests.
- Reading objects: ``coordinates`` (V, 3), ``texture_image`` (the Image Texture node's image),
  ``covered_texels`` (the texels inside the UV triangles), ``shown_rgb`` (their colours), ``select``
  (source selected, target active: what Transfer Texture reads).
- ``run_transfer(bpy, addon, scene, source, target, blocking)``: Transfer Texture in the blocking path
  (``wait=True``, scripts) or the UI's (timer slices polled to the end); seconds.
- ``check_baked(...)``: a closest-point transfer finished, the target shows the job's new image in its own
  material, every covered texel within the colour range the source's surface reaches, and not the
  target's old texture.
"""

from __future__ import annotations

import array
import subprocess
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from tests.blender_addon.helpers import FAST_OPTIONS, MAIN_PYTHON, REPO
from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct_with, run_jobs

FIT_OPTIONS = {**FAST_OPTIONS, "texture_size": 64}
"""The fit results' options: short, a 64 px texture."""


def install_checkpoint(backend: Any, home: Path, method: str, name: str, script: str) -> SimpleNamespace:
    """A checkpoint of ``method`` written by ``script`` as ``<home>/checkpoints/<method>/<name>``."""
    before = {entry["name"]: entry for entry in backend.client.methods()}.get(method)
    stem = home / "checkpoints" / method / name
    started = time.perf_counter()
    done = subprocess.run(
        [str(MAIN_PYTHON), "-c", script, str(stem)],
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


def refresh_methods(blender: ModuleType, addon: ModuleType, method: str) -> None:
    """Start Backend refreshes the add-on's methods list; ``method`` is then available."""
    addon.transfer.jobs.clear()
    assert blender.ops.mono2mesh.start_backend() == {"FINISHED"}
    run_jobs(addon)
    info = addon.session.method_info(method)
    assert info is not None and info["available"], info


def check_listed(
    addon: ModuleType, scene: Any, installed: SimpleNamespace, method: str, trainer: str
) -> None:
    """Before ``installed`` (``install_checkpoint``'s) the server listed ``method`` unavailable, its
    reason naming ``trainer``; now the add-on lists it with exactly that checkpoint, its menu entry is
    plain (not "(unavailable)", no ERROR icon) and the scene's Method setting takes it."""
    before = installed.before
    assert before is not None and not before["available"] and before["needs_checkpoint"]
    assert trainer in before["reason"]
    info = addon.session.method_info(method)
    assert info["available"] and info["reason"] is None
    assert [checkpoint["name"] for checkpoint in info["checkpoints"]] == [installed.path.stem]
    items = {item[0]: item for item in addon.session.method_enum_items()}
    assert items[method][1] == method and items[method][3] == "NONE"
    assert items[method][2] == info["description"]
    scene.mono2mesh.method = method
    assert scene.mono2mesh.method == method


def fit_result(bpy: ModuleType, addon: ModuleType, photo: Path) -> Any:
    obj = reconstruct_with(bpy, addon, photo, "fit", FIT_OPTIONS)
    assert obj["mono2mesh_template"] == "icosphere-642"
    return obj


def select(bpy: ModuleType, source: Any, target: Any) -> None:
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    source.select_set(True)
    target.select_set(True)
    bpy.context.view_layer.objects.active = target


def coordinates(obj: Any) -> np.ndarray:
    values = np.empty(3 * len(obj.data.vertices), dtype=np.float32)
    obj.data.vertices.foreach_get("co", values)
    return values.reshape(-1, 3)


def texture_image(addon: ModuleType, obj: Any) -> Any:
    node = addon.importer.texture_node(obj.active_material)
    assert node is not None and node.image is not None
    return node.image


def covered_texels(obj: Any, width: int, height: int) -> np.ndarray:
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


def shown_rgb(addon: ModuleType, obj: Any, grow: int = 0) -> np.ndarray:
    """(N, 3) the colours of the object's texture at the texels its UV triangles cover, and ``grow``
    texels around them (bilinear sampling at a triangle's edge reads one texel further)."""
    image = texture_image(addon, obj)
    width, height = image.size
    covered = covered_texels(obj, width, height)
    for _ in range(grow):
        grown = covered.copy()
        grown[1:] |= covered[:-1]
        grown[:-1] |= covered[1:]
        grown[:, 1:] |= covered[:, :-1]
        grown[:, :-1] |= covered[:, 1:]
        covered = grown
    return pixels(image)[..., :3][covered]


def run_transfer(
    bpy: ModuleType, addon: ModuleType, scene: Any, source: Any, target: Any, blocking: bool
) -> float:
    """Transfer Texture from ``source`` onto ``target``: blocking (``wait=True``, as scripts do) or the
    UI's path (the operator returns at once, the timer's slices are polled to the end); seconds."""
    select(bpy, source, target)
    started = time.perf_counter()
    if blocking:
        assert bpy.ops.mono2mesh.transfer_texture(wait=True) == {"FINISHED"}
    else:
        assert bpy.ops.mono2mesh.transfer_texture() == {"FINISHED"}
        assert addon.transfer.running(scene.name)
        deadline = time.monotonic() + 60
        while addon.transfer.poll() is not None:
            assert time.monotonic() < deadline
    return time.perf_counter() - started


def check_baked(
    addon: ModuleType,
    scene: Any,
    source: Any,
    target: Any,
    material: Any,
    old: np.ndarray,
    *,
    like_source: bool,
    old_gap: float,
) -> None:
    """The closest-point transfer finished and the target shows the job's new image in its own material;
    every covered texel is a blend of the source's texels (closest point, margin and fill average them);
    it is not one flat colour; its mean differs from the target's old texture ``old`` (N, 3) by more
    than ``old_gap`` in some channel. ``like_source``: the mean is the source's shown texels' within
    0.05 per channel and the spread at least half the source's (else: any spread above 0.02)."""
    job = addon.transfer.jobs[scene.name]
    assert job.state == "done", job.message
    assert job.uncoloured is not None and job.uncoloured < addon.transfer.UNCOLOURED_LIMIT
    image = texture_image(addon, target)
    assert image == job.image and image != texture_image(addon, source)
    size = scene.mono2mesh.bake_resolution
    assert image.size[:] == (size, size)
    assert target.active_material == material and len(target.material_slots) == 1
    shown = pixels(image)[..., :3][covered_texels(target, size, size)]
    reach = shown_rgb(addon, source, grow=1)
    low, high = reach.min(axis=0), reach.max(axis=0)
    assert ((shown >= low - 2 / 255) & (shown <= high + 2 / 255)).all()
    if like_source:
        source_rgb = shown_rgb(addon, source)
        assert np.abs(shown.mean(axis=0) - source_rgb.mean(axis=0)).max() < 0.05, (
            shown.mean(axis=0),
            source_rgb.mean(axis=0),
        )
        assert shown.std(axis=0).max() > 0.5 * source_rgb.std(axis=0).max()
    else:
        assert shown.std(axis=0).max() > 0.02
    assert np.abs(shown.mean(axis=0) - old.mean(axis=0)).max() > old_gap, (
        shown.mean(axis=0),
        old.mean(axis=0),
    )
