"""training.loop with a toy regression method: it learns, logs, evaluates, checkpoints and resumes exactly."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from backend.checkpoints import load_checkpoint
from tests.devices import DEVICES
from training.checkpointing import latest_training_state
from training.loop import TrainingMethod, train
from training.report import History

from .toy import ToyDataset, ToyMethod, run, toy_config

REPO = Path(__file__).resolve().parents[2]


def _mse(model: torch.nn.Module) -> float:
    loader = torch.utils.data.DataLoader(ToyDataset(16, seed=2, augment=False), batch_size=16)
    model.eval()
    return ToyMethod().evaluate(model, loader)["mse"]


def test_the_toy_method_satisfies_the_protocol() -> None:
    assert isinstance(ToyMethod(), TrainingMethod)


def test_loss_falls_and_every_output_is_written(tmp_path: Path) -> None:
    torch.manual_seed(0)
    untrained = _mse(ToyMethod().build_model())
    config = toy_config(tmp_path / "run", iterations=60, keep_checkpoints=2)
    result = run(config)
    assert (result.start_step, result.step) == (0, 60)

    history = History(tmp_path / "run" / "history.jsonl")
    losses = [r["loss"] for r in history.records("train")]
    assert len(losses) == 12 and losses[-1] < 0.3 * losses[0]
    assert [r["step"] for r in history.records("eval")] == [20, 40, 60]
    assert result.metrics["mse"] == history.records("eval")[-1]["mse"] < 0.3 * untrained
    assert [r["lr"] for r in history.records("train")][::3] == pytest.approx([1e-2, 3e-3, 9e-4, 9e-4])

    final = load_checkpoint(tmp_path / "run" / "toy", method="toy", template="none")
    assert result.checkpoint == tmp_path / "run" / "toy.safetensors"
    assert final.meta.step == 60 and final.meta.metrics == result.metrics
    assert final.meta.config == config.model_dump(mode="json")  # the resolved config travels with the weights
    assert final.meta.dataset == {"name": "ToyDataset", "size": 64}
    for key, value in result.model.state_dict().items():
        assert torch.equal(final.weights[key], value)
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == [
        f"step_{s:07d}.{ext}"
        for s in (50, 60)
        for ext in ("json", "safetensors", "state.json", "state.safetensors")
    ]
    assert sorted(p.name for p in (tmp_path / "run" / "images").iterdir()) == [
        "step_0000020.png",
        "step_0000040.png",
        "step_0000060.png",
    ]
    assert Image.open(tmp_path / "run" / "images" / "step_0000060.png").size == (
        8,
        16,
    )  # 4 items x (target, prediction)
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "| mse |" in report and "![training losses](loss_curves.png)" in report


def test_a_run_killed_with_sigkill_resumes_to_the_same_weights(tmp_path: Path) -> None:
    uninterrupted = run(toy_config(tmp_path / "whole"))

    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(toy_config(tmp_path / "killed", sleep=0.05).model_dump(mode="json")))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.training.toy", "--config", str(config_file)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 60
    while latest_training_state(checkpoints) is None:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"the training process ended early: {error}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 60 s")
        time.sleep(0.01)
    process.kill()  # SIGKILL: no cleanup, no final checkpoint
    process.wait()
    assert process.returncode == -9
    assert not (tmp_path / "killed" / "toy.json").exists()

    resumed = run(toy_config(tmp_path / "killed", resume="auto"))
    assert 10 <= resumed.start_step < 40 and resumed.step == 40
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    steps = [r["step"] for r in History(tmp_path / "killed" / "history.jsonl").records("train")]
    assert steps == list(range(5, 41, 5))  # the killed run's entries after its checkpoint were dropped


def test_a_fresh_run_refuses_a_folder_that_holds_a_run(tmp_path: Path) -> None:
    run(toy_config(tmp_path, iterations=10))
    with pytest.raises(FileExistsError, match=r"already holds a run \(step 10\); pass resume=auto"):
        run(toy_config(tmp_path, iterations=10))
    with pytest.raises(FileNotFoundError, match=r"resume state .*nowhere\.state\.json does not exist"):
        run(toy_config(tmp_path, resume=str(tmp_path / "nowhere")))
    extended = run(toy_config(tmp_path, iterations=20, resume="auto"))
    assert (extended.start_step, extended.step) == (10, 20)


def test_epochs_and_dataset_size_checks(tmp_path: Path) -> None:
    result = run(toy_config(tmp_path / "epochs", epochs=2, dataset_size=20, checkpoint_every=0))
    assert result.step == 4  # 20 items in batches of 8: 2 steps an epoch, the tail dropped
    with pytest.raises(ValueError, match="the training set has 4 items, fewer than one batch of 8"):
        run(toy_config(tmp_path / "small", dataset_size=4))


def test_precision_other_than_fp32_is_cuda_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = run(toy_config(tmp_path, iterations=5, precision="fp16"))
    assert "precision=fp16 uses autocast on CUDA only; training in fp32 on cpu" in caplog.text
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


class _Recording(ToyMethod):
    """The toy method, noting the loader type and the devices of the batches evaluate and visualise get."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def evaluate(self, model: torch.nn.Module, loader: Any) -> dict[str, float]:
        self.seen.append(("evaluate-loader", f"{type(loader).__name__}:{getattr(loader, 'device', None)}"))
        for batch in loader:
            self.seen.append(("evaluate", str(batch["x"].device)))
        return super().evaluate(model, loader)

    def visualise(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        self.seen.append(("visualise", str(batch["x"].device)))
        return super().visualise(model, batch)


@pytest.mark.parametrize("device", DEVICES)
def test_evaluate_and_visualise_get_batches_on_the_run_device(tmp_path: Path, device: str) -> None:
    # an evaluation written as ``model(batch["x"])`` must work on CUDA: the loop moves its batches
    method = _Recording()
    train(method, toy_config(tmp_path, device=device, iterations=20), ToyDataset(32), ToyDataset(16, seed=2))
    loaders = {value for kind, value in method.seen if kind == "evaluate-loader"}
    assert loaders == {f"DeviceDataLoader:{torch.device(device)}"}
    places = {(kind, value.split(":")[0]) for kind, value in method.seen if kind != "evaluate-loader"}
    assert places == {("evaluate", device), ("visualise", device)}


@pytest.mark.device
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision runs on CUDA only")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda(tmp_path: Path, precision: str) -> None:
    result = run(toy_config(tmp_path, device="cuda", precision=precision, iterations=30, dropout=0.0))
    losses = [r["loss"] for r in History(tmp_path / "history.jsonl").records("train")]
    assert losses[-1] < losses[0] and all(math.isfinite(v) for v in losses)
    assert next(result.model.parameters()).device.type == "cuda"
    state = json.loads(next((tmp_path / "checkpoints").glob("*.state.json")).read_text())
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0  # the GradScaler's state is part of the resume state
    else:
        assert not state["scaler"]  # bf16 needs no loss scaling: the scaler is disabled


def test_tensorboard_logs_or_a_one_line_notice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        run(toy_config(tmp_path, iterations=5, tensorboard=True))
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert "tensorboard is not installed: no TensorBoard logs" in caplog.text
    else:
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


class _Broken(ToyMethod):
    def __init__(self, result: str) -> None:
        super().__init__()
        self.result = result

    def training_step(self, model: torch.nn.Module, batch: Any, step: int) -> Mapping[str, torch.Tensor]:
        losses = dict(super().training_step(model, batch, step))
        if self.result == "nan":
            return {"loss": losses["loss"] * float("nan")}
        return {"mse": losses["loss"]}


def test_a_non_finite_or_missing_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    data = ToyDataset(16)
    with pytest.raises(FloatingPointError, match="the loss is nan at step 5"):
        train(_Broken("nan"), toy_config(tmp_path / "a"), data)
    with pytest.raises(KeyError, match="must return the total under 'loss', got \\['mse'\\]"):
        train(_Broken("unnamed"), toy_config(tmp_path / "b"), data)


class _Hooked(ToyMethod):
    """Records the loop's ``after_step`` calls and the first weight at each step and each call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[int, float] = {}
        self.calls: list[tuple[int, float]] = []

    def training_step(self, model: torch.nn.Module, batch: Any, step: int) -> Mapping[str, torch.Tensor]:
        self.seen[step] = float(next(model.parameters())[0, 0].detach())
        return super().training_step(model, batch, step)

    def after_step(self, step: int, model: torch.nn.Module) -> None:
        assert isinstance(model, torch.nn.Sequential)  # the unwrapped model
        self.calls.append((step, float(next(model.parameters())[0, 0].detach())))


def test_after_step_follows_every_optimiser_step(tmp_path: Path) -> None:
    method = _Hooked()
    train(method, toy_config(tmp_path, iterations=6, eval_every=0, image_every=0), ToyDataset(16))
    assert [step for step, _ in method.calls] == list(range(6))
    for step, weight in method.calls:
        assert weight != method.seen[step]  # the hook sees the weights after the step's update
        if step + 1 in method.seen:
            assert method.seen[step + 1] == weight  # and before the next step
