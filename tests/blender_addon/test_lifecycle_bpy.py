"""A local backend started from Blender does not outlive Blender: quitting stops it.

Two paths do it: Blender disables add-ons when it quits (``unregister`` -> ``session.shutdown``), and
``session`` registers ``stop_backend`` with ``atexit`` for exits that skip that; the test fails when
both are removed.

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
archive, python = sys.argv[1], sys.argv[2]
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
print(json.dumps({"pid": local.pid, "alive": local.is_alive(), "state": str(local.state_file)}), flush=True)
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


def test_quitting_blender_stops_the_backend_it_started(tmp_path: Path) -> None:
    if not MAIN_PYTHON.is_file():
        pytest.skip("no backend Python")
    from backend.addon_build import build_zip

    archive = build_zip(REPO, tmp_path / "zip")
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    result = subprocess.run(
        [sys.executable, "-c", SESSION, str(archive), str(MAIN_PYTHON)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    started = json.loads(result.stdout.strip().splitlines()[-1])
    assert started["alive"], result.stdout
    deadline = time.monotonic() + 15
    while _alive(started["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(started["pid"]), "the backend outlived the Blender session that started it"
    assert not Path(started["state"]).exists()  # the server removed its state file on SIGTERM
