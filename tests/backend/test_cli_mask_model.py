"""``mono2mesh mask-model status|download`` and ``mono2mesh reconstruct --mask-model`` through ``main``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.paths import mask_model_dir
from tests.backend.imaging.tiny_onnx import channel_model, write

ROOT = Path(__file__).resolve().parents[2]
FAST = ["-o", "iterations=5", "-o", "resolution=32", "-o", "crop_size=64", "-o", "texture_size=16"]


pytestmark = pytest.mark.usefixtures("isolated_home")  # tests/conftest.py


def status(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    assert main(["mask-model", "status", *extra]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_status_and_download(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    before = status(capsys)
    assert before["available"] is False and before["path"] is None and before["name"] == "u2netp"
    assert before["searched"] == [str(mask_model_dir() / "*.onnx")]
    tiny = write(tmp_path / "mirror" / "u2netp.onnx", channel_model())

    # A known name keeps the registry's checksum: the tiny file is refused and nothing is kept.
    assert main(["mask-model", "download", "--url", tiny.as_uri()]) == 1
    captured = capsys.readouterr()
    assert "checksum mismatch" in captured.err and captured.out == ""
    assert not mask_model_dir().exists() or list(mask_model_dir().iterdir()) == []
    assert main(["mask-model", "download", "--name", "x/y", "--url", tiny.as_uri()]) == 2
    assert main(["mask-model", "download", "--name", "nope"]) == 2
    assert "unknown mask model 'nope'" in capsys.readouterr().err

    assert main(["mask-model", "download", "--name", "tiny", "--url", tiny.as_uri()]) == 0
    captured = capsys.readouterr()
    after = json.loads(captured.out)
    assert after["available"] is True and after["path"] == str(mask_model_dir() / "tiny.onnx")
    assert after["source"] == "cache" and after["name"] == "tiny" and "saved to" in captured.err
    assert status(capsys) == after
    explicit = status(capsys, "--mask-model", str(tmp_path / "gone.onnx"))
    assert explicit["available"] is False and "gone.onnx is missing" in str(explicit["reason"])


def test_reconstruct_uses_the_mask_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rgb = np.zeros((80, 96, 3), np.uint8)
    rgb[...] = (30, 200, 30)
    rgb[20:60, 30:70] = (220, 30, 30)
    Image.fromarray(rgb).save(tmp_path / "square.png")
    model = write(tmp_path / "reddish.onnx", channel_model())
    out = tmp_path / "out"
    argv = ["reconstruct", str(tmp_path / "square.png"), "--out", str(out), "--quiet", *FAST]
    assert main([*argv, "--mask-model", str(tmp_path / "gone.onnx")]) == 2
    assert "gone.onnx does not exist" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--mask-model", str(model)]) == 0
    photo = json.loads((out / "square.json").read_text())["photo"]
    assert photo["mask_source"] == "salient"
    assert photo["mask_model"] == {"name": "reddish", "path": str(model)}
    mask = np.asarray(Image.open(out / "square_mask.png")) > 127
    expected = np.zeros((80, 96), bool)
    expected[20:60, 30:70] = True
    assert (mask ^ expected).sum() <= 8  # the open/close rounds the four corners


def test_parsing_mask_model_commands_imports_nothing_heavy() -> None:
    code = """
import json, sys
import backend.cli
parser = backend.cli.build_parser()
parser.parse_args(["mask-model", "status"])
parser.parse_args(["mask-model", "download", "--name", "u2netp"])
parser.parse_args(["reconstruct", "a.jpg", "--out", "o", "--mask-model", "m.onnx"])
heavy = ("onnxruntime", "cv2", "torch", "backend.imaging")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(heavy))))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout) == []
