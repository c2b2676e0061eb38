"""Test selection by environment.

The main environment (.venv: torch, numpy >= 2) runs everything except the tests that need Blender's
``bpy``; the Blender environment (.venv-blender: bpy, numpy < 2, no torch) runs only those, with
``--blender-env``. A test needs bpy when its file ends in ``_bpy.py`` or lives under
``tests/blender_addon``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--blender-env", action="store_true", help="run only the tests that need bpy")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix != ".py" or collection_path.name == "conftest.py":
        return None
    needs_bpy = collection_path.name.endswith("_bpy.py") or "blender_addon" in collection_path.parts
    return needs_bpy != bool(config.getoption("--blender-env"))
