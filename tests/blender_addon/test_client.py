"""``blender_addon/client.py`` on its own, without Blender, against a real backend process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.blender_addon.helpers import FAST_OPTIONS, MAIN_PYTHON, REPO


def test_client_never_imports_bpy() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('c', {str(REPO / 'blender_addon' / 'client.py')!r})\n"
        "module = sys.modules['c'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert 'bpy' not in sys.modules, 'client.py imported bpy'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_multipart_encoding(client_module: ModuleType) -> None:
    upload = client_module.Upload("image", 'we"ird.png', b"\x89PNG..", "image/png")
    body, content_type = client_module.encode_multipart({"method": "fit"}, [upload])
    boundary = content_type.split("boundary=")[1]
    assert body.endswith(f"--{boundary}--\r\n".encode())
    assert b'name="method"\r\n\r\nfit\r\n' in body
    assert b'filename="we\\"ird.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG..\r\n' in body


def test_bad_url_is_a_clear_error(client_module: ModuleType) -> None:
    with pytest.raises(client_module.BackendError, match="must look like"):
        client_module.BackendClient("127.0.0.1:8765")


def test_health_and_methods(backend: Any) -> None:
    client = backend.client
    health = client.health()
    assert health["status"] == "ok" and isinstance(health["ready"], bool)
    methods = {method["name"]: method for method in client.methods()}
    assert methods["fit"]["available"] and "iterations" in methods["fit"]["options_schema"]["properties"]
    for method in methods.values():  # unavailable methods say why
        assert method["available"] or method["reason"]


def test_submit_wait_download(backend: Any, photo: Path, tmp_path: Path, client_module: ModuleType) -> None:
    client = backend.client
    job = client.submit(photo, method="fit", options=FAST_OPTIONS)
    assert job["status"] in ("queued", "running") and job["image_name"] == photo.name
    seen: list[float] = []
    done = client.wait(job["id"], timeout=120, on_progress=lambda j: seen.append(j["progress"]))
    assert done["status"] == "succeeded" and seen[-1] == 1.0
    assert seen == sorted(seen)
    glb = client.download(job["id"], "glb", tmp_path / "r.glb")
    assert glb.read_bytes()[:4] == b"glTF"
    report = client.report(job["id"])
    assert report["template"] == "icosphere-642" and 0 < report["silhouette_iou"] <= 1
    with pytest.raises(ValueError):
        client.download(job["id"], "nonsense", tmp_path / "x")


def test_errors_carry_the_backend_detail(backend: Any, photo: Path, client_module: ModuleType) -> None:
    client = backend.client
    with pytest.raises(client_module.BackendHTTPError) as caught:
        client.submit(photo, method="no-such-method")
    assert caught.value.status == 400 and "no-such-method" in caught.value.detail
    with pytest.raises(client_module.BackendHTTPError) as caught:
        client.job("0123456789abcdef0123456789abcdef")
    assert caught.value.status == 404
    wrong = client_module.BackendClient(client.url, "wrong-token")
    with pytest.raises(client_module.BackendHTTPError) as caught:
        wrong.methods()
    assert caught.value.status == 401
    with pytest.raises(client_module.BackendError, match="Cannot read image"):
        client.submit(photo.with_name("missing.png"))


def test_cancel(backend: Any, photo: Path, client_module: ModuleType) -> None:
    client = backend.client
    job = client.submit(photo, method="fit", options={**FAST_OPTIONS, "iterations": 3000})
    client.cancel(job["id"])
    with pytest.raises(client_module.JobFailed, match="canceled"):
        client.wait(job["id"], timeout=60)


def test_nothing_listening_is_unavailable(client_module: ModuleType) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = client_module.BackendClient(f"http://127.0.0.1:{port}", "t", timeout=2)
    with pytest.raises(client_module.BackendUnavailable, match="not answering"):
        client.health()


def test_local_backend_missing_python(tmp_path: Path, client_module: ModuleType) -> None:
    local = client_module.LocalBackend(tmp_path / "nope" / "python", tmp_path / "s.json", tmp_path / "log")
    with pytest.raises(client_module.BackendStartError, match="Backend Python not found"):
        local.start(timeout=5)


def test_local_backend_exits_at_start(tmp_path: Path, client_module: ModuleType) -> None:
    # a Python without the backend: the process exits and the error quotes its log
    local = client_module.LocalBackend(
        sys.executable, tmp_path / "s.json", tmp_path / "log", module_args=("-m", "no_such_backend_module")
    )
    with pytest.raises(client_module.BackendStartError, match="exited at start-up"):
        local.start(timeout=30)
    assert not local.is_alive()


def test_local_backend_killed_mid_job(tmp_path: Path, photo: Path, client_module: ModuleType) -> None:
    if not MAIN_PYTHON.is_file():
        pytest.skip("no backend Python")
    local = client_module.LocalBackend(
        MAIN_PYTHON,
        tmp_path / "s.json",
        tmp_path / "log",
        jobs_dir=tmp_path / "jobs",
    )
    client = local.start(timeout=120)
    try:
        state = json.loads((tmp_path / "s.json").read_text())
        assert state["pid"] == local.pid and (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600
        # a second LocalBackend on the same state file adopts the running server instead of starting one
        again = client_module.LocalBackend(MAIN_PYTHON, tmp_path / "s.json", tmp_path / "log2")
        assert again.start(timeout=5).url == client.url and again.process is None
        job = client.submit(photo, options={**FAST_OPTIONS, "iterations": 3000})
        local.process.kill()
        started = time.monotonic()
        with pytest.raises(client_module.BackendUnavailable):
            client.wait(job["id"], timeout=60, is_alive=local.is_alive)
        assert time.monotonic() - started < 10
    finally:
        local.stop()
    assert not local.is_alive()


def _timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _wait_gone(pid: int, timeout: float) -> float:
    """Seconds until ``pid`` is gone (or a zombie: exited, not reaped yet)."""
    started = time.monotonic()
    while True:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except (ProcessLookupError, OSError):
            break
        if state == "Z":
            break
        assert time.monotonic() - started < timeout, f"process {pid} still runs"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_backend_that_ignores_sigterm_is_killed(tmp_path: Path, client_module: ModuleType) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    local = client_module.LocalBackend(sys.executable, tmp_path / "s.json", tmp_path / "s.log")
    local.process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert local.process.stdout.readline() == b"ready\n"  # SIGTERM is ignored from now on
    pid = local.pid = local.process.pid
    _none, took = _timed(lambda: local.stop(timeout=1.0, wait=False))
    assert took < 0.5
    assert pid in client_module.stopping_pids()
    assert 0.9 < _wait_gone(pid, timeout=5) < 3.0  # SIGKILL after the timeout
    deadline = time.monotonic() + 2
    while pid in client_module.stopping_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid not in client_module.stopping_pids()


def test_reap_at_exit_leaves_a_killer_for_a_lingering_backend(
    tmp_path: Path, client_module: ModuleType
) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    local = client_module.LocalBackend(sys.executable, tmp_path / "s.json", tmp_path / "s.log")
    local.process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    assert local.process.stdout.readline() == b"ready\n"
    pid = local.pid = local.process.pid
    local.stop(timeout=60.0, wait=False)  # the reaper thread would wait a minute
    _none, took = _timed(lambda: client_module.reap_at_exit(grace=0.2, kill_after=0.5))
    assert took < 0.5  # what interpreter exit waits
    assert _wait_gone(pid, timeout=5) < 3.0  # the detached killer got it
