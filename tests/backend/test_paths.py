"""The shared data folder: ``$MONO2MESH_HOME``, else ``~/.local/share/mono2mesh``, read on every call."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.paths import HOME_ENV, data_dir


def test_data_dir_follows_mono2mesh_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    assert HOME_ENV == "MONO2MESH_HOME"
    assert data_dir() == tmp_path
    monkeypatch.setenv(HOME_ENV, "")
    assert data_dir() == Path.home() / ".local" / "share" / "mono2mesh"
    monkeypatch.delenv(HOME_ENV)
    assert data_dir() == Path.home() / ".local" / "share" / "mono2mesh"


def test_data_dir_expands_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, "~/mono2mesh-data")
    assert data_dir() == Path.home() / "mono2mesh-data"
