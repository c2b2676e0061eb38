"""Test selection by environment.

The main environment (.venv: torch, numpy >= 2) runs everything except the tests that need Blender's
``bpy``; the Blender environment (.venv-blender: bpy, numpy < 2, no torch) runs only those, with
``--blender-env``. A test needs bpy when its file ends in ``_bpy.py`` or lives under
``tests/blender_addon``.

Every test session gets its own empty data folder (``MONO2MESH_HOME``) and no ``MONO2MESH_MASK_MODEL``:
checkpoints or a mask model installed on the developer's machine must not change what the tests see
(a downloaded mask model would turn the expected GrabCut masks into the model's).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    os.environ["MONO2MESH_HOME"] = tempfile.mkdtemp(prefix="mono2mesh-tests-home-")
    os.environ.pop("MONO2MESH_MASK_MODEL", None)


@pytest.fixture
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh, not yet created data folder (``$MONO2MESH_HOME``) for one test, and no
    ``$MONO2MESH_MASK_MODEL``: nothing another test installed is seen."""
    home = tmp_path / "home"
    monkeypatch.setenv("MONO2MESH_HOME", str(home))
    monkeypatch.delenv("MONO2MESH_MASK_MODEL", raising=False)
    return home


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--blender-env", action="store_true", help="run only the tests that need bpy")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix != ".py" or collection_path.name == "conftest.py":
        return None
    needs_bpy = collection_path.name.endswith("_bpy.py") or "blender_addon" in collection_path.parts
    return needs_bpy != bool(config.getoption("--blender-env"))
