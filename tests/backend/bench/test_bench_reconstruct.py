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


def test_bench_reconstruct_runs_a_checkpointed_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--checkpoint`` reaches the method: mesh-inversion with a tiny generator, none installed."""
    from tests.backend.methods.test_mesh_inversion import generated_photo, tiny_generator, write_checkpoint

    monkeypatch.setenv("MONO2MESH_HOME", str(tmp_path / "home"))  # nothing installed
    generator = tiny_generator()
    checkpoint = write_checkpoint(tmp_path / "tiny", generator)
    image, mask, _, _ = generated_photo(generator, size=64)
    rgba = np.concatenate([image, mask[..., None].astype(np.float32)], axis=-1)
    Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(tmp_path / "sample.png")
    options = [f"-o{pair}" for pair in ("random_z=2", "stages=1", "stage_iterations=2", "pose_iterations=4",
                                         "crop_size=64", "texture_points=256", "cpu_threads=1")]  # fmt: skip
    argv = ["bench", "reconstruct", str(tmp_path / "sample.png"), "--method", "mesh-inversion", *options]
    assert main([*argv, "--json"]) == 2  # no checkpoint installed, none given: a clear error, no traceback
    assert "no mesh-inversion checkpoint installed" in capsys.readouterr().err
    assert main([*argv, "--checkpoint", str(checkpoint), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["results"]
    assert report["method"] == "mesh-inversion" and row["checkpoint"] == checkpoint.name
    assert row["vertices"] == 482 and {"pose", "z_search", "stage_1"} <= set(row["timings_s"])
