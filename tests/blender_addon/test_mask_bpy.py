"""The mask the backend used, beside the result, and the preferences' mask-model box, inside Blender.

Against the session's real backend (conftest ``backend``): a reconstruction imports its mask as the
image "<object> mask" (the downloaded ``<stem>_mask.png``), the Result panel draws its row, Open Mask
shows it in an Image Editor, Use This Mask makes it the scene's mask, and a painted mask is saved and
sent with the next job (its report says "given" and its mask is what was painted); a refinement
replaces the mask. Mask model: Check and Download Mask Model against the real server's routes (a
second server with ``--mask-model-url`` pointing at a tiny ONNX file the test writes); the 404 of a
backend without the routes and the non-blocking path against a small stand-in HTTP server that
answers 404 slowly.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import FAST_OPTIONS, MAIN_PYTHON
from tests.blender_addon.test_panels_bpy import Drawn, RecordingLayout, draw
from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct

MASK_SOURCES = {"given", "alpha", "salient", "grabcut", "whole"}


def mask_of(image: Any) -> np.ndarray:
    """(H, W) bool, top row first, of a mask image (white = object)."""
    return pixels(image)[::-1, :, 0] > 0.5


def reload_file(bpy: ModuleType, path: Path) -> np.ndarray:
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        return mask_of(image)
    finally:
        bpy.data.images.remove(image)


def show_image_editor(bpy: ModuleType) -> Any:
    """Turn the first area of the window into an Image Editor (background mode opens no new windows)."""
    area = bpy.context.window_manager.windows[0].screen.areas[0]
    area.type = "IMAGE_EDITOR"
    return area.spaces.active


def test_result_mask_is_loaded_shown_and_used(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, tmp_path: Path
) -> None:
    bpy = blender
    importer = addon.importer
    obj = reconstruct(bpy, addon, photo)
    # the downloaded mask next to the other result files, recorded and loaded
    folder = Path(obj[importer.PROPERTY_OUTPUT])
    mask_file = folder / "disk_photo_mask.png"
    assert Path(obj[importer.PROPERTY_MASK]) == mask_file and mask_file.is_file()
    report = json.loads((folder / "disk_photo.json").read_text())
    source = report["photo"]["mask_source"]
    assert source in MASK_SOURCES and obj[importer.PROPERTY_MASK_SOURCE] == source
    assert obj[importer.PROPERTY_MASK_MODEL] == str(report["photo"].get("mask_model") or "")
    assert obj[importer.PROPERTY_MASK_NOTE] == str(report["photo"].get("mask_note") or "")
    image = bpy.data.images["disk_photo mask"]
    assert importer.mask_image(obj) == image and image.users >= 1  # held by the object
    assert tuple(image.size) == (96, 96)  # the photo's resolution
    mask = mask_of(image)
    assert np.array_equal(mask, reload_file(bpy, mask_file))
    # the synthetic photo: a disk of radius 0.32 * 96 in the middle of a grey background
    assert mask[48, 48] and mask[48, 30] and not mask[2, 2] and not mask[93, 93]
    assert 0.15 < mask.mean() < 0.5

    # the Result panel: the source, a preview of the mask, Open Mask and Use This Mask
    drawn = draw(bpy, addon.panels.VIEW3D_PT_mono2mesh_result, bpy.context)
    label = importer.mask_label(source, obj[importer.PROPERTY_MASK_MODEL])
    assert label in drawn.texts("label")
    if source == "grabcut":
        assert label == "Mask: GrabCut (automatic)"
    assert drawn.texts("icon") == ["disk_photo mask"] and len(drawn.texts("template_icon")) == 1
    operators = drawn.texts("operator")
    assert operators.index("mono2mesh.show_mask") + 1 == operators.index("mono2mesh.use_mask")

    # Open Mask: shown in the open Image Editor
    space = show_image_editor(bpy)
    assert bpy.ops.mono2mesh.show_mask() == {"FINISHED"}
    assert space.image == image

    # Use This Mask: the scene's mask (and photo) become the result's; the editor is in Paint mode
    settings = scene.mono2mesh
    settings.image_path, settings.mask_path = "", ""
    assert bpy.ops.mono2mesh.use_mask() == {"FINISHED"}
    assert Path(settings.mask_path) == mask_file and mask_file.is_file()
    assert Path(settings.image_path) == photo and settings.image_source == "FILE"
    assert space.image == image and space.ui_mode == "PAINT"
    assert "paint it" in settings.message

    # "paint" it (the left half black), then reconstruct: the painted mask is saved and sent
    values = pixels(image).copy()
    values[:, :48, :3] = 0.0
    image.pixels.foreach_set(values.ravel())
    assert image.is_dirty
    painted = mask_of(image)
    assert not painted[:, :48].any() and painted[:, 48:].any()
    settings.extra_options = json.dumps(FAST_OPTIONS)
    assert bpy.ops.mono2mesh.reconstruct(wait=True) == {"FINISHED"}
    assert not image.is_dirty and np.array_equal(reload_file(bpy, mask_file), painted)
    second = bpy.context.view_layer.objects.active
    assert second != obj and second[importer.PROPERTY_MASK_SOURCE] == "given"
    assert np.array_equal(mask_of(importer.mask_image(second)), painted)
    assert importer.mask_image(second).name == f"{second.name} mask"
    assert "Mask: yours" in draw(bpy, addon.panels.VIEW3D_PT_mono2mesh_result, bpy.context).texts("label")


def test_refinement_replaces_the_mask(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    importer = addon.importer
    obj = reconstruct(bpy, addon, photo)
    before_file = Path(obj[importer.PROPERTY_MASK])
    assert importer.mask_image(obj).name == "disk_photo mask"
    assert bpy.ops.mono2mesh.refine(wait=True) == {"FINISHED"}
    after = importer.mask_image(obj)
    after_file = Path(obj[importer.PROPERTY_MASK])
    # the refinement job's own mask, downloaded into its folder
    assert after_file != before_file and after_file.is_file() and after_file.name == "disk_photo_mask.png"
    assert after is not None and Path(after.filepath) == after_file
    # the old mask image had no other user: removed, not left behind beside the new one
    assert [image.name for image in bpy.data.images if image.name.startswith("disk_photo mask")] == [
        "disk_photo mask"
    ]
    assert obj[importer.PROPERTY_MASK_SOURCE] in MASK_SOURCES


def test_mask_properties_without_a_mask_file(blender: ModuleType, addon: ModuleType, scene: Any) -> None:
    """An older backend sends no mask: the source is still shown, Open Mask and Use This Mask are off."""
    bpy = blender
    importer = addon.importer
    mesh = bpy.data.meshes.new("old")
    obj = bpy.data.objects.new("old", mesh)
    scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj[importer.PROPERTY_SOURCE] = "/photos/old.jpg"
    report = {"photo": {"mask_source": "salient", "mask_model": "u2netp", "mask_note": "x " * 40}}
    assert importer.attach_mask(obj, None, report) is None
    drawn = draw(bpy, addon.panels.VIEW3D_PT_mono2mesh_result, bpy.context)
    labels = drawn.texts("label")
    assert "Mask: salient model u2netp" in labels and "The backend sent no mask file" in labels
    note_lines = [text for text in labels if text.startswith("x ")]
    assert len(note_lines) == 2 and all(len(line) <= addon.panels.NOTE_WIDTH for line in note_lines)
    assert not bpy.ops.mono2mesh.show_mask.poll() and not bpy.ops.mono2mesh.use_mask.poll()
    assert importer.mask_label("alpha") == "Mask: alpha channel"
    assert importer.mask_label("given") == "Mask: yours"
    assert importer.mask_label("salient") == "Mask: salient model"


# -- mask model: preferences --------------------------------------------------------------------------
class _StandIn(BaseHTTPRequestHandler):
    """A small stand-in backend: ``server.routes`` maps "GET /v1/..." to (status, JSON); anything else is
    404 ``{"detail": "Not Found"}`` (a backend without the route). ``server.delay`` s before each answer."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        time.sleep(self.server.delay)  # type: ignore[attr-defined]
        key = f"{self.command} {self.path}"
        self.server.requests.append((key, body))  # type: ignore[attr-defined]
        status, payload = self.server.routes.get(key, (404, {"detail": "Not Found"}))  # type: ignore[attr-defined]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.delay, server.requests, server.routes = 0.0, [], {}  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def box_texts(bpy: ModuleType, addon: ModuleType) -> Drawn:
    drawn = Drawn()
    addon.preferences.draw_mask_model(RecordingLayout(bpy, drawn))
    return drawn


def use_url(bpy: ModuleType, addon: ModuleType, url: str, token: str = "") -> None:
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    prefs.backend_mode, prefs.url, prefs.token = "URL", url, token
    addon.masks.reset()


def wait_for_timers(addon: ModuleType, timeout: float = 10.0) -> None:
    """Call the polling function (what the timer would) until no task is left."""
    deadline = time.monotonic() + timeout
    while addon.session.poll_once() is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_mask_model_box_is_idle_until_asked(blender: ModuleType, addon: ModuleType, scene: Any) -> None:
    bpy = blender
    addon.masks.reset()
    drawn = box_texts(bpy, addon)
    assert drawn.texts("label")[1] == "Not checked: press Check (nothing is downloaded)"
    assert drawn.texts("operator") == ["mono2mesh.check_mask_model", "mono2mesh.download_mask_model"]


def test_backend_without_mask_model_routes(
    blender: ModuleType, addon: ModuleType, scene: Any, stand_in: Any
) -> None:
    bpy = blender
    use_url(bpy, addon, stand_in.url)
    for operator in (bpy.ops.mono2mesh.check_mask_model, bpy.ops.mono2mesh.download_mask_model):
        with pytest.raises(RuntimeError, match="This backend has no mask model support"):
            operator(wait=True)
        assert addon.masks.state.unsupported and not addon.masks.state.busy
        assert "This backend has no mask model support (update it)" in box_texts(bpy, addon).texts("label")
    assert [key for key, _body in stand_in.requests] == ["GET /v1/mask-model", "POST /v1/mask-model/download"]
    # a slow answer: the click returns at once, the timers hand the answer to the box
    addon.masks.reset()
    stand_in.delay = 1.0
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.check_mask_model() == {"FINISHED"}
    assert time.perf_counter() - started < 0.6
    assert addon.masks.state.busy == "check" and not bpy.ops.mono2mesh.download_mask_model.poll()
    assert box_texts(bpy, addon).texts("label")[1] == "Asking the backend…"
    wait_for_timers(addon)
    assert addon.masks.state.unsupported and not addon.masks.state.busy
    assert "This backend has no mask model support (update it)" in box_texts(bpy, addon).texts("label")


def test_download_in_the_background(
    blender: ModuleType, addon: ModuleType, scene: Any, stand_in: Any
) -> None:
    """Download Mask Model returns at once; the slow answer reaches the box through the timers."""
    bpy = blender
    use_url(bpy, addon, stand_in.url)
    done = {"available": True, "path": "/data/models/mask/u2netp.onnx", "name": "u2netp"}
    stand_in.routes["POST /v1/mask-model/download"] = (200, {**done, "searched": [], "reason": None})
    stand_in.delay = 1.0
    started = time.perf_counter()
    assert bpy.ops.mono2mesh.download_mask_model(name="u2netp") == {"FINISHED"}
    assert time.perf_counter() - started < 0.6
    assert addon.masks.state.busy == "download" and not bpy.ops.mono2mesh.check_mask_model.poll()
    assert box_texts(bpy, addon).texts("label")[1].startswith("Downloading the mask model")
    wait_for_timers(addon)
    assert stand_in.requests == [("POST /v1/mask-model/download", b'{"name": "u2netp"}')]
    assert addon.masks.state.status["available"] and not addon.masks.state.busy
    labels = box_texts(bpy, addon).texts("label")
    assert "Available: u2netp" in labels and "File: /data/models/mask/u2netp.onnx" in labels


def _mask_model_routes(client_module: ModuleType, client: Any) -> dict[str, Any]:
    try:
        return client.mask_model()
    except client_module.MaskModelUnsupported:
        pytest.skip("the backend has no mask-model routes yet (the add-on's 404 message is tested above)")


def test_check_mask_model_on_the_backend(
    blender: ModuleType, addon: ModuleType, scene: Any, backend: Any, client_module: ModuleType
) -> None:
    bpy = blender
    use_url(bpy, addon, backend.client.url, backend.client.token)
    expected = _mask_model_routes(client_module, backend.client)
    assert bpy.ops.mono2mesh.check_mask_model(wait=True) == {"FINISHED"}
    status = addon.masks.state.status
    assert status == expected and addon.masks.state.url == backend.client.url
    labels = box_texts(bpy, addon).texts("label")
    if status["available"]:
        assert f"Available: {status['name']}" in labels
    else:  # the session's backend has an empty data folder: no model, and where it looked
        assert f"Not installed: {status['name']}" in labels
        assert any(text.startswith("Searched: ") for text in labels) == bool(status["searched"])
    assert f"Backend: {backend.client.url}" in labels


TINY_ONNX = """
import sys
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
mask = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 32, 32])
kernel = numpy_helper.from_array(np.array([1, -1, 0], dtype=np.float32).reshape(1, 3, 1, 1), "kernel")
node = helper.make_node("Conv", ["input", "kernel"], ["output"], kernel_shape=[1, 1])
graph = helper.make_graph([node], "tiny", [image], [mask], initializer=[kernel])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
open(sys.argv[1], "wb").write(model.SerializeToString())
"""


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    """``<tmp>/mirror/u2netp.onnx``: a 1x1-convolution segmenter written by the main environment (the
    Blender one has no onnx), standing where a mirror of the public models would have u2netp."""
    if not MAIN_PYTHON.is_file():
        pytest.skip("no backend Python")
    path = tmp_path / "mirror" / "u2netp.onnx"
    path.parent.mkdir()
    result = subprocess.run([str(MAIN_PYTHON), "-c", TINY_ONNX, str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"the backend's Python cannot write an ONNX file: {result.stderr[-300:]}")
    return path


def test_download_mask_model_from_the_backend(
    blender: ModuleType,
    addon: ModuleType,
    scene: Any,
    backend: Any,
    client_module: ModuleType,
    tiny_onnx: Path,
    tmp_path: Path,
) -> None:
    """The real download route, fetching from a ``file://`` mirror (``serve --mask-model-url``).

    The backend checks the file against u2netp's recorded checksum, which a tiny model cannot match
    (and the real one cannot be fetched here): the download is refused with the backend's reason and
    nothing is kept. A model put in the backend's cache folder is then reported available.
    """
    bpy = blender
    _mask_model_routes(client_module, backend.client)
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if key != "MONO2MESH_MASK_MODEL"}
    server = client_module.LocalBackend(
        MAIN_PYTHON,
        tmp_path / "server.json",
        tmp_path / "server.log",
        jobs_dir=tmp_path / "jobs",
        module_args=("-m", "backend", "serve", "--mask-model-url", tiny_onnx.parent.as_uri()),
        env={**env, "MONO2MESH_HOME": str(home)},
    )
    server.start(timeout=120)
    try:
        use_url(bpy, addon, server.client.url, server.client.token)
        assert bpy.ops.mono2mesh.check_mask_model(wait=True) == {"FINISHED"}
        assert not addon.masks.state.status["available"]  # nothing is downloaded by a check
        # the backend fetched the mirror's file, found the wrong checksum and kept nothing
        with pytest.raises(RuntimeError, match=r"502 .*checksum mismatch"):
            bpy.ops.mono2mesh.download_mask_model(wait=True)
        assert not list(home.rglob("*.onnx")) and not addon.masks.state.busy
        labels = box_texts(bpy, addon).texts("label")
        assert any("checksum mismatch" in text for text in labels)
        assert "Not installed: u2netp" in labels  # the last status is still shown
        # a name the backend does not know: its 400 and reason
        with pytest.raises(RuntimeError, match=r"400 .*unknown mask model 'tiny'"):
            bpy.ops.mono2mesh.download_mask_model(wait=True, name="tiny")
        # a model in the cache folder (as a successful download leaves it): reported available
        cached = home / "models" / "mask"  # backend.paths.mask_model_dir() under MONO2MESH_HOME
        cached.mkdir(parents=True, exist_ok=True)  # the failed download made the folder
        (cached / "u2netp.onnx").write_bytes(tiny_onnx.read_bytes())
        assert bpy.ops.mono2mesh.check_mask_model(wait=True) == {"FINISHED"}
        status = addon.masks.state.status
        assert status["available"] and Path(status["path"]) == cached / "u2netp.onnx"
        assert not addon.masks.state.error
        labels = box_texts(bpy, addon).texts("label")
        assert "Available: u2netp" in labels and f"File: {cached / 'u2netp.onnx'}" in labels
    finally:
        server.stop()


def test_check_waits_for_a_starting_local_backend(
    blender: ModuleType, addon: ModuleType, scene: Any, tmp_path: Path
) -> None:
    """LOCAL mode without a running backend: Check launches it and returns; a backend that exits at
    start-up ends the wait with a message in the box."""
    bpy = blender
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'No module named backend' >&2\nexit 3\n")
    fake.chmod(0o755)
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    prefs.backend_mode, prefs.python_path = "LOCAL", str(fake)
    addon.masks.reset()
    try:
        started = time.perf_counter()
        assert bpy.ops.mono2mesh.check_mask_model() == {"FINISHED"}
        assert time.perf_counter() - started < 1.0
        assert addon.masks.state.busy == "starting" and addon.session.backend_starting()
        assert box_texts(bpy, addon).texts("label")[1] == "Starting the backend…"
        deadline = time.monotonic() + 30
        while addon.session.poll_start() is not None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        labels = box_texts(bpy, addon).texts("label")
        assert "The backend did not start; see the Mono2Mesh panel's message" in labels
        assert not addon.masks.state.busy and "exited at start-up" in scene.mono2mesh.message
    finally:
        bpy.ops.mono2mesh.stop_backend()
        prefs.python_path = ""
