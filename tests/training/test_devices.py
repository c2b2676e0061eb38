"""Every trainer on every device and precision: a few steps of ``mono2mesh-train`` with evaluation, image
grids and checkpoints, the same tiny runs ``scripts/gpu_check.sh`` makes (``training.gpu_check``).

On the CPU the runs are fp32 (mixed precision is CUDA-only); on CUDA each trainer also runs in fp16 with the
GradScaler and in bf16. Stage 2 of adaptive-flow starts from the stage-1 run of the same device.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.devices import TRAINING_PRECISIONS
from training.cli import COMMANDS
from training.gpu_check import FINAL_NAME, TRAINERS, make_data, run_folder, train_one

STEPS = 3


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("device-runs")
    make_data(folder)
    return folder


@pytest.mark.parametrize(("device", "precision"), TRAINING_PRECISIONS)
def test_every_trainer_runs_on_the_device(root: Path, device: str, precision: str) -> None:
    out = root / device
    out.mkdir(exist_ok=True)
    if not (out / "data").exists():
        (out / "data").symlink_to(root / "data")
    if precision != "fp32":  # stage 2 reads the fp32 stage-1 checkpoint of the same device
        train_one("adaptive-flow-stage1", "fp32", device, out, STEPS)
    for trainer in TRAINERS:
        figures = train_one(trainer, precision, device, out, STEPS)
        assert figures["evaluations"] >= 1, trainer
        folder = run_folder(out, trainer, precision)
        meta = json.loads((folder / f"{FINAL_NAME[trainer]}.json").read_text())
        assert meta["config"]["device"] == device and meta["step"] == STEPS
        weights = load_file(folder / f"{FINAL_NAME[trainer]}.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()), trainer
        report = (folder / "report" / "report.md").read_text()
        assert f"- **precision**: {precision}" in report and f"- **device**: {device}" in report, trainer


def test_the_gpu_check_covers_every_trainer_command() -> None:
    # a trainer added to mono2mesh-train must be added to training.gpu_check.TRAINERS (and so to these tests)
    trainers = {name for name in COMMANDS if not name.startswith("bench-") and name != "make-synthetic"}
    covered = {name.removesuffix("-stage1").removesuffix("-stage2") for name in TRAINERS}
    assert trainers == covered
