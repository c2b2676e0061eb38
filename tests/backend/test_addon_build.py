"""``backend.addon_build``: the extension zip's layout and Blender's validator on it."""

from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path

import pytest

from backend import addon_build

ROOT = Path(__file__).resolve().parents[2]


def _validator() -> list[str]:
    try:
        return addon_build.find_validator()
    except addon_build.BuildError as error:
        pytest.skip(str(error))


def _main(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    addon_build.add_arguments(parser)
    return addon_build.main(parser.parse_args(list(argv)))


def test_zip_layout(tmp_path: Path) -> None:
    archive = addon_build.build_zip(ROOT, tmp_path)
    assert archive.name == "mono2mesh-0.1.0.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "client.py" in names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    again = addon_build.build_zip(ROOT, tmp_path / "again")
    assert again.read_bytes() == archive.read_bytes()  # deterministic


def test_build_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _validator()
    assert _main("--out", str(tmp_path)) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mono2mesh-0.1.0.zip")


def test_validator_rejects_a_bad_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _validator()
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "blender_addon", source / "blender_addon", ignore=shutil.ignore_patterns("__pycache__")
    )
    manifest = (ROOT / "blender_manifest.toml").read_text()
    (source / "blender_manifest.toml").write_text(manifest.replace('backend"', 'backend."', 1))
    assert _main("--out", str(tmp_path / "out"), "--source", str(source)) == 1
    assert "tagline" in capsys.readouterr().err


def test_missing_validator_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main("--out", str(tmp_path), "--validator", str(tmp_path / "nope.py")) == 2
    assert "validator not found" in capsys.readouterr().err
