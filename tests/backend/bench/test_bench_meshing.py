"""``mono2mesh bench meshing`` on a small cloud: the JSON report's shape and its numbers."""

from __future__ import annotations

import json

import pytest
import torch

from backend.bench.meshing import bird_blob, make_cloud
from backend.cli import main
from backend.geometry.sampling import sample_surface


def test_bench_meshing_prints_a_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--points", "1500", "--depth", "5", "--repeats", "1", "--texture-size", "64"]
    assert main(["bench", "meshing", *arguments]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "meshing" and report["points"] == 1500 and report["depth"] == 5
    assert report["input"].startswith("bird-like blob")
    raw, stage = report["raw_poisson_s"]["median"], report["stage_s"]["median"]
    assert raw > 0 and stage > 0 and report["ratio"] == pytest.approx(stage / raw, abs=2e-3)
    assert set(report["stage_breakdown_median_s"]) == {
        "normals",
        "poisson",
        "trim",
        "cleanup",
        "decimate",
        "total",
    }
    assert report["mesh"]["faces"] <= 20000 and report["raw_mesh"]["faces"] > 0
    assert report["unwrap_s"]["median"] > 0 and report["bake_s"]["median"] > 0
    assert 0 <= report["uv_overlap_fraction"] < 0.01 and report["photo_fraction"] > 0.2
    assert report["machine"]["cpu_count"] >= 1


def test_benchmark_cloud_is_reproducible_and_on_the_blob() -> None:
    first, source = make_cloud(500, seed=3)
    second, _ = make_cloud(500, seed=3)
    assert torch.equal(first, second) and first.shape == (500, 3) and "blob" in source
    vertices, faces = bird_blob()
    assert float(vertices.abs().max()) <= 0.5
    mirrored = vertices.double() * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert float(torch.cdist(mirrored, vertices.double()).min(1).values.max()) < 1e-6  # symmetric about x = 0
    points = sample_surface(vertices, faces, 200, torch.Generator().manual_seed(0))
    assert float(points.abs().max()) <= 0.5 and not torch.equal(
        points, sample_surface(vertices, faces, 200, torch.Generator().manual_seed(1))
    )
    assert main(["bench", "meshing", "--repeats", "0"]) == 2
