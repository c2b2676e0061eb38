"""A toy method for the loop tests: a small regression net on synthetic tensors.

Importable (``from tests.training.toy import ...``) and runnable as a training program
(``python -m tests.training.toy --out DIR ...``, also under torchrun), whose flags come from ``ToyConfig``
through ``backend.config_cli.parse_config``. Randomness touches every generator the resume state restores:
dropout (torch), shuffling (the sampler), and input noise drawn from numpy's and python's global
generators in ``__getitem__``.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from backend.config_cli import parse_config
from training.config import TrainConfig
from training.loop import RunResult, train


class ToyDataset(Dataset[dict[str, Any]]):
    """``n`` items ``{"x": (8,), "y": (1,), "index", "name"}``, y = x . w + 0.5 (w fixed); optional noise."""

    def __init__(self, n: int = 64, seed: int = 0, augment: bool = True) -> None:
        self.x = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
        self.w = torch.randn(8, 1, generator=torch.Generator().manual_seed(1234))  # one function for all sets
        self.y = self.x @ self.w + 0.5
        self.augment = augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, Any]:
        x = self.x[index].clone()
        if self.augment:
            x += torch.from_numpy(0.01 * np.random.randn(8).astype(np.float32))  # noqa: NPY002
            x += 0.01 * random.random()
        return {"x": x, "y": self.y[index], "index": index, "name": f"item{index}"}


class ToyMethod:
    """Regression with an MLP; satisfies ``training.loop.TrainingMethod``."""

    name = "toy"
    template = "none"

    def __init__(self, dropout: float = 0.1, sleep: float = 0.0) -> None:
        self.dropout = dropout
        self.sleep = sleep

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(self.dropout), nn.Linear(32, 1))

    def training_step(self, model: nn.Module, batch: Any, step: int) -> Mapping[str, torch.Tensor]:
        if self.sleep:
            time.sleep(self.sleep)
        error = model(batch["x"]) - batch["y"]
        mse = error.pow(2).mean()
        return {"loss": mse, "abs_error": error.abs().mean()}

    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in loader:
                total += float((model(batch["x"]) - batch["y"]).pow(2).sum())
                count += len(batch["x"])
        return {"mse": total / count}

    def visualise(self, model: nn.Module, batch: Any) -> torch.Tensor:
        prediction = model(batch["x"])  # (B, 1)
        row = torch.cat([batch["y"], prediction], dim=1).sigmoid()  # (B, 2)
        return row.repeat_interleave(4, 0).repeat_interleave(4, 1).expand(3, -1, -1)


class ToyConfig(TrainConfig):
    """Training the toy regression."""

    dropout: float = 0.1
    """Dropout probability of the MLP's hidden layer."""

    sleep: float = 0.0
    """Seconds to sleep in every training step (so a test can kill the run mid-way)."""

    augment: bool = True
    """Add input noise from numpy's and python's global generators."""

    dataset_size: int = 64
    """Items in the training set."""


ToyConfig.PRESETS = {"tiny": ToyConfig(iterations=40, batch_size=8, checkpoint_every=10, log_every=5)}


def toy_config(out: Path, **overrides: Any) -> ToyConfig:
    """A quick CPU config: 40 steps of batch 8, checkpoints every 10, no progress bar or TensorBoard."""
    values: dict[str, Any] = {
        "out": str(out),
        "device": "cpu",
        "iterations": 40,
        "batch_size": 8,
        "lr": 1e-2,
        "lr_schedule": "step",
        "lr_milestones": (15, 30),
        "grad_clip": 1.0,
        "log_every": 5,
        "eval_every": 20,
        "image_every": 20,
        "checkpoint_every": 10,
        "progress": False,
        "tensorboard": False,
    }
    values.update(overrides)
    return ToyConfig(**values)


def run(config: ToyConfig) -> RunResult:
    """Train the toy method as ``config`` says (evaluation on a held-out toy set)."""
    method = ToyMethod(config.dropout, config.sleep)
    train_set = ToyDataset(config.dataset_size, seed=1, augment=config.augment)
    eval_set = ToyDataset(16, seed=2, augment=False)
    return train(method, config, train_set, eval_set)


def main(argv: list[str] | None = None) -> int:
    """Train from command-line flags; each process also writes its final weights to out/rank<R>.safetensors"""
    torch.set_num_threads(1)
    config = parse_config(ToyConfig, argv)
    result = run(config)
    rank = int(os.environ.get("RANK", "0"))
    Path(config.out).mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    save_file(weights, str(Path(config.out) / f"rank{rank}.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
