"""The one training loop every method shares; a method plugs in as a small ``TrainingMethod`` object.

``train(method, config, train_set, eval_set)`` does everything that is not the method's own business:
device placement, torch.amp autocast (+ GradScaler for fp16) on CUDA, the optimiser (Adam unless the method
provides ``configure_optimizer``), gradient clipping, the learning-rate schedule (``config.lr_factor``),
shuffling that is identical for any process count (``distributed.ShardedSampler``), DistributedDataParallel
under torchrun, periodic evaluation, a tqdm bar, TensorBoard scalars and image grids (when tensorboard is
installed; one notice otherwise), ``history.jsonl``, resumable checkpoints and the final report.

The method supplies the model and what one step, one evaluation and one picture mean::

    class MyMethod:                       # satisfies TrainingMethod
        name = "softras"                  # registry name stored in every checkpoint
        template = "icosphere-642"        # topology id stored in every checkpoint
        def build_model(self) -> nn.Module: ...
        def training_step(self, model, batch, step) -> dict[str, Tensor]: ...   # key "loss" = total
        def evaluate(self, model, loader) -> dict[str, float]: ...
        def visualise(self, model, batch) -> Tensor: ...  # (3, H, W) in [0, 1]: input | recon | novel views

and optionally ``configure_optimizer``, ``export_weights`` and ``after_step(step, model)``, a hook after
each optimiser step for changes to the model outside the gradient (``TrainingMethod``).

``model`` is what the loop built with ``build_model``, on the device, possibly wrapped in DDP: call it
(``model(x)``) in ``training_step`` so that DDP synchronises gradients; use ``unwrap_model(model)`` for
attribute access. ``evaluate`` and ``visualise`` get the unwrapped module in eval mode on rank 0 only;
``visualise`` runs under ``torch.no_grad()``, ``evaluate`` decides itself (a method may optimise at test
time). Batches arrive on the device (tensors in dicts, lists and tuples are moved), in training and in
evaluation alike: ``evaluate`` gets a ``DeviceDataLoader`` (``device_loader``; both in ``training.batches``
with ``move_to_device`` and ``base_dataset``), which a benchmark that evaluates a model outside the loop
uses too.

``prepare_run`` builds the run ``train`` would make without running it (its ``train_step`` is the loop's
step), for ``training.bench_throughput``; with ``autocast_on_cpu`` bf16 runs under CPU autocast. The default
Adam is the fused one when every parameter is on CUDA.

Output folder ``config.out``::

    checkpoints/step_0001000.{safetensors,json,state.safetensors,state.json}   periodic, resumable
    <method>.safetensors + <method>.json                                       final weights (backend)
    history.jsonl, images/step_*.png, tensorboard/, report/report.md (+ PNG plots)

Each epoch the training set (under any ``Subset``) is moved to it with its ``set_epoch`` when it has one.

Resume (``config.resume``, resolved by ``training.checkpointing.resolve_resume``; old resume points are
pruned to ``keep_checkpoints``): the run continues from a ``.state.json`` with the model, optimiser,
scheduler, GradScaler, every process's generator states and the step restored, the data order re-derived
from ``(seed, epoch)`` and the epoch's consumed batches skipped, so a run killed with SIGKILL ends with the
same weights as one never interrupted (bitwise with ``workers = 0`` on a deterministic device).
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from backend.checkpoints import CheckpointMeta, save_checkpoint
from training.batches import Batch, DeviceDataLoader, base_dataset, device_loader, move_to_device
from training.checkpointing import (
    capture_rng_state,
    load_training_state,
    prune_training_states,
    resolve_resume,
    save_training_state,
)
from training.config import TrainConfig, lr_factor
from training.distributed import (
    DistributedContext,
    ShardedSampler,
    all_reduce_mean,
    barrier,
    cleanup,
    gather_objects,
    init_distributed,
    launched_by_torchrun,
    wrap_model,
)
from training.report import History, write_report

log = logging.getLogger(__name__)


@runtime_checkable
class TrainingMethod(Protocol):
    """What a method gives the loop (see the module docstring for the contract of each member).

    Optional members, looked up with ``getattr``: ``configure_optimizer(model, config) -> Optimizer``
    (default Adam with ``config.lr``, ``betas``, ``weight_decay``), ``export_weights(model) ->
    Mapping[str, Tensor]`` (default the unwrapped model's ``state_dict``) and ``after_step(step, model)``,
    called on every process after optimiser step ``step`` (0-based, the ``step`` its ``training_step`` got)
    with the unwrapped model, before any evaluation, picture or checkpoint of that step: where a method
    changes its model outside the gradient (adaptive-flow's stage-1 template update), not in its loss.
    """

    name: str
    template: str

    def build_model(self) -> nn.Module:
        """A fresh network (on the CPU; the loop moves it)."""
        ...

    def training_step(self, model: nn.Module, batch: Batch, step: int) -> Mapping[str, torch.Tensor]:
        """Losses of one batch at 0-based optimiser step ``step``: scalar tensors, key "loss" the total."""
        ...

    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        """Metrics of ``model`` over ``loader`` (the evaluation set, not shuffled)."""
        ...

    def visualise(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """An image grid (3, H, W) in [0, 1]: input | reconstruction | novel views, one row per item."""
        ...


@dataclass
class RunResult:
    """What ``train`` did: steps, final metrics, files (None on ranks other than 0) and the model."""

    out: Path
    start_step: int
    step: int
    metrics: dict[str, float]
    checkpoint: Path | None
    report: Path | None
    model: nn.Module = field(repr=False)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeding the global generator is the point)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over ``model``'s trainable parameters with ``config.lr``, ``betas`` and ``weight_decay``; the
    fused implementation (one kernel for every parameter, no per-parameter host work) when they are all
    floating-point CUDA tensors."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    fused = bool(parameters) and all(p.is_cuda and p.is_floating_point() for p in parameters)
    return torch.optim.Adam(
        parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=fused or None
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step scheduler multiplying each group's initial lr by ``lr_factor(config, step, total_steps)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step, total_steps))


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # torch gives each worker base_seed + worker_id
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)


def _open_tensorboard(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard); "
                    "scalars still go to history.jsonl and images to images/")  # fmt: skip
        return None
    return SummaryWriter(log_dir=str(directory))


def _save_png(grid: torch.Tensor, path: Path) -> Path:
    if grid.ndim != 3 or grid.shape[0] not in (1, 3):
        raise ValueError(f"visualise must return a (3, H, W) image, got shape {tuple(grid.shape)}")
    pixels = (grid.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.expand(3, -1, -1).permute(1, 2, 0).numpy()).save(path)
    return path


class TrainingRun:
    """One call of ``train``: the objects it builds and the steps it takes.

    ``prepare_run`` gives one built but not run (what ``training.bench_throughput`` times): ``train_step``
    is the loop's step (autocast, backward, clipping, optimiser, scheduler, ``after_step``), and
    ``epoch_batches`` the loop's shuffled loader.
    """

    def __init__(
        self,
        method: TrainingMethod,
        config: TrainConfig,
        context: DistributedContext,
        train_set: Dataset[Any],
        eval_set: Dataset[Any] | None,
        collate_fn: Callable[[list[Any]], Any] | None,
        dataset_info: Mapping[str, Any] | None,
        *,
        autocast_on_cpu: bool = False,
    ) -> None:
        self.method, self.config, self.context = method, config, context
        self.train_set, self.eval_set, self.collate_fn = train_set, eval_set, collate_fn
        self.device = context.device
        self.out = Path(config.out).expanduser()
        self.checkpoints = self.out / "checkpoints"
        self.dataset_info = dict(dataset_info or {"name": type(train_set).__name__, "size": len(train_set)})  # type: ignore[arg-type]
        self.sampler = ShardedSampler(
            len(train_set),  # type: ignore[arg-type]
            config.batch_size,
            rank=context.rank,
            world_size=context.world_size,
            shuffle=config.shuffle,
            seed=config.seed,
        )
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.total_steps = config.epochs * self.steps_per_epoch if config.epochs else config.iterations
        amp = config.precision != "fp32"
        cpu_bf16 = autocast_on_cpu and config.precision == "bf16" and self.device.type == "cpu"
        if amp and self.device.type != "cuda" and not cpu_bf16:
            log.warning("precision=%s uses autocast on CUDA only; training in fp32 on %s",
                        config.precision, self.device.type)  # fmt: skip
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.precision)
        self.use_amp = amp and (self.device.type == "cuda" or cpu_bf16)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.use_amp and config.precision == "fp16" and self.device.type == "cuda"
        )
        self.metrics: dict[str, float] = {}
        self.last_image: Path | None = None
        self.writer: Any = None
        self.history = History(self.out / "history.jsonl")

    # --- set-up ---

    def build(self) -> None:
        resume = resolve_resume(self.config, self.checkpoints)
        seed_everything(self.config.seed)
        self.model = self.method.build_model().to(self.device)
        configure = getattr(self.method, "configure_optimizer", None)
        self.optimizer = (
            configure(self.model, self.config) if configure else build_optimizer(self.model, self.config)
        )
        self.scheduler = build_scheduler(self.optimizer, self.config, self.total_steps)
        self.start_step = 0
        if resume is not None:
            state = load_training_state(
                resume, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                scaler=self.scaler, rank=self.context.rank,
            )  # fmt: skip
            self.start_step = state.step
            self.metrics = dict(state.extra.get("metrics", {}))
            if self.context.is_main:
                log.info("resuming from %s at step %d", resume, state.step)
        else:
            seed_everything(self.config.seed + self.context.rank)
        self.wrapped = wrap_model(self.model, self.context)
        if self.context.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.history.truncate(self.start_step)
            if self.config.tensorboard:
                self.writer = _open_tensorboard(self.out / "tensorboard")

    def epoch_batches(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        """The batches of ``epoch`` from ``start_batch`` on (worker seeds derived from seed and epoch). A
        training set with ``set_epoch`` (under any ``Subset``) is moved to ``epoch`` first: its augmentation,
        drawn from ``(seed, epoch, index)``, changes every epoch (``training.datasets``)."""
        set_epoch = getattr(base_dataset(self.train_set), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_batch)
        loader = DataLoader(
            self.train_set,
            batch_size=self.sampler.local_batch,
            sampler=self.sampler,
            num_workers=self.config.workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(self.config.seed * 7919 + epoch),
        )
        return iter(loader)

    def eval_loader(self, dataset: Dataset[Any], batch_size: int | None = None) -> DeviceDataLoader:
        size = batch_size or self.config.eval_batch_size or self.sampler.local_batch
        return device_loader(
            dataset, self.device, size, workers=self.config.workers, collate_fn=self.collate_fn
        )

    # --- one step and the periodic work ---

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        self.wrapped.train()
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.use_amp):
            losses = dict(self.method.training_step(self.wrapped, batch, step))
        if "loss" not in losses:
            raise KeyError(
                f"{self.method.name}.training_step must return the total under 'loss', got {sorted(losses)}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        after_step = getattr(self.method, "after_step", None)
        if after_step is not None:
            after_step(step, self.model)
        return {k: v.detach().float() for k, v in losses.items()}

    def log_scalars(
        self, sums: dict[str, torch.Tensor], count: int, step: int, seconds: float
    ) -> dict[str, float]:
        names = sorted(sums)
        means = all_reduce_mean(torch.stack([sums[n] for n in names]) / count, self.context).tolist()
        values = dict(zip(names, means, strict=True))
        if not np.isfinite(values["loss"]) and not self.scaler.is_enabled():
            raise FloatingPointError(
                f"the loss is {values['loss']} at step {step}: lower lr, set grad_clip, or check the data"
            )
        values["lr"] = float(self.optimizer.param_groups[0]["lr"])
        values["steps_per_second"] = count / max(seconds, 1e-9)
        if self.context.is_main:
            self.history.append("train", step, values)
            if self.writer is not None:
                for name, value in values.items():
                    self.writer.add_scalar(f"train/{name}", value, step)
        return values

    def evaluate(self, step: int) -> None:
        if not self.context.is_main or self.eval_set is None:
            return
        self.model.eval()
        metrics = {
            k: float(v) for k, v in self.method.evaluate(self.model, self.eval_loader(self.eval_set)).items()
        }
        self.model.train()
        self.metrics = metrics
        self.history.append("eval", step, metrics)
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"eval/{name}", value, step)
        log.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    def visualise(self, step: int) -> None:
        if not self.context.is_main:
            return
        if not hasattr(self, "image_batch"):
            source = self.eval_set if self.eval_set is not None else self.train_set
            count = min(self.config.image_count, len(source))  # type: ignore[arg-type]
            loader = self.eval_loader(Subset(source, range(count)), batch_size=count)
            self.image_batch = next(iter(loader))
        self.model.eval()
        with torch.no_grad():
            grid = self.method.visualise(self.model, self.image_batch)
        self.model.train()
        self.last_image = _save_png(grid, self.out / "images" / f"step_{step:07d}.png")
        if self.writer is not None:
            self.writer.add_image("visualisation", grid.detach().float().clamp(0, 1).cpu(), step)

    def meta(self, step: int) -> CheckpointMeta:
        return CheckpointMeta(
            method=self.method.name,
            template=self.method.template,
            config=self.config.model_dump(mode="json"),
            metrics={k: v for k, v in self.metrics.items() if math.isfinite(v)},  # strict JSON
            dataset=self.dataset_info,
            step=step,
        )

    def weights(self) -> Mapping[str, torch.Tensor]:
        export = getattr(self.method, "export_weights", None)
        return export(self.model) if export else self.model.state_dict()

    def save(self, step: int, *, final: bool) -> Path | None:
        """Resumable checkpoint at ``step`` (all ranks call: generator states are gathered)."""
        rng_states = gather_objects(capture_rng_state(), self.context)
        path = None
        if self.context.is_main:
            stem = self.checkpoints / f"step_{step:07d}"
            meta = self.meta(step)
            path = save_checkpoint(stem, self.weights(), meta)
            save_training_state(
                stem,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler,
                step=step,
                rng_states=rng_states,
                extra={"metrics": self.metrics, "config": meta.config},
            )
            if final:
                path = save_checkpoint(self.out / self.method.name, self.weights(), meta)
            prune_training_states(self.checkpoints, self.config.keep_checkpoints)
        barrier(self.context)
        return path

    # --- the loop ---

    def run(self) -> RunResult:
        self.build()
        config, step = self.config, self.start_step
        if step >= self.total_steps and self.context.is_main:
            log.info("the run is already at step %d of %d; writing the final outputs", step, self.total_steps)
        epoch, start_batch = divmod(step, self.steps_per_epoch)
        batches = self.epoch_batches(epoch, start_batch) if step < self.total_steps else iter(())
        sums: dict[str, torch.Tensor] = {}
        count, tick = 0, time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=step, desc=self.method.name, dynamic_ncols=True,
                   disable=not (config.progress and self.context.is_main))  # fmt: skip
        try:
            while step < self.total_steps:
                try:
                    batch = next(batches)
                except StopIteration:
                    epoch += 1
                    batches = self.epoch_batches(epoch, 0)
                    continue
                losses = self.train_step(move_to_device(batch, self.device), step)
                step += 1
                for name, value in losses.items():
                    sums[name] = sums[name] + value if name in sums else value
                count += 1
                bar.update(1)
                last = step == self.total_steps
                if step % config.log_every == 0 or last:
                    values = self.log_scalars(sums, count, step, time.perf_counter() - tick)
                    bar.set_postfix(loss=f"{values['loss']:.4g}")
                    sums, count, tick = {}, 0, time.perf_counter()
                if config.eval_every and step % config.eval_every == 0 and not last:
                    self.evaluate(step)
                if config.image_every and step % config.image_every == 0 and not last:
                    self.visualise(step)
                if config.checkpoint_every and step % config.checkpoint_every == 0 and not last:
                    self.save(step, final=False)
        finally:
            bar.close()
        self.evaluate(step)
        if config.image_every:
            self.visualise(step)
        checkpoint = self.save(step, final=True)
        report = self.write_report(step) if self.context.is_main else None
        if self.writer is not None:
            self.writer.close()
        return RunResult(self.out, self.start_step, step, dict(self.metrics), checkpoint, report, self.model)

    def write_report(self, step: int) -> Path:
        report_dir = self.out / "report"
        report_dir.mkdir(parents=True, exist_ok=True)
        images = []
        if self.last_image is not None:
            images.append(Path(shutil.copyfile(self.last_image, report_dir / "final_images.png")))
        summary = {
            "method": self.method.name,
            "template": self.method.template,
            "steps": f"{step} (resumed at {self.start_step})" if self.start_step else str(step),
            "device": f"{self.device} x {self.context.world_size} process(es)",
            "precision": self.config.precision,
            "batch": self.config.batch_size,
            "lr": f"{self.config.lr:g} ({self.config.lr_schedule})",
            "dataset": ", ".join(f"{k}={v}" for k, v in self.dataset_info.items()),
        }
        return write_report(report_dir, self.history.records(), title=f"{self.method.name} training report",
                            summary=summary, final_metrics=self.metrics or None, images=images)  # fmt: skip


def train(
    method: TrainingMethod,
    config: TrainConfig,
    train_set: Dataset[Any],
    eval_set: Dataset[Any] | None = None,
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
) -> RunResult:
    """Train ``method`` on ``train_set`` as ``config`` says; evaluate on ``eval_set`` (None: no evaluation).

    Under torchrun every process calls ``train`` with the same arguments; the process group is joined here
    (and left at the end if it was joined here). ``dataset_info`` goes into every checkpoint's metadata
    (default: the dataset class name and size).

    Raises:
        FileExistsError: a fresh run (``resume=""``) into a folder that already holds one.
        FileNotFoundError: ``resume`` names a missing state.
        FloatingPointError: the loss became non-finite (fp32 / bf16).
        ValueError: a training set smaller than one batch, or a batch not divisible by the process count.
    """
    joined_here = not dist.is_initialized()
    context = init_distributed(config.device)
    try:
        return TrainingRun(method, config, context, train_set, eval_set, collate_fn, dataset_info).run()
    finally:
        if joined_here:
            cleanup(context)


def prepare_run(
    method: TrainingMethod,
    config: TrainConfig,
    train_set: Dataset[Any],
    eval_set: Dataset[Any] | None = None,
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
    autocast_on_cpu: bool = False,
) -> TrainingRun:
    """The run ``train`` would make, built (model, optimiser, scheduler, ``config.out`` created) but not run:
    call its ``train_step(batch, step)`` on batches of its ``epoch_batches(epoch, 0)`` moved with
    ``move_to_device(batch, run.device)`` (what ``training.bench_throughput`` times). Single process only.

    ``autocast_on_cpu``: ``precision="bf16"`` on the CPU runs under CPU autocast (bfloat16) instead of the
    loop's fp32 fallback (fp16 stays CUDA-only).

    Raises:
        RuntimeError: under torchrun (a distributed process group would have to be joined).
    """
    if dist.is_initialized() or launched_by_torchrun():
        raise RuntimeError("prepare_run is single-process; under torchrun use train")
    context = init_distributed(config.device)
    run = TrainingRun(
        method,
        config,
        context,
        train_set,
        eval_set,
        collate_fn,
        dataset_info,
        autocast_on_cpu=autocast_on_cpu,
    )
    run.build()
    return run
