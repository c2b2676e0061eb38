"""A local backend started from Blender does not outlive Blender: quitting stops it.

Two paths do it: Blender disables add-ons when it quits (``unregister`` -> ``session.shutdown``), and
``session`` registers a handler with ``atexit`` for exits that skip that; the test fails when both are
removed. Neither waits for the process: it gets SIGTERM at once and a daemon thread kills it if it
lingers; at interpreter exit ``client.reap_at_exit`` gives it a short grace and leaves a detached
killer behind for one still running. Quitting returns at once (measured: from the session's last
line to the end of its process), also right after Stop Backend.

The Blender session is a separate Python process with the bpy module (the add-on installed from the
built zip, preferences in LOCAL mode); it starts the backend the way the UI does (Start Backend, then
the start timer's function) and exits without pressing Stop Backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.blender_addon.helpers import MAIN_PYTHON, REPO

SESSION = """
import json, sys, time
import bpy
archive, python, mode = sys.argv[1], sys.argv[2], sys.argv[3]
assert bpy.ops.extensions.package_install_files(
    filepath=archive, repo="user_default", enable_on_install=True
) == {"FINISHED"}
package = "bl_ext.user_default.mono2mesh"
prefs = bpy.context.preferences.addons[package].preferences
prefs.backend_mode, prefs.python_path = "LOCAL", python
session = sys.modules[package + ".session"]
assert bpy.ops.mono2mesh.start_backend() == {"FINISHED"}
deadline = time.monotonic() + 120
while session.poll_start() is not None and time.monotonic() < deadline:
    time.sleep(0.1)
local = session.local_backend()
pid, alive, state = local.pid, local.is_alive(), str(local.state_file)
if mode == "stop":  # Stop Backend, then quit at once
    started = time.perf_counter()
    bpy.ops.mono2mesh.stop_backend()
    assert time.perf_counter() - started < 0.5
print(json.dumps({"pid": pid, "alive": alive, "state": state, "exiting": time.time()}), flush=True)
"""  # then the interpreter exits normally: Blender quitting


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent, which is gone) counts as stopped
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["quit", "stop"])
def test_quitting_blender_stops_the_backend_it_started(tmp_path: Path, mode: str) -> None:
    if not MAIN_PYTHON.is_file():
        pytest.skip("no backend Python")
    from backend.addon_build import build_zip

    archive = build_zip(REPO, tmp_path / "zip")
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    result = subprocess.run(
        [sys.executable, "-c", SESSION, str(archive), str(MAIN_PYTHON), mode],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    quit_seconds = time.time() - json.loads(result.stdout.strip().splitlines()[-1])["exiting"]
    assert result.returncode == 0, result.stdout + result.stderr
    started = json.loads(result.stdout.strip().splitlines()[-1])
    assert started["alive"], result.stdout
    print(f"quitting took {quit_seconds:.2f} s")
    assert quit_seconds < 1.5, f"quitting blocked {quit_seconds:.2f} s"
    deadline = time.monotonic() + 15
    while _alive(started["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(started["pid"]), "the backend outlived the Blender session that started it"
    assert not Path(started["state"]).exists()  # the server removed its state file on SIGTERM
