"""Reconstruct from Image inside Blender: submit, poll (the timer's function, called directly), import.

The add-on is the built zip installed through Blender's extension installer (conftest ``blender``);
the backend is a real server process (conftest ``backend``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import FAST_OPTIONS


def run_jobs(addon: ModuleType, timeout: float = 120.0) -> None:
    """Call the polling function (what the timer would) until no job is left."""
    deadline = time.monotonic() + timeout
    while addon.session.poll_once() is not None:
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.1)


def reconstruct(bpy: ModuleType, addon: ModuleType, photo: Path, **options: Any) -> Any:
    settings = bpy.context.scene.mono2mesh
    settings.image_source = "FILE"
    settings.image_path = str(photo)
    settings.extra_options = json.dumps({**FAST_OPTIONS, **options})
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    run_jobs(addon)
    assert settings.job_status == "succeeded", settings.message
    return bpy.context.view_layer.objects.active


def reconstruct_with(
    bpy: ModuleType, addon: ModuleType, photo: Path, method: str, options: dict[str, Any]
) -> Any:
    """Reconstruct from Image with ``method`` and exactly ``options`` through the add-on (panel settings,
    operator, timer); skips when the photo is missing. Returns the imported object."""
    if not photo.is_file():
        pytest.skip(f"the photo {photo} is missing")
    settings = bpy.context.scene.mono2mesh
    settings.method = method
    settings.image_source = "FILE"
    settings.image_path = str(photo)
    settings.extra_options = json.dumps(options)
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    run_jobs(addon)
    assert settings.job_status == "succeeded", settings.message
    obj = bpy.context.view_layer.objects.active
    assert obj["mono2mesh_method"] == method
    return obj


def pixels(image: Any) -> np.ndarray:
    values = np.empty(len(image.pixels), dtype=np.float32)
    image.pixels.foreach_get(values)
    return values.reshape(image.size[1], image.size[0], image.channels)


def test_reconstruct_imports_one_textured_object(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    scene.cursor.location = (1.0, -2.0, 0.5)
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps(FAST_OPTIONS)
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    # returned at once: the job is in flight, the timer is registered, nothing imported yet
    assert settings.busy and settings.job_id in addon.session.jobs
    assert bpy.app.timers.is_registered(addon.session.poll_once)
    assert len(bpy.data.objects) == 0
    stages = set()
    deadline = time.monotonic() + 120
    while addon.session.poll_once() is not None:
        stages.add(settings.job_stage)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert settings.job_status == "succeeded", settings.message
    assert [obj.name for obj in bpy.data.objects] == ["disk_photo"]
    obj = bpy.data.objects["disk_photo"]
    bpy.context.view_layer.update()
    assert obj.type == "MESH" and obj.data.name == "disk_photo"
    assert tuple(obj.location) == pytest.approx((1.0, -2.0, 0.5))
    assert max(obj.dimensions) == pytest.approx(settings.target_size, rel=1e-4)
    assert tuple(obj.scale) == (1.0, 1.0, 1.0)
    assert obj.data.uv_layers.active is not None
    assert all(polygon.use_smooth for polygon in obj.data.polygons)
    # material: Image Texture -> Principled BSDF Base Color, the texture packed into the .blend
    material = obj.active_material
    principled = next(node for node in material.node_tree.nodes if node.type == "BSDF_PRINCIPLED")
    texture = principled.inputs["Base Color"].links[0].from_node
    assert texture.type == "TEX_IMAGE"
    image = texture.image
    path = Path(bpy.path.abspath(image.filepath))
    assert image.packed_file is not None and obj["mono2mesh_texture_storage"] == "packed"
    assert path.parent == Path(obj["mono2mesh_output_dir"])
    assert {p.name for p in path.parent.iterdir()} >= {
        "disk_photo.glb",
        "disk_photo_texture.png",
        "disk_photo_preview.png",
        "disk_photo.json",
    }
    rgb = pixels(image)[..., :3].reshape(-1, 3)
    # the synthetic photo is a red-over-blue disk: both colours are in the projected texture
    assert (rgb[:, 0] > rgb[:, 2] + 0.2).any() and (rgb[:, 2] > rgb[:, 0] + 0.2).any()
    # custom properties record provenance and quality
    report = json.loads((path.parent / "disk_photo.json").read_text())
    assert obj["mono2mesh_source_image"] == str(photo)
    assert obj["mono2mesh_method"] == "fit"
    assert obj["mono2mesh_job_id"] == settings.job_id
    assert obj["mono2mesh_template"] == report["template"] == "icosphere-642"
    assert obj["mono2mesh_silhouette_iou"] == pytest.approx(report["silhouette_iou"])
    assert obj["mono2mesh_num_faces"] == len(obj.data.polygons) == report["num_faces"]
    assert len(obj.data.vertices) == report["num_vertices"]  # welded: one vertex per position
    assert obj["mono2mesh_import_seconds"] < 0.3


def test_cancel_imports_nothing(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, backend: Any
) -> None:
    bpy = blender
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps({**FAST_OPTIONS, "iterations": 3000})
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    job_id = settings.job_id
    addon.session.poll_once()
    assert bpy.ops.mono2mesh.cancel() == {"FINISHED"}
    assert settings.job_status == "canceled" and not settings.busy
    assert addon.session.poll_once() is None
    deadline = time.monotonic() + 30
    while backend.client.job(job_id)["status"] not in ("canceled", "failed", "succeeded"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert backend.client.job(job_id)["status"] == "canceled"
    assert len(bpy.data.objects) == 0


def test_blender_image_as_input(blender: ModuleType, addon: ModuleType, scene: Any, photo: Path) -> None:
    bpy = blender
    settings = scene.mono2mesh
    settings.image_source = "IMAGE"
    settings.image = bpy.data.images.load(str(photo))
    settings.extra_options = json.dumps(FAST_OPTIONS)
    assert bpy.ops.mono2mesh.reconstruct(wait=True) == {"FINISHED"}  # the blocking path for scripts
    assert settings.job_status == "succeeded", settings.message
    assert bpy.context.view_layer.objects.active.name == "disk_photo"


def test_failed_job_in_the_blocking_path(
    blender: ModuleType, addon: ModuleType, scene: Any, tmp_path: Path
) -> None:
    bpy = blender
    blank = tmp_path / "blank.png"
    bpy.data.images.new("blank", 64, 64).save(filepath=str(blank))  # all black: no object to find
    settings = scene.mono2mesh
    settings.image_path = str(blank)
    settings.extra_options = json.dumps(FAST_OPTIONS)
    with pytest.raises(RuntimeError, match=r"Job \S+ failed: .*mask"):
        bpy.ops.mono2mesh.reconstruct(wait=True)
    assert settings.job_status == "failed" and settings.message_is_error and "mask" in settings.message
    assert len(bpy.data.objects) == 0 and not addon.session.jobs


def test_failed_import_leaves_nothing(
    blender: ModuleType, addon: ModuleType, scene: Any, tmp_path: Path
) -> None:
    bpy = blender
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"glTF not really")
    texture = tmp_path / "t.png"
    counts = {name: len(getattr(bpy.data, name)) for name in ("objects", "meshes", "materials", "images")}
    with pytest.raises(RuntimeError):
        addon.importer.import_result(scene.collection, broken, texture, name="x")
    assert counts == {name: len(getattr(bpy.data, name)) for name in counts}


def test_unavailable_backend_is_a_clear_error(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    import socket

    bpy = blender
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prefs.url = f"http://127.0.0.1:{port}"
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    addon.session._methods.clear()
    # an operator that reports an error raises RuntimeError when called from Python
    with pytest.raises(RuntimeError, match="not answering"):
        bpy.ops.mono2mesh.reconstruct()
    assert settings.message_is_error and "not answering" in settings.message
    assert not settings.busy and len(bpy.data.objects) == 0
    prefs.backend_mode = "LOCAL"
    prefs.python_path = "/nonexistent/python"
    with pytest.raises(RuntimeError, match="Backend Python not found"):
        bpy.ops.mono2mesh.reconstruct()
    assert "Backend Python not found" in settings.message


def wait_for_start(addon: ModuleType, timeout: float = 120.0) -> None:
    """Call the start timer's function (what Blender's timer would) until it is done."""
    deadline = time.monotonic() + timeout
    while addon.session.poll_start() is not None:
        assert time.monotonic() < deadline, "the backend did not start"
        time.sleep(0.1)


@pytest.fixture
def local_mode(blender: ModuleType, addon: ModuleType, scene: Any) -> Any:
    """Preferences in LOCAL mode with the main environment's Python; stops the backend afterwards."""
    from tests.blender_addon.helpers import MAIN_PYTHON

    if not MAIN_PYTHON.is_file():
        pytest.skip("no backend Python")
    prefs = blender.context.preferences.addons[addon.__name__].preferences
    prefs.backend_mode = "LOCAL"
    prefs.python_path = str(MAIN_PYTHON)
    yield prefs
    blender.ops.mono2mesh.stop_backend()
    assert addon.session.local_backend() is None and not addon.session.backend_starting()


def test_reconstruct_starts_the_local_backend_without_blocking(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, local_mode: Any
) -> None:
    bpy = blender
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps(FAST_OPTIONS)
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    returned = time.perf_counter() - started
    # the operator launched the process and returned; the backend takes seconds to answer
    assert returned < 1.0, f"Reconstruct blocked the UI for {returned:.2f} s"
    assert settings.job_status == "starting" and settings.busy and not settings.job_id
    assert addon.session.backend_starting() and bpy.app.timers.is_registered(addon.session.poll_start)
    assert not bpy.ops.mono2mesh.start_backend.poll()  # no second start while one is under way
    wait_for_start(addon)
    local = addon.session.local_backend()
    assert local is not None and local.is_alive() and local.client is not None
    assert settings.job_id in addon.session.jobs  # the photo went out once the backend answered
    assert [method["name"] for method in addon.session.methods()][:1] == ["fit"]
    run_jobs(addon)
    assert settings.job_status == "succeeded", settings.message
    assert [obj.name for obj in bpy.data.objects] == ["disk_photo"]


def test_cancel_while_the_backend_starts_sends_nothing(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, local_mode: Any
) -> None:
    bpy = blender
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    assert settings.job_status == "starting"
    assert bpy.ops.mono2mesh.cancel() == {"FINISHED"}
    assert settings.job_status == "canceled" and not settings.busy
    wait_for_start(addon)
    assert addon.session.local_backend().is_alive()  # the backend itself keeps running
    assert not settings.job_id and not addon.session.jobs
    assert addon.session.poll_once() is None and len(bpy.data.objects) == 0


def test_backend_that_exits_at_start_up(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, tmp_path: Path, local_mode: Any
) -> None:
    bpy = blender
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'No module named backend' >&2\nexit 3\n")
    fake.chmod(0o755)
    local_mode.python_path = str(fake)
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}  # launching worked; the failure comes later
    wait_for_start(addon, timeout=30)
    assert settings.job_status == "failed" and settings.message_is_error
    assert "exited at start-up with status 3" in settings.message
    assert "No module named backend" in settings.message
    assert not settings.busy and not addon.session.jobs and len(bpy.data.objects) == 0


def test_local_backend_killed_mid_job(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, local_mode: Any
) -> None:
    bpy = blender
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.start_backend() == {"FINISHED"}
    assert time.perf_counter() - started < 1.0
    wait_for_start(addon)
    local = addon.session.local_backend()
    assert local is not None and local.is_alive()
    assert Path(local.state_file).is_relative_to(bpy.utils.extension_path_user(addon.__name__))
    settings = scene.mono2mesh
    assert settings.message.startswith("Backend running at http://127.0.0.1:")
    settings.image_path = str(photo)
    settings.extra_options = json.dumps({**FAST_OPTIONS, "iterations": 3000})
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    assert settings.job_id in addon.session.jobs  # sent at once: the backend was running
    addon.session.poll_once()
    local.process.kill()
    local.process.wait(10)
    assert addon.session.poll_once() is None  # the job is given up at once
    assert settings.job_status == "failed" and settings.message_is_error
    assert "backend stopped during the job" in settings.message
    assert len(bpy.data.objects) == 0
