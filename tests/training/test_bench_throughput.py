"""``bench-throughput``: the override routing, the sync counter against functions with a known number of
host synchronisations, the loss comparison, and a tiny end-to-end run (texture-completion, fp32 and bf16 on
the CPU) whose report has every figure; bf16 without CPU autocast falls back to fp32 and repeats the fp32
loss curve exactly (same seed, same data order)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import TensorDataset

from training.bench_throughput import (
    at_least_one_batch,
    compare_losses,
    count_syncs,
    device_time,
    trainer_overrides,
)
from training.cli import main as train_main


def test_overrides_go_to_every_trainer_or_to_the_one_named() -> None:
    overrides = ["batch_size=8", "softras:lr=1e-3", "unsup3d:lr=2e-3", "out=C:/runs", "nonsense:x=1"]
    assert trainer_overrides(overrides, "softras") == [
        "batch_size=8",
        "lr=1e-3",
        "out=C:/runs",
        "nonsense:x=1",
    ]
    assert trainer_overrides(overrides, "unsup3d") == [
        "batch_size=8",
        "lr=2e-3",
        "out=C:/runs",
        "nonsense:x=1",
    ]


def _syncing(x: torch.Tensor) -> torch.Tensor:
    value = x.sum().item()  # one sync
    if bool((x > 2).any()):  # one sync
        value += 1
    picked = x[x > 0.5]  # boolean indexing: one nonzero
    return picked.sum() + value + x.cumsum(0).exp().sum()  # none


def test_the_counter_finds_each_host_sync_once_and_where_it_is() -> None:
    x = torch.rand(64, device="cpu")
    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as profiler:
        for _ in range(2):
            _syncing(x)
    counts = count_syncs(profiler.events(), steps=2)
    assert counts["host_syncs"] == 3.0
    assert counts["host_sync_ops"] == {"aten::_local_scalar_dense": 2.0, "aten::nonzero": 1.0}
    assert sum(counts["host_sync_sources"].values()) == 3.0
    assert all("test_bench_throughput.py" in where for where in counts["host_sync_sources"])
    assert counts["top_level_aten_ops"] >= 8 and counts["aten_ops"] >= counts["top_level_aten_ops"]
    # a CPU-only profile has no device time (the CUDA figures come from scripts/gpu_check.sh machines)
    assert device_time(profiler.key_averages(), 2, 1.0) == {
        "device_seconds_per_step": 0.0,
        "device_busy_fraction": 0.0,
        "device_top_ops": {},
    }


def test_the_loss_comparison_is_the_largest_relative_difference() -> None:
    report = compare_losses([2.0, 1.0, 0.5], [2.2, 1.0, 0.45, 9.0])
    assert report["steps"] == 3 and report["curves"] == [[2.0, 2.2], [1.0, 1.0], [0.5, 0.45]]
    assert report["max_relative_difference"] == pytest.approx(0.1)
    assert report["final_relative_difference"] == pytest.approx(0.1)
    assert compare_losses([], []) == {"steps": 0}


def test_a_small_training_set_is_repeated_to_fill_one_batch() -> None:
    dataset = TensorDataset(torch.arange(3, device="cpu"))
    filled = at_least_one_batch(dataset, 7)
    assert [int(filled[i][0]) for i in range(len(filled))] == [0, 1, 2, 0, 1, 2, 0]  # type: ignore[arg-type]
    assert at_least_one_batch(dataset, 2) is dataset
    with pytest.raises(ValueError, match="empty"):
        at_least_one_batch(TensorDataset(torch.zeros(0, device="cpu")), 2)


@pytest.mark.slow
def test_a_tiny_run_reports_throughput_memory_syncs_and_the_bf16_curve(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    common = ["bench-throughput", "--out", str(out), "--trainers", "texture-completion", "--device", "cpu"]
    common += ["--warmup", "1", "--steps", "2", "--batch-size", "3"]
    assert train_main([*common, "--precisions", "fp32,fp16,bf16", "--profile"]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["device"] == "cpu" and report["failed"] == 0
    runs = report["trainers"]["texture-completion"]
    assert "skipped" in runs["fp16"]
    for precision, autocast in (("fp32", False), ("bf16", True)):
        run = runs[precision]
        assert run["autocast"] is autocast and run["batch"] == 3
        assert run["images_per_second"] == pytest.approx(3 / run["seconds_per_step"], rel=0.01)
        assert run["peak_memory_mb"] > 0 and len(run["losses"]) == 1 + 2 + 2  # warm-up, timed, profiled
        assert run["aten_ops"] > 0 and run["host_syncs"] >= 0
    comparison = runs["bf16_vs_fp32"]
    assert comparison["steps"] == 5 and 0 < comparison["max_relative_difference"] < 0.1
    # without CPU autocast bf16 is the loop's fp32 fallback: the same curve, bit for bit
    json_out = tmp_path / "fallback.json"
    status = train_main(
        [*common, "--precisions", "fp32,bf16", "--cpu-autocast", "false", "--json-out", str(json_out)]
    )
    assert status == 0
    fallback = json.loads(json_out.read_text())["trainers"]["texture-completion"]
    assert fallback["bf16"]["autocast"] is False
    assert fallback["bf16_vs_fp32"]["max_relative_difference"] == 0.0
