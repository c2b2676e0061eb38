"""Fixtures of the add-on tests (run in .venv-blender with ``--blender-env``).

- ``backend``: one real backend server for the session, started from the main environment with
  ``client.LocalBackend`` (``$MONO2MESH_BACKEND_PYTHON``, default ``.venv/bin/python``) and stopped at
  the end. Skips when that interpreter is missing. Its ``$MONO2MESH_HOME`` is ``backend_home``.
- ``backend_home``: the session server's data folder, empty at the start, so the user's installed
  checkpoints never change what the tests see. A test installs one as the backend's checkpoint
  writer does (``<home>/checkpoints/<method>/<name>.safetensors`` + ``.json``); the server looks
  there on every methods list and on a method's first job (see test_mesh_inversion_transfer_bpy.py).
- ``blender``: bpy with a temporary ``BLENDER_USER_RESOURCES``, the add-on zip built by
  ``backend.addon_build`` and installed through Blender's extension installer, enabled as
  ``bl_ext.user_default.mono2mesh``; preferences point at ``backend`` (URL mode).
- ``scene``: an empty scene per test (``read_homefile(use_empty=True)`` keeps the add-on enabled).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.blender_addon.helpers import MAIN_PYTHON, REPO, load_client, write_png

PACKAGE = "bl_ext.user_default.mono2mesh"


@pytest.fixture(scope="session")
def client_module() -> ModuleType:
    return load_client()


@pytest.fixture(scope="session")
def backend_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backend_home")


@pytest.fixture(scope="session")
def backend(
    tmp_path_factory: pytest.TempPathFactory, client_module: ModuleType, backend_home: Path
) -> Iterator[Any]:
    if not MAIN_PYTHON.is_file():
        pytest.skip(f"the backend's Python {MAIN_PYTHON} is missing (set MONO2MESH_BACKEND_PYTHON)")
    folder = tmp_path_factory.mktemp("backend")
    server = client_module.LocalBackend(
        MAIN_PYTHON,
        folder / "server.json",
        folder / "server.log",
        jobs_dir=folder / "jobs",
        env={**os.environ, "MONO2MESH_HOME": str(backend_home)},
    )
    server.start(timeout=120)
    # a fresh server's first methods list takes seconds (it imports the methods); the add-on fetches
    # it on a worker, so a click right after start would not see its job tracked yet: warm it here
    server.client.methods()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_png(tmp_path_factory.mktemp("photos") / "disk_photo.png")


@pytest.fixture(scope="session")
def blender(tmp_path_factory: pytest.TempPathFactory, backend: Any) -> ModuleType:
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp_path_factory.mktemp("blender_user"))
    import bpy

    from backend.addon_build import build_zip

    archive = build_zip(REPO, tmp_path_factory.mktemp("zip"))
    result = bpy.ops.extensions.package_install_files(
        filepath=str(archive), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    assert PACKAGE in bpy.context.preferences.addons
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.backend_mode = "URL"
    prefs.url = backend.client.url
    prefs.token = backend.client.token
    prefs.output_dir = str(tmp_path_factory.mktemp("outputs"))
    return bpy


@pytest.fixture
def addon(blender: ModuleType) -> ModuleType:
    """The installed add-on package (its modules: client, session, importer, ...)."""
    import importlib

    return importlib.import_module(PACKAGE)


@pytest.fixture
def scene(blender: ModuleType, addon: ModuleType, backend: Any) -> Iterator[Any]:
    bpy = blender
    bpy.ops.wm.read_homefile(use_empty=True)
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.backend_mode = "URL"
    prefs.url = backend.client.url
    prefs.token = backend.client.token
    yield bpy.context.scene
    addon.session.jobs.clear()
