"""``mono2mesh-train bench-unsup3d``: Unsup3d's ablation on synthetic faces with ground-truth depth (JSON).

1. Generates a synthetic face set (``training.datasets.synthetic_faces``: symmetric faces, random light
   and small views, ground-truth depth; 80/10/10 splits) at the preset's image size, unless ``--data``
   names one.
2. Trains the full model, the model without the symmetric branch (``flip=false``) and without confidence
   maps (``model.confidence=false``) with the same data, preset (``cpu``), steps and seed: the paper's
   Table 2 ablation at CPU scale.
3. Scores every run on the whole test split: SIDE and MAD as the reference computes them
   (``training.unsup3d.metrics``), with the loss terms; and, as the paper's baselines, the untrained
   network and a constant depth map ("const. null depth").
4. Times training steps per second (full steps of the full model: forward, both branches, VGG, backward,
   Adam) on the CPU at the preset's size, and on a GPU when there is one at the preset's size and at the
   paper's (its networks at 64 x 64, batch 64, with the perceptual term and no smoothness term).

Machine and date come with the figures (``backend.bench.machine.machine_info``).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from torch.utils.data import Dataset, default_collate

from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag
from training.batches import device_loader, move_to_device
from training.commands import BenchSpec
from training.config import apply_overrides, apply_preset
from training.datasets.synthetic_faces import SyntheticFacesConfig, generate_faces, is_synthetic_faces
from training.evaluation import finite_mean
from training.unsup3d import Unsup3dTrainConfig, Unsup3dTraining, datasets, run
from training.unsup3d.config import PAPER_MODEL
from training.unsup3d.metrics import erode, mad, side

VARIANTS = {
    "full": [],
    "no_flip": ["flip=false"],
    "no_confidence": ["model.confidence=false"],
}
"""The ablation: name -> overrides of the preset."""

Variant = Literal["full", "no_flip", "no_confidence"]


class BenchUnsup3dOptions(Config):
    """The options of ``mono2mesh-train bench-unsup3d``."""

    out: Path
    """Working folder (data, runs, bench.json)."""
    data: str = ""
    """An existing synthetic face set (make-synthetic --category face) instead of generating one."""
    faces: int = 1000
    """Synthetic faces to generate (80/10/10 split)."""
    iterations: int = 0
    """Optimiser steps per variant; 0: the preset's (cpu: 2000)."""
    preset: str = "cpu"
    """Configuration preset of every variant."""
    overrides: Annotated[tuple[str, ...], Flag("--set", repeat=True, metavar="KEY=VALUE")] = ()
    """Extra overrides for every variant (repeatable)."""
    variants: tuple[Variant, ...] = ("full", "no_flip", "no_confidence")
    """Variants to train (comma-separated)."""
    timing_steps: int = 10
    """Training steps timed per device (median reported, after two warm-up steps)."""
    seed: int = 0
    """Seed of the data and of every run."""
    threads: int = 0
    """Torch CPU threads (0: torch's default). On a machine busy with other work 1 can be many times
    faster than 2 (see "Threads on a busy machine" in docs/BENCHMARKS.md)."""


def variant_config(options: BenchUnsup3dOptions, data: Path, name: str) -> Unsup3dTrainConfig:
    """The configuration of one variant: the preset, the options' overrides, the variant's."""
    config = apply_preset(Unsup3dTrainConfig(), options.preset)
    base: dict[str, Any] = {
        "data": str(data), "out": str(Path(options.out) / f"run_{name}"), "seed": options.seed,
        "resume": "auto", "progress": False,
    }  # fmt: skip
    if options.iterations:
        base.update(iterations=options.iterations, epochs=0)
    config = apply_overrides(config, base)
    return apply_overrides(config, [*options.overrides, *VARIANTS[name]])


def held_out_split(config: Unsup3dTrainConfig) -> Dataset[Any]:
    """The whole test split of the config's data."""
    _, test = datasets(apply_overrides(config, {"eval_split": "test", "eval_items": 0}))
    if test is None:
        raise FileNotFoundError(f"no test split in {config.data}")
    return test


def score(config: Unsup3dTrainConfig, model: torch.nn.Module, test: Dataset[Any]) -> dict[str, float]:
    """SIDE, MAD and the loss terms of ``model`` on ``test`` (rounded)."""
    method = Unsup3dTraining(config)
    device = next(model.parameters()).device
    model.eval()
    metrics = method.evaluate(model, device_loader(test, device, config.eval_batch_size or config.batch_size))
    return {k: round(v, 5) for k, v in metrics.items()}


def constant_depth_scores(test: Dataset[Any], fov: float) -> dict[str, float]:
    """SIDE and MAD of a constant depth map over the eroded ground-truth masks (the paper's null depth)."""
    items = default_collate([test[i] for i in range(len(test))])  # type: ignore[arg-type]
    depth_gt = items["depth"]  # (N, S, S)
    mask = erode(items["mask"][:, 0])
    flat = torch.ones_like(depth_gt)
    return {
        "side": round(finite_mean(side(flat, depth_gt, mask).tolist()).value, 5),
        "mad": round(finite_mean(mad(flat, depth_gt, mask, fov).tolist()).value, 5),
    }


def steps_per_second(
    config: Unsup3dTrainConfig, train_set: Dataset[Any], device: torch.device, steps: int
) -> dict[str, float]:
    """Full training steps of ``config`` per second on ``device`` (median of ``steps`` after 2 warm-ups)."""
    torch.manual_seed(config.seed)
    method = Unsup3dTraining(config, steps_per_epoch=1)
    model = method.build_model().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas,
                                 weight_decay=config.weight_decay)  # fmt: skip
    batch_size = config.batch_size
    items = [train_set[i % len(train_set)] for i in range(batch_size)]  # type: ignore[arg-type]
    batch = move_to_device(default_collate(items), device)
    times = []
    for index in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses = method.training_step(model, batch, index)
        optimiser.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= 2:
            times.append(time.perf_counter() - start)
    per_step = statistics.median(times)
    return {
        "batch": batch_size, "image_size": config.model.image_size, "seconds_per_step": round(per_step, 4),
        "steps_per_second": round(1.0 / per_step, 3), "images_per_second": round(batch_size / per_step, 1),
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def _data(options: BenchUnsup3dOptions, size: int) -> Path:
    if options.data:
        return Path(options.data)
    root = Path(options.out) / "data"
    if not is_synthetic_faces(root):
        generate_faces(root, SyntheticFacesConfig(n=options.faces, size=size, seed=options.seed))
    return root


def _run_command(options: BenchUnsup3dOptions) -> int:
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)
    first = variant_config(options, out / "data", "full")
    data = _data(options, first.model.image_size)
    first = variant_config(options, data, "full")
    train_set, _ = datasets(first)
    test = held_out_split(first)
    results: dict[str, Any] = {
        "machine": machine_info(), "preset": options.preset, "iterations": first.iterations,
        "overrides": list(options.overrides), "data": str(data), "train_items": len(train_set),  # type: ignore[arg-type]
        "test_items": len(test),  # type: ignore[arg-type]
        "perceptual_features": Unsup3dTraining(first).vgg_weights,
    }  # fmt: skip
    results["constant_depth"] = constant_depth_scores(test, first.model.fov)
    torch.manual_seed(options.seed)
    results["untrained"] = score(first, Unsup3dTraining(first).build_model(), test)
    for name in dict.fromkeys(options.variants):
        config = variant_config(options, data, name)
        started = time.perf_counter()
        result = run(config)
        results[name] = {
            "test": score(config, result.model, test), "steps": result.step,
            "seconds": round(time.perf_counter() - started, 1), "checkpoint": str(result.checkpoint),
        }  # fmt: skip
    results["cpu_training"] = steps_per_second(first, train_set, torch.device("cpu"), options.timing_steps)
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        paper = apply_overrides(
            first,
            {"model": PAPER_MODEL.model_dump(), "batch_size": 64, "perceptual_weight": 1.0,
             "depth_smoothness_weight": 0.0},
        )  # fmt: skip
        results["gpu_training"] = {
            "preset": steps_per_second(first, train_set, cuda, options.timing_steps),
            "paper": steps_per_second(paper, datasets(paper)[0], cuda, options.timing_steps),
        }
    text = json.dumps(results, indent=2)
    (out / "bench.json").write_text(text)
    print(text)
    return 0


COMMAND = BenchSpec(
    "bench-unsup3d",
    "unsup3d on synthetic faces: full model vs. no flip vs. no confidence, SIDE/MAD, steps/s (JSON)",
    __doc__, BenchUnsup3dOptions, _run_command,
)  # fmt: skip
"""``mono2mesh-train bench-unsup3d``: one flag per field of ``BenchUnsup3dOptions``."""
