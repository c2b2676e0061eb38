"""``mono2mesh reconstruct`` and ``mono2mesh methods`` through the real console script and ``main``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.reconstruct_command import parse_option_pairs

FAST = ["-o", "iterations=10", "-o", "resolution=32", "-o", "crop_size=64", "-o", "texture_size=16"]


def write_disc(path: Path) -> Path:
    yy, xx = np.mgrid[:64, :80]
    inside = (xx - 40) ** 2 + (yy - 32) ** 2 < 20**2
    rgba = np.zeros((64, 80, 4), np.uint8)
    rgba[inside] = (200, 50, 50, 255)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_console_script_writes_every_file_and_fails_only_the_bad_image(tmp_path: Path) -> None:
    good = write_disc(tmp_path / "disc.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    script = shutil.which("mono2mesh", path=str(Path(sys.executable).parent))
    assert script is not None
    run = subprocess.run(
        [
            script,
            "reconstruct",
            str(tmp_path / "bad.png"),
            str(good),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert "bad.png: failed:" in run.stderr and "1 of 2 images failed" in run.stderr
    assert "disc.glb" in run.stdout
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        [
            "disc.glb",
            "disc.obj",
            "disc.mtl",
            "disc_texture.png",
            "disc_preview.png",
            "disc_mask.png",
            "disc.json",
        ]
    )
    report = json.loads((tmp_path / "out" / "disc.json").read_text())
    assert report["options"]["iterations"] == 10 and report["photo"]["mask_source"] == "alpha"


def test_same_stems_do_not_overwrite(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = write_disc(tmp_path / "a" / "x.png"), write_disc(tmp_path / "b" / "x.png")
    assert (
        main(["reconstruct", str(first), str(second), "--out", str(tmp_path / "out"), "--quiet", *FAST]) == 0
    )
    assert (tmp_path / "out" / "x.glb").exists() and (tmp_path / "out" / "x_2.glb").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "nonsense=1"], "nonsense"),
        (["--method", "nope"], "unknown method"),
        (["--mask", "m1.png", "--mask", "m2.png"], "1 images but 2 masks"),
        (["-o", "iterations"], "KEY=VALUE"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    image = write_disc(tmp_path / "disc.png")
    assert main(["reconstruct", str(image), "--out", str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_parse_option_pairs_reads_json_values() -> None:
    assert parse_option_pairs(["iterations=5", "sigma=1e-3", "name=abc", "flag=true"]) == {
        "iterations": 5,
        "sigma": 1e-3,
        "name": "abc",
        "flag": True,
    }


def test_methods_lists_fit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info[0]["name"] == "fit" and info[0]["available"]
    assert main(["methods", "--options"]) == 0
    text = capsys.readouterr().out
    assert "fit" in text and "-o iterations=200" in text


def test_methods_options_show_each_numeric_range(capsys: pytest.CaptureFixture[str]) -> None:
    """``methods --options`` prints the finite range the schema states beside every numeric option."""
    assert main(["methods", "--options"]) == 0
    lines = capsys.readouterr().out.splitlines()
    iterations = next(line for line in lines if "-o iterations=200" in line)
    assert "[0..20000]" in iterations
    seed = next(line for line in lines if "-o seed=" in line)
    assert "[0..2.14748e+09]" in seed
