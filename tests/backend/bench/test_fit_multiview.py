"""Tests for backend.bench.fit_multiview on SoftRas's real 120-view airplane data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.bench import fit_multiview as bench
from backend.config_cli import config_from_args
from backend.fitting.multiview import MultiViewOptions

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "multiview"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real test data not found at {DATA}")

TINY = MultiViewOptions(steps=3, views_per_step=4, levels=(2,), subdivide_at=())
"""A fit of a fraction of a second: enough to exercise the report, not to fit."""


def test_load_mirrors_and_thresholds_the_alpha_channel() -> None:
    silhouettes, camera = bench.load_softras_multiview(DATA)
    raw = np.load(DATA / "source.npy")  # (120, 4, 64, 64) uint8 RGBA
    assert silhouettes.shape == (120, 64, 64) and silhouettes.dtype == torch.float32
    assert set(torch.unique(silhouettes).tolist()) == {0.0, 1.0}
    expected = torch.from_numpy(raw[:, 3, :, ::-1].copy() > 127.5).float()  # alpha > 0.5, width mirrored
    assert torch.equal(silhouettes, expected)
    assert not torch.equal(silhouettes, expected.flip(-1))  # the views are not left-right symmetric
    soft, _ = bench.load_softras_multiview(DATA, binarize=False)
    assert torch.allclose(soft, torch.from_numpy(raw[:, 3, :, ::-1] / 255.0).float())
    assert camera.kind == "look_at" and camera.batch_size == 120
    cameras = np.load(DATA / "camera.npy")
    assert torch.allclose(camera.orbit.elevation, torch.from_numpy(cameras[:, 1]).float())
    assert torch.allclose(camera.orbit.azimuth, torch.from_numpy(cameras[:, 2]).float())
    assert torch.allclose(camera.orbit.distance, torch.full((120,), 2.732))
    assert torch.allclose(camera.orbit.viewing_angle, torch.full((120,), 15.0))


def test_load_explains_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"source\.npy"):
        bench.load_softras_multiview(tmp_path)


def test_softras_result_reproduces_its_known_iou() -> None:
    silhouettes, camera = bench.load_softras_multiview(DATA)
    mesh = bench.load_obj(DATA / bench.SOFTRAS_RESULT)
    iou = bench.silhouette_ious(mesh.vertices, mesh.faces, silhouettes, camera)
    assert iou.shape == (120,)
    assert float(iou.mean()) == pytest.approx(0.779, abs=0.005)
    assert float(iou.min()) == pytest.approx(0.621, abs=0.01)


def test_run_reports_ours_beside_softras(tmp_path: Path) -> None:
    out = tmp_path / "fit.obj"
    report = bench.run(DATA, TINY, out_obj=out)
    json.dumps(report)  # JSON-ready
    assert report["views"] == 120 and report["image_size"] == 64
    ours, softras = report["ours"], report["softras"]
    assert len(ours["per_view_iou"]) == 120
    assert ours["min_iou"] <= ours["median_iou"] <= ours["mean_iou"] + 0.5
    assert ours["vertices"] == 162 and ours["seconds"] > 0
    assert softras["mean_iou"] == pytest.approx(0.779, abs=0.005)
    assert softras["vertices"] == 1352
    assert report["options"]["steps"] == 3 and report["machine"]["cpu_threads"] >= 1
    assert out.is_file() and bench.load_obj(out).num_vertices == 162
    table = bench.format_table(report)
    assert "softras  0.779" in table and "ours" in table


def test_main_prints_json_and_explains_missing_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    defaults = config_from_args(bench.FitMultiViewBenchOptions, parser.parse_args([]))
    assert defaults.data == Path("../shared/data/multiview") and defaults.steps == MultiViewOptions().steps
    assert bench.main(parser.parse_args(["--steps", "many"])) == 2
    assert "steps: Input should be a valid integer" in capsys.readouterr().err
    assert bench.main(parser.parse_args(["--data", str(tmp_path)])) == 2
    assert "no SoftRas multi-view data" in capsys.readouterr().err
    # Run the command with the tiny fit (the command itself only sets steps and seed).
    monkeypatch.setattr(bench, "MultiViewOptions", lambda steps, seed: TINY)
    assert bench.main(parser.parse_args(["--data", str(DATA), "--steps", "3", "--json"])) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "fit-multiview" and "softras" in report
