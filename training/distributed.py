"""Several processes, one model: PyTorch DistributedDataParallel as launched by ``torchrun``.

``torchrun --nproc_per_node N -m training.cli ...`` (or ``python -m torch.distributed.run``) starts N copies
of the program with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set.
``init_distributed`` reads them and joins the process group (``nccl`` on CUDA, one GPU per process chosen by
``LOCAL_RANK``; ``gloo`` on CPU); without them it returns a single-process context and nothing else changes.
The loop then wraps the model with ``wrap_model`` (DDP averages the gradients over processes during
``backward``), gives each process its share of every global batch with ``ShardedSampler``, lets rank 0
alone log, evaluate and write checkpoints (``DistributedContext.is_main``), and meets at ``barrier``.

``ShardedSampler`` plays the part of torch's ``DistributedSampler`` with two differences the loop needs:
every global batch holds the same items whatever the process count (process r takes the r-th slice of
each global batch, so N processes reproduce a single-process run up to float summation order), and an
epoch can start at a given batch (exact resume mid-epoch without loading the skipped items).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from backend.devices import resolve_device

ENV_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its torch device.

    ``backend`` is ``"gloo"`` or ``"nccl"`` when a process group is joined, None for a single process.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, evaluates and writes checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes a process group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | torch.device = "auto", timeout_s: float = 1800.0) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, or run as one process.

    Args:
        device: the configured device; under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``.
        timeout_s: how long collectives wait for the other processes.
    Raises:
        ValueError: torchrun's variables are incomplete, or the device is not available.
    """
    resolved = resolve_device(device)
    if not launched_by_torchrun():
        return DistributedContext(device=resolved)
    missing = [name for name in ENV_VARS if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE > 1 but {', '.join(missing)} unset: launch with torchrun")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistributedContext(rank, local_rank, world_size, resolved, backend)


def cleanup(context: DistributedContext) -> None:
    """Leave the process group (a no-op for a single process)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    """Wait until every process gets here (a no-op for a single process)."""
    if not context.enabled:
        return
    if context.backend == "nccl":
        dist.barrier(device_ids=[context.device.index or 0])
    else:
        dist.barrier()


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``model`` (already on ``context.device``) wrapped in DDP when several processes train, else itself."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_mean(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The mean of ``tensor`` over processes (``tensor`` itself for one process). All ranks must call it."""
    if not context.enabled:
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / context.world_size


def gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank (JSON-like values; all ranks must call)."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


class ShardedSampler(Sampler[int]):
    """Indices of this process's share of each global batch, epoch by epoch; resumable mid-epoch.

    Each epoch permutes ``range(dataset_size)`` with a generator seeded by ``(seed, epoch)`` (or keeps the
    order when ``shuffle`` is off), cuts it into ``dataset_size // global_batch`` global batches (the
    incomplete tail is dropped) and yields, for each, the ``rank``-th slice of ``global_batch /
    world_size`` items. Use it with ``DataLoader(batch_size=global_batch // world_size)``.
    """

    def __init__(
        self,
        dataset_size: int,
        global_batch: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if global_batch <= 0 or global_batch % world_size:
            raise ValueError(
                f"batch size {global_batch} must be a positive multiple of the process count {world_size}"
            )
        if dataset_size < global_batch:
            raise ValueError(
                f"the training set has {dataset_size} items, fewer than one batch of {global_batch}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.dataset_size = dataset_size
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        """Global batches (= optimiser steps) in one epoch."""
        return self.dataset_size // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate ``epoch`` from its batch ``start_batch`` on (``0 <= start_batch < batches_per_epoch``)."""
        if not 0 <= start_batch < self.batches_per_epoch:
            raise ValueError(f"start batch {start_batch} is outside [0, {self.batches_per_epoch})")
        self.epoch = epoch
        self.start_batch = start_batch

    def permutation(self) -> torch.Tensor:
        """The epoch's order of all items, shape (dataset_size,), int64, on the CPU (a sampler's indices)."""
        if not self.shuffle:
            return torch.arange(self.dataset_size, device="cpu")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.dataset_size, generator=generator, device="cpu")

    def __iter__(self) -> Iterator[int]:
        order = self.permutation()
        for batch in range(self.start_batch, self.batches_per_epoch):
            start = batch * self.global_batch + self.rank * self.local_batch
            yield from order[start : start + self.local_batch].tolist()

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.local_batch
