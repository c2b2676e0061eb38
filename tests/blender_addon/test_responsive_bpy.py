"""No freezes, no stale jobs: every click and timer call returns within ``LIMIT`` seconds.

Measured with ``time.perf_counter`` around operator calls and the timers' functions
(``session.poll_once``, ``session.poll_start``, called directly as in the other tests): Reconstruct
with a 4000x3000 photo (the upload runs on a worker), Stop Backend and ``session.shutdown`` of a real
local backend (the process is stopped by a daemon thread), and clicks against a backend that accepts
connections and never answers (one short timeout, then every click answers at once). A .blend saved
while a job ran reopens with Reconstruct enabled (the ``load_post`` handler).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import FAST_OPTIONS, MAIN_PYTHON

LIMIT = 0.5  # seconds a click or a timer call may take


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def poll_until(addon: ModuleType, done: Callable[[], bool], timeout: float = 60.0) -> list[float]:
    """Call ``poll_once`` (what the timer would) until ``done()``; the duration of every call."""
    durations = []
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        durations.append(timed(addon.session.poll_once)[1])
        time.sleep(0.05)
    return durations


def write_large_png(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A photo-sized PNG: a red-over-blue disk on grey, with noise so it does not compress away."""
    y, x = np.mgrid[0:height, 0:width]
    inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 <= (0.32 * min(width, height)) ** 2
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = (225, 225, 220)
    rgb[inside & (y < height / 2)] = (200, 30, 30)
    rgb[inside & (y >= height / 2)] = (30, 40, 200)
    noise = np.random.default_rng(0).integers(0, 12, size=rgb.shape, dtype=np.uint8)
    rgb = np.clip(rgb.astype(np.int16) + noise - 6, 0, 255).astype(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, -1)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 1))
        + chunk(b"IEND", b"")
    )
    return path


class SilentServer:
    """A TCP server that accepts connections and never replies (a hung backend) until ``answer``
    is set: then it answers every request with a healthy ``/v1/health`` JSON."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer = threading.Event()
        self.closed = False
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                connection, _address = self.sock.accept()
            except OSError:
                return
            if not self.answer.is_set():
                self.held.append(connection)  # accepted, never answered
                continue
            body = b'{"status": "ok", "version": "silent", "ready": true}'
            try:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
            except OSError:
                pass
            connection.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def silent(blender: ModuleType, addon: ModuleType, scene: Any) -> Iterator[SilentServer]:
    server = SilentServer()
    prefs = blender.context.preferences.addons[addon.__name__].preferences
    prefs.url = server.url
    yield server
    server.close()
    with addon.session._unanswered_lock:
        addon.session._unanswered.pop(server.url, None)


@pytest.fixture
def local_mode(blender: ModuleType, addon: ModuleType, scene: Any) -> Iterator[Any]:
    if not MAIN_PYTHON.is_file():
        pytest.skip("no backend Python")
    prefs = blender.context.preferences.addons[addon.__name__].preferences
    prefs.backend_mode = "LOCAL"
    prefs.python_path = str(MAIN_PYTHON)
    yield prefs
    blender.ops.mono2mesh.stop_backend()
    addon.session.jobs.clear()


def start_local(bpy: ModuleType, addon: ModuleType) -> Any:
    """Start Backend, then the start timer's function until it is done (every call timed)."""
    _result, took = timed(bpy.ops.mono2mesh.start_backend)
    assert took < LIMIT, f"Start Backend blocked {took:.2f} s"
    deadline = time.monotonic() + 120
    while True:
        interval, took = timed(addon.session.poll_start)
        assert took < LIMIT, f"poll_start blocked {took:.2f} s"
        if interval is None:
            break
        assert time.monotonic() < deadline, "the backend did not start"
        time.sleep(0.1)
    local = addon.session.local_backend()
    assert local is not None and local.is_alive(), bpy.context.scene.mono2mesh.message
    return local


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie counts as stopped
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def wait_gone(pid: int, timeout: float = 15.0) -> float:
    started = time.monotonic()
    while not gone(pid):
        assert time.monotonic() - started < timeout, f"process {pid} still runs"
        time.sleep(0.05)
    return time.monotonic() - started


# -- stale jobs ----------------------------------------------------------------------------------
def test_file_saved_during_a_job_reopens_without_a_stale_job(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, tmp_path: Path, backend: Any
) -> None:
    bpy = blender
    assert addon.session.on_load_post in bpy.app.handlers.load_post  # registered by register()
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps({**FAST_OPTIONS, "iterations": 3000})
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    poll_until(addon, lambda: settings.job_status == "running", timeout=30)
    job_id = settings.job_id
    assert settings.busy and not bpy.ops.mono2mesh.reconstruct.poll()
    blend = tmp_path / "during_job.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    try:
        addon.session.jobs.clear()  # a new Blender session: it does not track that job
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        settings = bpy.context.scene.mono2mesh
        assert settings.image_path == str(photo)  # the file did load
        assert not settings.busy and settings.job_status == "" and settings.job_progress == 0.0
        assert bpy.ops.mono2mesh.reconstruct.poll() and not bpy.ops.mono2mesh.cancel.poll()
        assert job_id in settings.message and "run it again" in settings.message
        assert addon.session.poll_once() is None  # nothing is polled for it
    finally:
        backend.client.cancel(job_id)


def test_reopening_the_same_file_keeps_a_job_this_session_polls(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, tmp_path: Path
) -> None:
    bpy = blender
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps(FAST_OPTIONS)
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    job_id = settings.job_id
    assert job_id in addon.session.jobs
    blend = tmp_path / "same.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    settings = bpy.context.scene.mono2mesh
    assert settings.job_id == job_id and job_id in addon.session.jobs  # still polled: re-attached
    durations = poll_until(addon, lambda: not addon.session.jobs)
    assert max(durations) < LIMIT
    assert settings.job_status == "succeeded", settings.message
    assert [obj.name for obj in bpy.data.objects] == ["disk_photo"]


# -- uploads -------------------------------------------------------------------------------------
def test_reconstruct_with_a_large_photo_does_not_block(
    blender: ModuleType, addon: ModuleType, scene: Any, tmp_path: Path, backend: Any
) -> None:
    bpy = blender
    photo = write_large_png(tmp_path / "large_photo.png")
    assert photo.stat().st_size > 10_000_000
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps(FAST_OPTIONS)
    result, took = timed(bpy.ops.mono2mesh.reconstruct)
    print(f"Reconstruct with a {photo.stat().st_size / 1e6:.0f} MB photo returned in {took:.3f} s")
    assert result == {"FINISHED"} and took < LIMIT, f"Reconstruct blocked {took:.2f} s"
    assert settings.busy and not bpy.ops.mono2mesh.reconstruct.poll()  # no second submission
    durations = poll_until(addon, lambda: bool(settings.job_id) or not settings.busy)
    print(f"poll_once while uploading: {len(durations)} calls, longest {max(durations, default=0):.3f} s")
    assert max(durations, default=0.0) < LIMIT
    assert settings.job_id in addon.session.jobs, settings.message  # sent and tracked
    _result, took = timed(bpy.ops.mono2mesh.cancel)
    assert took < LIMIT and not settings.busy


def test_cancel_during_the_upload_cancels_the_sent_job(
    blender: ModuleType, addon: ModuleType, scene: Any, tmp_path: Path, backend: Any
) -> None:
    bpy = blender
    photo = write_large_png(tmp_path / "large_photo.png")
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps(FAST_OPTIONS)
    assert bpy.ops.mono2mesh.reconstruct() == {"FINISHED"}
    if settings.job_id:
        pytest.skip("the upload finished within the click's short wait")
    assert settings.job_status == "starting" and settings.job_stage == "upload"
    assert bpy.ops.mono2mesh.cancel() == {"FINISHED"}
    assert settings.job_status == "canceled" and not settings.busy
    poll_until(addon, lambda: not addon.session.tasks_pending(), timeout=60)
    assert not settings.job_id and not addon.session.jobs and len(bpy.data.objects) == 0
    assert settings.job_status == "canceled"


# -- stopping the backend ------------------------------------------------------------------------
def test_stop_backend_and_shutdown_return_at_once(
    blender: ModuleType, addon: ModuleType, scene: Any, local_mode: Any
) -> None:
    bpy = blender
    local = start_local(bpy, addon)
    pid, state_file = local.pid, Path(local.state_file)
    result, took = timed(bpy.ops.mono2mesh.stop_backend)
    print(f"Stop Backend returned in {took:.3f} s")
    assert result == {"FINISHED"} and took < LIMIT, f"Stop Backend blocked {took:.2f} s"
    assert addon.session.local_backend() is None
    exited = wait_gone(pid)  # stopped by the daemon thread
    print(f"the backend exited {exited:.2f} s later")
    # starting again at once works: the launch waits (without blocking) for the old server to go
    local = start_local(bpy, addon)
    assert local.pid != pid
    pid = local.pid
    _none, took = timed(addon.session.shutdown)
    print(f"session.shutdown returned in {took:.3f} s")
    assert took < LIMIT, f"shutdown blocked {took:.2f} s"
    wait_gone(pid)
    deadline = time.monotonic() + 5
    while state_file.exists() and time.monotonic() < deadline:  # the server removes it on SIGTERM
        time.sleep(0.05)
    assert not state_file.exists()


# -- a backend that does not answer --------------------------------------------------------------
def test_unanswering_backend_costs_one_short_timeout(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, silent: SilentServer
) -> None:
    bpy = blender
    session = addon.session
    settings = scene.mono2mesh
    settings.image_path = str(photo)
    settings.extra_options = json.dumps(FAST_OPTIONS)
    saved = list(session.methods())
    session._methods.clear()
    try:
        # the first click returns at once; the submission fails after one short health timeout
        result, took = timed(bpy.ops.mono2mesh.reconstruct)
        assert result == {"FINISHED"} and took < LIMIT, f"Reconstruct blocked {took:.2f} s"
        assert settings.busy
        started = time.monotonic()
        durations = poll_until(addon, lambda: not settings.busy, timeout=20)
        failed_after = time.monotonic() - started
        longest = max(durations)
        print(f"first click: {took:.3f} s, failed {failed_after:.2f} s later, longest poll {longest:.3f} s")
        assert max(durations) < LIMIT
        assert failed_after < session.HEALTH_TIMEOUT + 1.5
        assert settings.job_status == "failed" and "not answering" in settings.message
        assert session.backend_unanswered(silent.url)
        # every next click answers at once with the remembered failure
        for operator in (bpy.ops.mono2mesh.reconstruct, bpy.ops.mono2mesh.start_backend):
            started_click = time.perf_counter()
            with pytest.raises(RuntimeError, match="not answering since"):
                operator()
            took = time.perf_counter() - started_click
            print(f"{operator.idname_py()} against the silent backend: {took:.3f} s")
            assert took < LIMIT
        assert "not answering since" in settings.message and not settings.busy
        # a job of that backend is polled without blocking
        job = session.ActiveJob(
            job_id="silentjob",
            kind="reconstruct",
            scene_name=scene.name,
            name="x",
            image_path=str(photo),
            output_dir=Path(session.output_root()) / "silent",
            method="fit",
            client=session.get_client(start=False),
        )
        settings.job_id, settings.job_status = job.job_id, "running"
        session.track(job)
        for _ in range(6):
            _interval, took = timed(session.poll_once)
            assert took < LIMIT, f"poll_once blocked {took:.2f} s"
            time.sleep(0.05)
        _result, took = timed(bpy.ops.mono2mesh.cancel)
        assert took < LIMIT and not settings.busy
        # once it answers again, a background health check clears the failure
        silent.answer.set()
        deadline = time.monotonic() + session.RECHECK_INTERVAL + 5
        while session.backend_unanswered(silent.url):
            assert time.monotonic() < deadline, "the health check did not clear the failure"
            time.sleep(0.1)
    finally:
        session._methods[:] = saved
        session.jobs.clear()
