"""``bench-unsup3d``: the constant-depth baseline scores what the metrics say a flat map scores, and a tiny
end-to-end run (synthetic faces, the three variants for two steps each) reports SIDE, MAD and the loss
terms of every variant, with the terms each ablation keeps, and the CPU's training speed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch.utils.data import default_collate

from training.bench_unsup3d import BenchUnsup3dOptions, constant_depth_scores, held_out_split, variant_config
from training.cli import main as train_main
from training.datasets.synthetic_faces import SyntheticFacesConfig, generate_faces
from training.unsup3d.metrics import erode, mad, side


def test_the_constant_depth_baseline_is_a_flat_map(tmp_path: Path) -> None:
    generate_faces(
        tmp_path, SyntheticFacesConfig(n=4, size=32, splits=(("train", 2), ("test", 2)), supersample=1)
    )
    options = BenchUnsup3dOptions(out=tmp_path / "bench")
    config = variant_config(options, tmp_path, "no_flip")
    assert not config.flip and config.iterations == 2000 and config.model.image_size == 32  # the preset's
    test = held_out_split(config)
    items = default_collate([test[i] for i in range(len(test))])  # type: ignore[arg-type]
    mask = erode(items["mask"][:, 0])
    flat = torch.full_like(items["depth"], 0.5)  # any constant: SIDE and MAD are scale-invariant
    scores = constant_depth_scores(test, 10.0)
    assert math.isclose(scores["side"], float(side(flat, items["depth"], mask).mean()), abs_tol=1e-5)
    assert math.isclose(scores["mad"], float(mad(flat, items["depth"], mask, 10.0).mean()), abs_tol=1e-4)
    assert scores["side"] > 0.005 and scores["mad"] > 10  # the faces are not flat


def test_a_tiny_bench_reports_every_variant(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    status = train_main(
        ["bench-unsup3d", "--out", str(out), "--faces", "40", "--iterations", "2", "--timing-steps", "1",
         "--set", "batch_size=4", "--set", "eval_items=2", "--set", "image_every=0",
         "--set", "tensorboard=false"]
    )  # fmt: skip
    assert status == 0
    results = json.loads((out / "bench.json").read_text())
    assert results["train_items"] == 32 and results["test_items"] == 4
    for name in ("untrained", "constant_depth"):
        assert results[name]["side"] > 0 and 0 < results[name]["mad"] < 180
    for name in ("full", "no_flip", "no_confidence"):
        test = results[name]["test"]
        assert results[name]["steps"] == 2 and 0 < test["side"] < 1 and 0 < test["mad"] < 180
        assert ("photometric_flip" in test) == (name != "no_flip")
        assert Path(results[name]["checkpoint"]).is_file()
    assert results["cpu_training"]["steps_per_second"] > 0 and results["cpu_training"]["batch"] == 4
