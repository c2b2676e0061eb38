"""``training.batches``: batches moved to the device, the in-order evaluation loader, the dataset under
its ``Subset`` wrappers."""

from __future__ import annotations

import torch
from torch.utils.data import Subset

from training.batches import DeviceDataLoader, base_dataset, device_loader, move_to_device

from .toy import ToyDataset


def test_device_loader_moves_nested_batches() -> None:
    loader = device_loader(ToyDataset(6, augment=False), "cpu", batch_size=4)
    batches = list(loader)
    assert [len(b["x"]) for b in batches] == [4, 2] and batches[0]["name"][0] == "item0"
    assert loader.dataset is not None and len(loader) == 2
    assert isinstance(loader, DeviceDataLoader) and loader.device == torch.device("cpu")


def test_move_to_device_keeps_the_structure() -> None:
    batch = {"x": torch.ones(2), "pair": (torch.zeros(1), "name"), "list": [torch.ones(1)], "n": 3}
    moved = move_to_device(batch, torch.device("cpu"))
    assert set(moved) == set(batch) and isinstance(moved["pair"], tuple) and isinstance(moved["list"], list)
    assert moved["pair"][1] == "name" and moved["n"] == 3 and torch.equal(moved["x"], batch["x"])


def test_base_dataset_unwraps_every_subset() -> None:
    dataset = ToyDataset(6, augment=False)
    assert base_dataset(Subset(Subset(dataset, range(4)), range(2))) is dataset
    assert base_dataset(dataset) is dataset
