"""The loop moves a training set with ``set_epoch`` to each epoch (its augmentation changes every epoch,
``training.datasets``), under a ``Subset`` too, and with loader workers; ``prepare_run`` builds the same run
without running it, and ``autocast_on_cpu`` runs bf16 under CPU autocast."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from tests.training.toy import ToyDataset, ToyMethod
from training.batches import move_to_device
from training.config import Precision, TrainConfig
from training.loop import prepare_run, train


class EpochDataset(ToyDataset):
    """``ToyDataset`` whose items carry the epoch it was last moved to."""

    def __init__(self) -> None:
        super().__init__(n=8, augment=False)
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**super().__getitem__(index), "epoch": self.epoch}


class Recording(ToyMethod):
    """``ToyMethod`` that records the epoch of every batch it trains on."""

    def __init__(self) -> None:
        super().__init__(dropout=0.0)
        self.epochs: list[list[int]] = []

    def training_step(self, model: nn.Module, batch: Any, step: int) -> Mapping[str, torch.Tensor]:
        self.epochs.append(batch["epoch"].tolist())
        return super().training_step(model, batch, step)


def _config(out: Path, precision: Precision = "fp32", iterations: int = 3, workers: int = 0) -> TrainConfig:
    return TrainConfig(
        device="cpu", precision=precision, batch_size=4, iterations=iterations, out=str(out), progress=False,
        tensorboard=False, workers=workers, eval_every=0, image_every=0, checkpoint_every=0, log_every=2,
    )  # fmt: skip


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("subset", [False, True])
def test_every_epoch_reads_its_own_augmentation(tmp_path: Path, workers: int, subset: bool) -> None:
    dataset: Dataset[Any] = EpochDataset()
    if subset:
        dataset = Subset(dataset, range(8))
    method = Recording()
    train(method, _config(tmp_path / "run", iterations=6, workers=workers), dataset)
    assert method.epochs == [[0] * 4, [0] * 4, [1] * 4, [1] * 4, [2] * 4, [2] * 4]  # 2 batches per epoch


def test_a_prepared_run_steps_like_the_loop_and_autocasts_bf16_on_request(tmp_path: Path) -> None:
    losses = {}
    seen: list[torch.dtype] = []
    for name, precision, autocast in (
        ("fp32", "fp32", False),
        ("bf16", "bf16", True),
        ("off", "bf16", False),
    ):
        method, data = ToyMethod(dropout=0.0), ToyDataset(n=8, augment=False)
        run = prepare_run(method, _config(tmp_path / name, precision), data, autocast_on_cpu=autocast)  # type: ignore[arg-type]
        assert run.use_amp is autocast and run.model.training
        hook = run.model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))  # type: ignore[index]
        batches = run.epoch_batches(0, 0)
        values = []
        for step in range(2):
            seen.clear()
            values.append(float(run.train_step(move_to_device(next(batches), run.device), step)["loss"]))
            assert seen == [torch.bfloat16 if autocast else torch.float32]
        hook.remove()
        losses[name] = values
    trained = train(
        ToyMethod(dropout=0.0), _config(tmp_path / "loop", iterations=2), ToyDataset(n=8, augment=False)
    )
    prepared = prepare_run(
        ToyMethod(dropout=0.0), _config(tmp_path / "again"), ToyDataset(n=8, augment=False)
    )
    batches = prepared.epoch_batches(0, 0)
    for step in range(2):
        prepared.train_step(move_to_device(next(batches), prepared.device), step)
    for ours, theirs in zip(
        prepared.model.state_dict().values(), trained.model.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs)  # the loop's own steps, bit for bit
    assert losses["off"] == losses["fp32"]  # the fp32 fallback
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
