"""``mono2mesh-train bench-throughput``: training throughput of every trainer, per precision (JSON).

For each trainer of ``training.gpu_check.TRAINERS`` (or ``--trainers``) and each precision (``fp32``,
``bf16``; ``fp16`` where the device is CUDA), the trainer is built as ``mono2mesh-train <trainer>`` builds
it: its command line is the GPU check's tiny run (``training.gpu_check.trainer_arguments``, on the
synthetic sets of ``make_data(out)``), then ``--batch-size`` and the ``--set`` overrides (``KEY=VALUE`` for
every trainer, ``TRAINER:KEY=VALUE`` for one) change it; its data sets and method come from its own
``TrainerSpec`` (``datasets``, ``prepare``) and its steps are the loop's own step
(``training.loop.prepare_run``: autocast, backward, optimiser, scheduler, ``after_step``) on batches of the
loop's own loader. A training set smaller than one batch is repeated (``Subset``) to fill it. Stage 2 of
adaptive-flow starts from a 2-step stage-1 fp32 run (made once under ``out``).

Each run takes ``--warmup`` steps, then ``--steps`` timed steps (one device synchronisation before and
after them, none in between) and reports:

- ``images_per_second``, ``seconds_per_step`` (batch loading included, as in the loop) and
  ``data_seconds_per_step``, the part of it spent waiting for the loader (``--set workers=N`` loads in N
  processes; the datasets draw their augmentation from ``(seed, epoch, index)``, so the batches are the
  same);
- ``peak_memory_mb``: CUDA ``max_memory_allocated`` on CUDA; on the CPU the process's peak resident set
  (``ru_maxrss``, which never decreases over the process: an upper bound for the later runs);
- ``losses``: the loss of every step from step 0 (one host transfer at the end of the run);
- with ``--profile``: ``--profile-steps`` more steps under ``torch.profiler`` (CPU activity, plus CUDA on
  CUDA) and, per step, ``host_syncs`` (operators that make the host wait for the device: ``.item()`` /
  ``bool()`` / ``float()`` of a tensor (``aten::_local_scalar_dense``), ``nonzero``, ``masked_select``,
  ``unique``, ``equal``; on CUDA also the runtime's synchronise calls; nested ones counted once), their
  breakdown ``host_sync_ops``, and ``aten_ops`` (every ``aten::`` operator, nested included) and
  ``top_level_aten_ops`` (those called from Python or autograd); on CUDA also ``device_seconds_per_step``
  (kernel time), ``device_busy_fraction`` (of the profiled wall time, which the profiler itself lengthens)
  and ``device_top_ops`` (each operator's share of the kernel time, %).

For a trainer run in both fp32 and bf16, ``bf16_vs_fp32`` puts the two loss curves (same seed, same data
order, same random draws) side by side with their largest relative difference. On the CPU, bf16 runs
under CPU autocast (``--cpu-autocast``, default on; off: the loop's fp32 fallback) and fp16 is skipped
(the loop's fp16 is CUDA-only, with its GradScaler). A run that raises is reported with its error and the
others still run; the exit status is 1 when any run failed, else 0.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import torch
from torch.utils.data import Dataset, Subset

from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag, config_from_args
from backend.devices import resolve_device
from training.batches import Batch, move_to_device
from training.cli import COMMANDS, build_parser, command_of
from training.commands import BenchSpec, TrainerSpec
from training.config import TrainConfig, apply_overrides
from training.gpu_check import TRAINERS, make_data, run_folder, train_one, trainer_arguments
from training.loop import TrainingRun, prepare_run

TrainerName = Literal[
    "softras",
    "adaptive-flow-stage1",
    "adaptive-flow-stage2",
    "pointcloud-poisson",
    "texture-completion",
    "mesh-inversion-gan",
    "unsup3d",
]
PrecisionName = Literal["fp32", "fp16", "bf16"]

SYNC_OPS = frozenset(
    {
        "aten::_local_scalar_dense",  # .item(), bool(t), float(t), int(t), if t: ...
        "aten::nonzero",  # also under boolean-mask indexing
        "aten::masked_select",
        "aten::_unique2",
        "aten::unique_dim",
        "aten::unique_consecutive",
        "aten::equal",
        "cudaStreamSynchronize",
        "cudaDeviceSynchronize",
        "cudaEventSynchronize",
    }
)
"""Profiler event names that make the host wait for the device (outermost counted once)."""

CPU_SCALAR_CALLERS = ("torch/optim/optimizer.py", "torch/utils/data/")
"""Callers whose ``.item()`` reads a CPU tensor, never a device one (Adam's step counters, the loader's
seed): not counted as host syncs."""


class BenchThroughputOptions(Config):
    """The options of ``mono2mesh-train bench-throughput``."""

    out: Path = Path("out/bench-throughput")
    """Working folder (the synthetic sets, the stage-1 run, the runs, bench.json)."""
    trainers: tuple[TrainerName, ...] = cast(tuple[TrainerName, ...], TRAINERS)
    """Trainers to time (comma-separated)."""
    precisions: tuple[PrecisionName, ...] = ("fp32", "bf16")
    """Precisions to time each trainer in (comma-separated; fp16 is skipped on the CPU)."""
    device: str = "auto"
    """Torch device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N"."""
    batch_size: int = 4
    """Images per step (the trainer's global batch)."""
    warmup: int = 2
    """Untimed steps first."""
    steps: int = 5
    """Timed steps."""
    overrides: Annotated[tuple[str, ...], Flag("--set", repeat=True, metavar="[TRAINER:]KEY=VALUE")] = ()
    """Config overrides of every trainer (KEY=VALUE) or of one (TRAINER:KEY=VALUE), after the GPU check's."""
    profile: Annotated[bool, Flag(switch=True)] = False
    """Also count host syncs and aten operators per step (torch.profiler)."""
    profile_steps: int = 2
    """Steps profiled after the timed ones (with --profile)."""
    cpu_autocast: bool = True
    """bf16 on the CPU under CPU autocast (false: the loop's fp32 fallback)."""
    threads: int = 0
    """Torch CPU threads (0: torch's default)."""
    json_out: Path | None = None
    """Also write the report here (default: <out>/bench.json)."""


def trainer_overrides(overrides: Sequence[str], trainer: str) -> list[str]:
    """The ``KEY=VALUE`` overrides of ``trainer``: every unprefixed one and those prefixed ``trainer:``, in
    order. A prefix that is not a trainer name belongs to the value (``out=C:/x`` stays whole)."""
    chosen = []
    for item in overrides:
        prefix, colon, rest = item.partition(":")
        if colon and "=" not in prefix and prefix in TRAINERS:
            if prefix == trainer:
                chosen.append(rest)
        else:
            chosen.append(item)
    return chosen


def trainer_config(
    trainer: str, precision: str, device: str, root: Path, options: BenchThroughputOptions
) -> tuple[TrainerSpec[Any], TrainConfig]:
    """The trainer's spec and its config: the GPU check's tiny run of ``trainer`` (parsed by
    ``mono2mesh-train``'s own parser), then the options' batch, steps and overrides; it writes under
    ``root/throughput``."""
    total = options.warmup + options.steps + (options.profile_steps if options.profile else 0)
    argv = trainer_arguments(trainer, precision, device, root, total)
    spec = cast(TrainerSpec[Any], command_of(COMMANDS[argv[0]][0]))
    args = build_parser().parse_args(argv)
    config = cast(TrainConfig, config_from_args(spec.config, args))
    out = root / "throughput" / f"{trainer}-{precision}"
    config = apply_overrides(
        config,
        {
            "batch_size": options.batch_size, "iterations": total, "epochs": 0, "out": str(out),
            "resume": "", "tensorboard": False, "progress": False,
        },
    )  # fmt: skip
    return spec, apply_overrides(config, trainer_overrides(options.overrides, trainer))


def at_least_one_batch(dataset: Dataset[Any], batch_size: int) -> Dataset[Any]:
    """``dataset``, repeated in order (a ``Subset``) when it holds fewer than ``batch_size`` items."""
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise ValueError("the training set is empty")
    if size >= batch_size:
        return dataset
    return Subset(dataset, [index % size for index in range(batch_size)])


def _batches(run: TrainingRun) -> Iterator[Batch]:
    """The loop's batches, epoch after epoch."""
    epoch = 0
    while True:
        yield from run.epoch_batches(epoch, 0)
        epoch += 1


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def _source(event: Any) -> str:
    """Where ``event`` was called from: the innermost Python frame outside torch among its callers
    (``path(line): function``; a profile recorded ``with_stack`` holds them as events), or "?"."""
    caller = event.cpu_parent
    while caller is not None:
        name = str(caller.name)
        if ".py(" in name and not name.startswith("torch/") and "/torch/" not in name:
            return name.removeprefix(_ROOT)
        caller = caller.cpu_parent
    return "?"


def count_syncs(events: Sequence[Any], steps: int) -> dict[str, Any]:
    """Per-step host synchronisations and aten operators of a profile's ``events`` (``prof.events()``);
    ``host_sync_sources``: where the syncs are called from (with a profile recorded ``with_stack``)."""
    syncs: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    aten = top_level = 0
    for event in events:
        name, parent = event.name, event.cpu_parent
        if name.startswith("aten::"):
            aten += 1
            if parent is None or not parent.name.startswith("aten::"):
                top_level += 1
        if name in SYNC_OPS:
            ancestor, nested = parent, False
            while ancestor is not None:
                nested = nested or ancestor.name in SYNC_OPS or ancestor.name.startswith(CPU_SCALAR_CALLERS)
                ancestor = ancestor.cpu_parent
            if not nested:
                syncs[name] += 1
                sources[_source(event)] += 1
    per_step = max(steps, 1)
    return {
        "host_syncs": round(sum(syncs.values()) / per_step, 2),
        "host_sync_ops": {name: round(count / per_step, 2) for name, count in sorted(syncs.items())},
        "host_sync_sources": {where: round(count / per_step, 2) for where, count in sources.most_common(12)},
        "aten_ops": round(aten / per_step, 1),
        "top_level_aten_ops": round(top_level / per_step, 1),
    }


def device_time(averages: Sequence[Any], steps: int, seconds: float) -> dict[str, Any]:
    """What the device computed in a profile (``prof.key_averages()``) of ``steps`` steps that took
    ``seconds``: ``device_seconds_per_step`` (the kernels' time), ``device_busy_fraction`` (of the wall
    time) and ``device_top_ops``, the operators' shares (%) of it (their own kernels, largest first).
    Zeros and no operators for a profile without device activity."""
    from torch.autograd import DeviceType

    kernels = sum(a.self_device_time_total for a in averages if a.device_type != DeviceType.CPU)
    operators = sorted(
        (a for a in averages if a.device_type == DeviceType.CPU and a.key.startswith("aten::")),
        key=lambda a: a.self_device_time_total,
        reverse=True,
    )
    total = kernels or 1.0
    return {
        "device_seconds_per_step": round(kernels / 1e6 / max(steps, 1), 4),
        "device_busy_fraction": round(kernels / 1e6 / max(seconds, 1e-9), 3),
        "device_top_ops": {
            a.key: round(100 * a.self_device_time_total / total, 1)
            for a in operators[:10]
            if a.self_device_time_total > 0
        },
    }


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    scale = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, "process peak RSS (ru_maxrss)"


def time_trainer(
    trainer: str, precision: str, device: torch.device, options: BenchThroughputOptions
) -> dict[str, Any]:
    """One trainer in one precision: build as its command does, warm up, time, optionally profile."""
    root = Path(options.out)
    if trainer == "adaptive-flow-stage2":
        stage1 = run_folder(root, "adaptive-flow-stage1", "fp32") / "adaptive-flow.safetensors"
        if not stage1.is_file():
            train_one("adaptive-flow-stage1", "fp32", str(device), root, 2)
    spec, config = trainer_config(trainer, precision, str(device), root, options)
    if Path(config.out).exists():
        shutil.rmtree(config.out)
    train_set, eval_set = spec.datasets(config)
    train_set = at_least_one_batch(train_set, config.batch_size)
    method, info = spec.prepare(config, train_set, eval_set)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run = prepare_run(
        method, config, train_set, eval_set, dataset_info=info, autocast_on_cpu=options.cpu_autocast
    )
    batches = _batches(run)
    losses: list[torch.Tensor] = []  # (,) each, on the device until the end
    step, data_seconds = 0, 0.0

    def one_step() -> None:
        nonlocal step, data_seconds
        loaded = time.perf_counter()
        batch = move_to_device(next(batches), run.device)
        data_seconds += time.perf_counter() - loaded
        losses.append(run.train_step(batch, step)["loss"])
        step += 1

    for _ in range(options.warmup):
        one_step()
    _synchronise(device)
    data_seconds, started = 0.0, time.perf_counter()
    for _ in range(options.steps):
        one_step()
    _synchronise(device)
    seconds = (time.perf_counter() - started) / options.steps
    peak, peak_kind = _peak_memory_mb(device)
    result: dict[str, Any] = {
        "batch": config.batch_size,
        "autocast": run.use_amp,
        "images_per_second": round(config.batch_size / seconds, 2),
        "seconds_per_step": round(seconds, 4),
        "data_seconds_per_step": round(data_seconds / options.steps, 4),
        "peak_memory_mb": round(peak, 1),
        "peak_memory": peak_kind,
    }
    if options.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities, with_stack=True) as profiler:
            profiled = time.perf_counter()
            for _ in range(options.profile_steps):
                one_step()
            _synchronise(device)
            profiled = time.perf_counter() - profiled
        result.update(count_syncs(profiler.events(), options.profile_steps))
        if device.type == "cuda":
            result.update(device_time(profiler.key_averages(), options.profile_steps, profiled))
    result["losses"] = [round(v, 6) for v in torch.stack(losses).tolist()]
    return result


def compare_losses(fp32: Sequence[float], bf16: Sequence[float]) -> dict[str, Any]:
    """The two loss curves side by side and their largest relative difference |bf16 - fp32| / |fp32|."""
    pairs = list(zip(fp32, bf16, strict=False))
    if not pairs:
        return {"steps": 0}
    differences = [abs(b - f) / max(abs(f), 1e-12) for f, b in pairs]
    return {
        "steps": len(pairs),
        "max_relative_difference": round(max(differences), 6),
        "final_relative_difference": round(differences[-1], 6),
        "curves": [[round(f, 6), round(b, 6)] for f, b in pairs],
    }


def run_bench(options: BenchThroughputOptions) -> dict[str, Any]:
    """Every selected trainer in every selected precision (module docstring); the JSON report."""
    if options.steps < 1 or options.warmup < 0 or options.batch_size < 1 or options.profile_steps < 1:
        raise ValueError("steps, batch_size and profile_steps must be positive, warmup non-negative")
    if options.threads:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    root = Path(options.out)
    root.mkdir(parents=True, exist_ok=True)
    make_data(root)
    report: dict[str, Any] = {
        "machine": machine_info(), "device": str(device), "threads": torch.get_num_threads(),
        "batch": options.batch_size, "warmup": options.warmup, "steps": options.steps,
        "overrides": list(options.overrides), "trainers": {},
    }  # fmt: skip
    failed = 0
    for trainer in dict.fromkeys(options.trainers):
        results: dict[str, Any] = {}
        for precision in dict.fromkeys(options.precisions):
            if precision == "fp16" and device.type != "cuda":
                results[precision] = {"skipped": "fp16 (autocast + GradScaler) trains on CUDA only"}
                continue
            print(f"[bench-throughput] {trainer} {precision}", file=sys.stderr, flush=True)
            try:
                results[precision] = time_trainer(trainer, precision, device, options)
            except Exception as error:  # a failing run must not stop the others
                failed += 1
                results[precision] = {
                    "error": f"{type(error).__name__}: {error}"[-2000:],
                    "traceback": traceback.format_exc()[-3000:],
                }
        fp32, bf16 = results.get("fp32", {}), results.get("bf16", {})
        if "losses" in fp32 and "losses" in bf16:
            results["bf16_vs_fp32"] = compare_losses(fp32["losses"], bf16["losses"])
        report["trainers"][trainer] = results
    report["failed"] = failed
    return report


def _run_command(options: BenchThroughputOptions) -> int:
    try:
        report = run_bench(options)
    except ValueError as error:
        print(f"mono2mesh-train bench-throughput: error: {error}")
        return 2
    text = json.dumps(report, indent=2)
    path = options.json_out or Path(options.out) / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text)
    return 1 if report["failed"] else 0


COMMAND = BenchSpec(
    "bench-throughput",
    "training throughput of every trainer: images/s, peak memory, host syncs, fp32 vs bf16 losses (JSON)",
    __doc__, BenchThroughputOptions, _run_command,
)  # fmt: skip
"""``mono2mesh-train bench-throughput``: one flag per field of ``BenchThroughputOptions``."""
