"""``mono2mesh-train bench-softras``: evidence that the ``softras`` network learns, as JSON.

1. Generates a synthetic category in the SoftRas layout (``training.datasets.synthetic``; train and
   held-out val objects, ``views`` random views each, 64 x 64).
2. For each encoder (conv, resnet, attention): evaluates the untrained network, trains it with
   SoftRas's loss for ``iterations`` steps, and evaluates it again on the held-out objects:
   3D IoU x 100 on SoftRas's 32^3 grid (``iou3d``), silhouette IoU of the hard render at the input
   view (``silhouette_iou``), Chamfer x 100 against the ground-truth mesh (``chamfer``).
3. Runs ``fit`` on one view of each held-out object. ``fit`` finds its own weak-perspective camera and
   a shape in its own frame, so only its silhouette IoU (at its fitted camera) is comparable; a 3D
   IoU would need an alignment that this benchmark does not do, and it is not reported.

Machine and date come with the figures (``backend.bench.machine.machine_info``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.bench.machine import machine_info
from backend.config import Config
from backend.methods.base import no_progress
from backend.methods.fit import FitMethod, FitOptions
from backend.models.encoders import EncoderKind
from training.batches import device_loader
from training.commands import BenchSpec
from training.datasets.synthetic import SyntheticConfig, generate
from training.loop import train
from training.softras import SoftRasTrainConfig, SoftRasTraining, datasets


class BenchSoftRasOptions(Config):
    """The options of ``mono2mesh-train bench-softras``."""

    category: str = "bird"
    """Synthetic category."""
    objects: int = 400
    """Objects generated."""
    views: int = 8
    """Views per object."""
    val_fraction: float = 0.15
    """Held-out share of the objects."""
    iterations: int = 600
    """Training steps per encoder."""
    batch_size: int = 16
    """Objects per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    encoders: tuple[EncoderKind, ...] = ("conv", "resnet", "attention")
    """Comma-separated encoders to train."""
    eval_views: int = 2
    """Input views per held-out object."""
    fit_objects: int = 20
    """Held-out objects fit runs on."""
    device: str = "cpu"
    """Torch device."""
    threads: int = 2
    """Torch CPU threads."""
    out: Path = Path("runs/bench-softras")
    """Work folder."""
    seed: int = 0
    """Seed of the data, the networks and the training."""


def run(args: BenchSoftRasOptions) -> int:
    torch.set_num_threads(args.threads)
    encoders = list(dict.fromkeys(args.encoders))
    data = args.out / "data"
    started = time.perf_counter()
    if not (data / f"{args.category}_val_images.npz").is_file():
        generate(
            data,
            SyntheticConfig(
                category=args.category, n=args.objects, layout="shapenet", views=args.views,
                seed=args.seed, splits=(("train", 1 - args.val_fraction), ("val", args.val_fraction)),
            ),
        )  # fmt: skip
    generation_s = time.perf_counter() - started
    results: dict[str, Any] = {
        "benchmark": "softras",
        "machine": machine_info(),
        "category": args.category,
        "objects": args.objects,
        "views": args.views,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "generation_s": round(generation_s, 1),
        "encoders": {},
    }
    for encoder in encoders:
        config = SoftRasTrainConfig.model_validate(
            {
                "data": str(data), "out": str(args.out / f"run-{encoder}"), "device": args.device,
                "iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr,
                "lr_milestones": [int(args.iterations * 0.8)], "eval_views": args.eval_views,
                "eval_every": 0, "image_every": args.iterations, "checkpoint_every": 0,
                "log_every": max(args.iterations // 20, 1), "seed": args.seed, "progress": False,
                "tensorboard": False, "model": {"encoder": encoder}, "resume": "",
            }
        )  # fmt: skip
        train_set, eval_set = datasets(config)
        assert eval_set is not None, "the synthetic set has a val split"
        method = SoftRasTraining(config)
        torch.manual_seed(args.seed)
        untrained_model = method.build_model().to(args.device).eval()
        loader = device_loader(eval_set, args.device, batch_size=8)
        untrained = method.evaluate(untrained_model, loader)
        clock = time.perf_counter()
        result = train(method, config, train_set, eval_set)
        seconds = time.perf_counter() - clock
        results["encoders"][encoder] = {
            "untrained": _rounded(untrained),
            "trained": _rounded(result.metrics),
            "train_s": round(seconds, 1),
            "s_per_step": round(seconds / max(args.iterations, 1), 3),
            "parameters": sum(p.numel() for p in result.model.parameters()),
            "checkpoint": str(result.checkpoint),
        }
        print(json.dumps({encoder: results["encoders"][encoder]}), flush=True)
    results["fit"] = _fit_baseline(data, args)
    print(json.dumps(results, indent=2))
    return 0


def _fit_baseline(data: Path, args: BenchSoftRasOptions) -> dict[str, Any]:
    config = SoftRasTrainConfig(data=str(data), eval_views=1, device="cpu", iterations=1)
    _, eval_set = datasets(config)
    assert eval_set is not None
    fit = FitMethod(args.device)
    options = FitOptions(crop_size=64, resolution=64, texture_size=32)
    scores, seconds = [], []
    for index in range(min(args.fit_objects, len(eval_set))):
        item = eval_set[index]
        image = item["image"][0].permute(1, 2, 0).numpy().astype(np.float32)
        mask = item["mask"][0, 0].numpy() > 0.5
        clock = time.perf_counter()
        result = fit.reconstruct(image, mask, options, no_progress)
        seconds.append(time.perf_counter() - clock)
        scores.append(float(result.report.silhouette_iou or 0.0))
    return {
        "objects": len(scores),
        "silhouette_iou": round(float(np.mean(scores)), 4),
        "s_per_object": round(float(np.mean(seconds)), 2),
        "note": "fit's silhouette IoU at its own fitted camera; no 3D IoU (fit's frame is not aligned)",
    }


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {key: round(float(value), 4) for key, value in metrics.items()}


COMMAND = BenchSpec(
    "bench-softras",
    "train softras on a synthetic category and compare encoders, untrained and fit (JSON)",
    __doc__, BenchSoftRasOptions, run,
)  # fmt: skip
"""``mono2mesh-train bench-softras``: one flag per field of ``BenchSoftRasOptions``."""
