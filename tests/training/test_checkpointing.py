"""training.checkpointing: the pickle-free resume state restores model, optimiser, scheduler, scaler, RNG."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from backend.checkpoints import CheckpointError
from training.checkpointing import (
    StateError,
    capture_rng_state,
    latest_training_state,
    load_training_state,
    prune_training_states,
    read_state_document,
    resolve_resume,
    save_training_state,
    training_states,
)
from training.config import TrainConfig


def _objects(
    seed: int,
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    return model, optimizer, scheduler, scaler


def _train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    steps: int,
) -> None:
    for _ in range(steps):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def _draws() -> tuple[float, float]:
    return random.random(), float(np.random.rand())  # noqa: NPY002


def test_round_trip_restores_everything(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = _objects(0)
    _train(model, optimizer, scheduler, 3)
    scaler.scale(torch.ones(()))  # the scaler starts lazily
    scaler.update(new_scale=256.0)
    extra = {"epoch": 2, "pairs": (1, 2.5), "by_id": {3: "c"}, "missing": float("nan"), "array": np.arange(3)}
    path = save_training_state(
        tmp_path / "step_3",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        step=3,
        extra=extra,
    )
    assert path == tmp_path / "step_3.state.json"
    expected_draws = _draws()  # python's and numpy's generators (training below uses torch's)
    _train(model, optimizer, scheduler, 2)  # the uninterrupted continuation

    fresh, fresh_optimizer, fresh_scheduler, fresh_scaler = _objects(1)
    state = load_training_state(
        path, model=fresh, optimizer=fresh_optimizer, scheduler=fresh_scheduler, scaler=fresh_scaler
    )
    assert state.step == 3 and state.world_size == 1
    assert fresh_optimizer.param_groups[0]["betas"] == (0.8, 0.9)  # tuples survive
    assert fresh_scheduler.last_epoch == 3 and fresh_scheduler.get_last_lr() == [0.1 * 0.5**3]
    assert fresh_scaler.get_scale() == 256.0
    assert state.extra["pairs"] == (1, 2.5) and state.extra["by_id"] == {3: "c"}
    assert np.isnan(state.extra["missing"])
    assert state.extra["array"].dtype == np.arange(3).dtype and list(state.extra["array"]) == [0, 1, 2]
    assert _draws() == expected_draws  # the generators are back where they were at the save
    # continuing from the restored state (torch's generator included) reproduces the uninterrupted run
    _train(fresh, fresh_optimizer, fresh_scheduler, 2)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_structure_is_strict_json_and_tensors_are_in_safetensors(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = _objects(0)
    _train(model, optimizer, scheduler, 1)
    save_training_state(
        tmp_path / "s", model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=1
    )
    text = (tmp_path / "s.state.json").read_text()
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert (
        document["kind"] == "mono2mesh-training-state" and document["format"] == 1 and document["step"] == 1
    )
    assert document["optimizer"]["state"]["__items__"][0][1]["exp_avg"] == {
        "__tensor__": "optimizer/state/0/exp_avg"
    }
    assert document["rng"][0]["torch"] == {"__tensor__": "rng/0/torch"}
    _, tensors = read_state_document(tmp_path / "s")
    assert "model/0.weight" in tensors and "optimizer/state/0/exp_avg_sq" in tensors
    assert (tmp_path / "s.state.safetensors").read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle


def test_refuses_pickles_and_mismatched_pairs(tmp_path: Path) -> None:
    model, optimizer, _, _ = _objects(0)
    torch.save(model.state_dict(), tmp_path / "resume.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_training_state(tmp_path / "resume.pt", model=model)
    save_training_state(tmp_path / "a", model=model, optimizer=optimizer, step=1)
    save_training_state(tmp_path / "b", model=model, optimizer=optimizer, step=2)
    (tmp_path / "b.state.safetensors").replace(tmp_path / "a.state.safetensors")
    with pytest.raises(StateError, match=r"does not belong to .*a\.state\.json"):
        load_training_state(tmp_path / "a", model=model)
    with pytest.raises(StateError, match="no training state"):
        load_training_state(tmp_path / "c", model=model)


def test_per_process_generator_states(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model, optimizer, _, _ = _objects(0)
    torch.manual_seed(10)
    rank0 = capture_rng_state()
    torch.manual_seed(11)
    rank1 = capture_rng_state()
    save_training_state(tmp_path / "s", model=model, optimizer=optimizer, step=5, rng_states=[rank0, rank1])
    state = load_training_state(tmp_path / "s", model=model, rank=1)
    assert state.world_size == 2
    torch.manual_seed(11)
    expected = torch.rand(2)
    load_training_state(tmp_path / "s", model=model, rank=1)
    assert torch.equal(torch.rand(2), expected)
    with caplog.at_level(logging.WARNING):
        load_training_state(tmp_path / "s", model=model, rank=3)
    assert "rank 3 takes rank 0's generator states" in caplog.text


def test_latest_state_ignores_incomplete_saves(tmp_path: Path) -> None:
    model, optimizer, _, _ = _objects(0)
    assert latest_training_state(tmp_path / "absent") is None
    for step in (10, 20, 30):
        save_training_state(tmp_path / f"step_{step}", model=model, optimizer=optimizer, step=step)
    (tmp_path / "step_30.state.safetensors").unlink()  # killed before... its tensors are gone
    (tmp_path / ".step_40.state.json.123.tmp").write_text("{")  # a temporary file of a killed save
    assert [step for step, _ in training_states(tmp_path)] == [10, 20]
    assert latest_training_state(tmp_path) == tmp_path / "step_20.state.json"


def test_resolve_resume_and_pruning(tmp_path: Path) -> None:
    model, optimizer, _, _ = _objects(0)
    assert resolve_resume(TrainConfig(), tmp_path) is None  # a fresh run into an empty folder
    assert resolve_resume(TrainConfig(resume="auto"), tmp_path) is None
    for step in (10, 20, 30):
        save_training_state(tmp_path / f"step_{step}", model=model, optimizer=optimizer, step=step)
        (tmp_path / f"step_{step}.json").write_text("{}")  # the checkpoint beside each state
    assert resolve_resume(TrainConfig(resume="auto"), tmp_path) == tmp_path / "step_30.state.json"
    named = str(tmp_path / "step_10.state.json")
    assert resolve_resume(TrainConfig(resume=named), tmp_path) == tmp_path / "step_10.state.json"
    with pytest.raises(FileExistsError, match="already holds a run"):
        resolve_resume(TrainConfig(), tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_resume(TrainConfig(resume=str(tmp_path / "step_99.state.json")), tmp_path)
    prune_training_states(tmp_path, 0)  # 0 keeps every state
    assert [step for step, _ in training_states(tmp_path)] == [10, 20, 30]
    prune_training_states(tmp_path, 2)
    assert [step for step, _ in training_states(tmp_path)] == [20, 30]
    assert not list(tmp_path.glob("step_10*"))  # all four files of the pruned point
