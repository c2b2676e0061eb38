"""``mono2mesh bench reconstruct`` on a tiny generated photo: the report's shape and its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.bench.reconstruct import format_table
from backend.cli import main


def test_bench_reconstruct_reports_stage_timings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    yy, xx = np.mgrid[:64, :64]
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[(xx - 32) ** 2 + (yy - 30) ** 2 < 18**2] = (30, 200, 90, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "blob.png")
    options = ["-o", "iterations=8", "-o", "resolution=32", "-o", "crop_size=64", "-o", "texture_size=16"]
    assert (
        main(["bench", "reconstruct", str(tmp_path / "blob.png"), *options, "--repeats", "2", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "reconstruct" and report["method"] == "fit" and report["device"] == "cpu"
    assert report["options"]["iterations"] == 8 and report["repeats"] == 2
    (row,) = report["results"]
    assert row["image"] == "blob.png" and row["vertices"] == 642
    stages = row["timings_s"]
    assert set(stages) == {"mask", "shape", "texture", "export", "total"}
    assert all(value > 0 for value in stages.values())
    assert stages["total"] == pytest.approx(sum(v for k, v in stages.items() if k != "total"), abs=2e-3)
    assert stages["total"] <= row["wall_s"] + 1e-3 and report["mean_wall_s"] == row["wall_s"]
    assert report["machine"]["cpu_count"] >= 1
    assert "blob.png" in format_table(report)
