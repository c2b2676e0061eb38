"""``mono2mesh-train bench-effective-loss`` on a tiny setting: valid JSON, expected keys, positive times."""

from __future__ import annotations

import json

import pytest

from training.cli import main


def test_bench_effective_loss_prints_timings(capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--points", "300", "--views", "2", "--batch-size", "1", "--image-size", "32"]
    assert main(["bench-effective-loss", *options, "--repeats", "1", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "effective-loss" and report["device"] == "cpu"
    assert (report["points"], report["views"], report["batch_size"], report["image_size"]) == (300, 2, 1, 32)
    # the softras model's 642-vertex template and the icosphere closest to 300 vertices (162)
    assert report["meshes"] == {
        "softras_162": {"vertices": 162, "faces": 320},
        "softras_642": {"vertices": 642, "faces": 1280},
    }
    times = report["median_ms"]
    assert set(times) == {"effective", "effective_first_term", "distance_field", "softras_162", "softras_642"}
    assert all(value > 0 for value in times.values())
    assert set(report["ratios"]) == {
        f"softras_{v}_over_{reference}"
        for v in (162, 642)
        for reference in ("effective", "effective_first_term")
    }
    assert report["ratios"]["softras_642_over_effective"] == pytest.approx(
        times["softras_642"] / times["effective"], rel=1e-2
    )
    assert report["machine"]["cpu_count"] >= 1


def test_bench_effective_loss_rejects_a_zero_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench-effective-loss", "--points", "0"]) == 2
    assert "points: Input should be greater than 0" in capsys.readouterr().out


def test_bench_effective_loss_reports_the_new_and_the_reference_neighbour_paths(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = ["--points", "300", "--views", "2", "--batch-size", "1", "--image-size", "32", "--cutoff", "10"]
    assert main(["bench-effective-loss", *options, "--repeats", "1", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    times = report["median_ms"]
    assert {"effective", "effective_local", "effective_local_reference"} <= set(times)
    assert report["local_implementation"] == "torch"  # CPU: the PyTorch grid path
    check = report["local_check"]
    assert check["grad_max_abs"] > 0
    assert check["total_abs_difference"] <= 1e-6 * check["total"]
    assert check["grad_max_abs_difference"] <= 1e-3 * check["grad_max_abs"]  # float32, summed differently
    over = report["over_softras_642"]
    assert set(over) == {"effective", "effective_local", "effective_local_reference", "effective_first_term"}
    assert over["effective_local"] == pytest.approx(times["effective_local"] / times["softras_642"], rel=1e-2)
    assert report["ratios"]["softras_642_over_effective_local_reference"] > 0
