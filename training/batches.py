"""Batches on the device: what the loop, the trainers' evaluations and the benchmarks share.

- ``move_to_device(batch, device)``: every tensor of a batch (inside dicts, lists, tuples) on ``device``.
- ``DeviceDataLoader``: a ``DataLoader`` whose batches arrive on its ``device``; ``device_loader(dataset,
  device, batch_size)`` is the evaluation loader (in order, no shuffling) the loop hands to
  ``TrainingMethod.evaluate`` (``training.loop``) and a benchmark evaluating outside the loop uses too.
- ``base_dataset(dataset)``: the dataset under any number of ``Subset`` wrappers (where methods find
  ``ground_truth_mesh``).

A ``Batch`` is a collated batch (see ``training.datasets``). The training loader itself (shuffled,
sharded, seeded workers) is the loop's own (``training.loop``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

Batch = Any
"""A collated batch: usually ``dict[str, Tensor | list[str]]`` (see ``training.datasets``)."""


def base_dataset(dataset: Dataset[Any]) -> Dataset[Any]:
    """The dataset under any number of ``Subset`` wrappers (where methods find ``ground_truth_mesh``)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def move_to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` with every tensor (inside dicts, lists, tuples) on ``device``; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


class DeviceDataLoader(DataLoader[Any]):
    """A ``DataLoader`` whose batches arrive on ``device`` (tensors in dicts, lists and tuples are moved).

    The loop hands one to ``TrainingMethod.evaluate``, so an evaluation never sees a CPU batch next to a
    model on CUDA; ``dataset`` and every other ``DataLoader`` attribute are the usual ones.
    """

    def __init__(self, dataset: Dataset[Any], device: torch.device | str, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            yield move_to_device(batch, self.device)


def device_loader(
    dataset: Dataset[Any],
    device: torch.device | str,
    batch_size: int,
    *,
    workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DeviceDataLoader:
    """An evaluation loader over ``dataset`` in order (no shuffling), its batches on ``device``."""
    return DeviceDataLoader(
        dataset,
        device,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=torch.device(device).type == "cuda",
    )
