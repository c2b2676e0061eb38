"""``mono2mesh bench render --ops`` and ``--backends``: op and host-sync counts per raster backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli import main
from backend.render.cpu_raster import numba_problem

ROOT = Path(__file__).resolve().parents[3]
TINY = ["bench", "render", "--sizes", "16", "--batches", "1", "--devices", "cpu", "--repeats", "1"]


def test_ops_counts_the_torch_backend_on_the_cpu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    argv = [*TINY, "--no-deodr", "--ops", "--ops-size", "16", "--ops-batch", "2", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["ops"]  # without CUDA or the interpreter, only torch
    assert row["raster_backend"] == "torch" and row["size"] == 16 and row["batch"] == 2
    assert row["aten_ops"] > row["top_level_aten_ops"] > 100
    assert 100 < row["compute_ops"] < row["aten_ops"]
    # the packed path compacts its candidate pairs with nonzero: it waits for the device
    assert row["host_syncs"] == sum(row["sync_ops"].values()) > 0 and row["sync_ops"]["aten::nonzero"] > 0
    (timed,) = report["results"]
    if numba_problem() is None:  # auto on the CPU
        assert (timed["raster_backend"], timed["backend_reason"]) == ("numba", "CPU with numba")
    else:
        assert (timed["raster_backend"], timed["backend_reason"]) == ("torch", numba_problem())


def test_an_unavailable_backend_is_skipped_with_its_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main([*TINY, "--no-deodr", "--backends", "torch,triton"]) == 0
    table = capsys.readouterr().out
    assert "[torch]" in table and "skipped backend triton on cpu" in table
    assert main([*TINY, "--no-deodr", "--backends", "cuda"]) == 2


def test_ops_under_the_triton_interpreter_reports_both_backends() -> None:
    pytest.importorskip("triton")
    argv = [*TINY, "--no-deodr", "--backends", "triton", "--ops", "--ops-size", "16", "--ops-batch", "2"]
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", *argv, "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    rows = {row["raster_backend"]: row for row in report["ops"]}
    assert set(rows) == {"torch", "triton"}
    assert rows["triton"]["host_syncs"] == 0 and rows["torch"]["host_syncs"] > 0
    assert rows["triton"]["aten_ops"] < rows["torch"]["aten_ops"] / 4
    assert rows["triton"]["top_level_aten_ops"] <= 300 and rows["triton"]["compute_ops"] <= 300
    assert rows["triton"]["compute_ops"] < rows["torch"]["compute_ops"] / 4
    (timed,) = report["results"]
    assert timed["raster_backend"] == "triton" and timed["ms_per_image"] > 0
