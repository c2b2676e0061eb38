"""``training.gpu_check.main`` on a machine without CUDA: it says so and runs nothing (exit 0); with
``--dry-run`` and no photo it stops with a usage error (exit 2). The parts themselves run in
tests/training/test_devices.py (training) and in the dry run of docs/BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from training import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA note is printed only without CUDA")
def test_without_cuda_nothing_runs(tmp_path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as text:
        status = gpu_check.main(["--out", str(tmp_path / "gc")])
    assert status == 0
    assert json.loads(text.getvalue()) == {
        "check": "gpu",
        "cuda": False,
        "note": "no CUDA device here: nothing was run (--dry-run runs every part on the CPU)",
    }
    assert not (tmp_path / "gc").exists()


def test_no_photo_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "DEFAULT_PHOTOS", tmp_path / "no-photos")
    with contextlib.redirect_stderr(io.StringIO()) as text:
        status = gpu_check.main(["--dry-run", "--out", str(tmp_path / "gc")])
    assert status == 2 and "no photos" in text.getvalue()
