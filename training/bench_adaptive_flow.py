"""``mono2mesh-train bench-adaptive-flow``: the seed paper's evidence and ablation on synthetic birds (JSON).

1. Generates a synthetic bird set in CMR's CUB layout (``training.datasets.synthetic``: one view per
   object, random cameras, true part maps, ground-truth meshes) unless ``--data`` names one.
2. Stage 1 (``--preset stage1``): learns the template from the sphere.
3. Stage 2 from the stage-1 checkpoint, three times with the same data and seed: the full model, without
   D_var (``model.variance=false``) and without the FID loss (``fid_weight=0``), the paper's ablation.
4. Evaluates every run on the held-out test split: ``mask_iou`` and ``ssim`` at the predicted camera (the
   paper's Table 1 metrics), ``novel_iou`` and ``novel_ssim`` against the ground-truth objects turned by 90,
   180 and 270 degrees, ``fid`` when Inception weights are on the machine; and the untrained network.
5. Times inference per image (batch 1, the network's forward pass plus the texture sampling, no export) on
   the CPU, and training throughput (images/s, full stage-2 steps) on a GPU when there is one.

Machine and date come with the figures (``backend.bench.machine.machine_info``).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from torch.utils.data import DataLoader

from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag
from backend.models.adaptive_flow import sample_texture
from training.adaptive_flow import (
    AdaptiveFlowTrainConfig,
    AdaptiveFlowTraining,
    datasets,
    run,
    stage_config,
)
from training.batches import device_loader, move_to_device
from training.commands import BenchSpec
from training.config import apply_overrides
from training.datasets.synthetic import SyntheticConfig, generate

VARIANTS = {
    "full": [],
    "no_variance": ["model.variance=false"],
    "no_fid": ["fid_weight=0"],
}
"""Stage-2 ablation: name -> overrides on the stage-2 configuration."""


Variant = Literal["full", "no_variance", "no_fid"]


class BenchAdaptiveFlowOptions(Config):
    """The options of ``mono2mesh-train bench-adaptive-flow``."""

    out: Path
    """Working folder (data, runs, bench.json)."""
    data: str = ""
    """An existing CUB-layout folder instead of generating one."""
    objects: int = 600
    """Synthetic birds to generate (80/10/10 split)."""
    stage1_iterations: int = 200
    """Stage-1 optimiser steps."""
    stage1_checkpoint: str = ""
    """Reuse this stage-1 checkpoint instead of training one."""
    stage2_iterations: int = 300
    """Stage-2 steps per variant."""
    preset: str = "cpu"
    """Configuration preset applied to both stages."""
    overrides: Annotated[tuple[str, ...], Flag("--set", repeat=True, metavar="KEY=VALUE")] = ()
    """Extra overrides for both stages (repeatable)."""
    variants: tuple[Variant, ...] = ("full", "no_variance", "no_fid")
    """Stage-2 variants to run (comma-separated)."""
    timing_repeats: int = 20
    """Inference timings (median reported)."""
    seed: int = 0
    """Seed of the data and of both stages."""


def _config(
    args: BenchAdaptiveFlowOptions, data_root: Path, stage: int, out: Path, extra: list[str]
) -> AdaptiveFlowTrainConfig:
    return stage_config(
        data_root, stage, out, preset=args.preset, seed=args.seed, overrides=[*args.overrides, *extra]
    )


def _evaluate(config: AdaptiveFlowTrainConfig, model: torch.nn.Module, eval_set: Any) -> dict[str, float]:
    method = AdaptiveFlowTraining(config)
    loader = device_loader(eval_set, next(model.parameters()).device, config.batch_size)
    model.eval()
    return {k: round(v, 4) for k, v in method.evaluate(model, loader).items()}


def inference_ms(model: torch.nn.Module, size: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of one image (batch 1): the network's forward pass, and with the texture."""
    network: torch.nn.Module = getattr(model, "network", model)
    network = network.to(device).eval()
    image = torch.rand(1, 3, size, size, device=device)
    forward, textured = [], []
    with torch.no_grad():
        for index in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            output = network(image)
            if device.type == "cuda":
                torch.cuda.synchronize()
            middle = time.perf_counter()
            sample_texture(image, output.flow, output.variance)
            if device.type == "cuda":
                torch.cuda.synchronize()
            end = time.perf_counter()
            if index >= 2:  # warm-up
                forward.append(1000 * (middle - start))
                textured.append(1000 * (end - start))
    return {
        "forward_ms": round(statistics.median(forward), 2),
        "with_texture_ms": round(statistics.median(textured), 2),
    }


def gpu_throughput(
    config: AdaptiveFlowTrainConfig, train_set: Any, steps: int = 20
) -> dict[str, float] | None:
    """Training images per second of full stage-2 steps on the GPU (None without one)."""
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    method = AdaptiveFlowTraining(config)
    model = method.build_model().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True, num_workers=4)
    batches = [move_to_device(b, device) for _, b in zip(range(steps + 3), loader, strict=False)]
    times = []
    for index, batch in enumerate(batches):
        torch.cuda.synchronize()
        start = time.perf_counter()
        losses = method.training_step(model, batch, index)
        optimiser.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimiser.step()
        torch.cuda.synchronize()
        if index >= 3:
            times.append(time.perf_counter() - start)
    per_step = statistics.median(times)
    return {"batch": config.batch_size, "seconds_per_step": round(per_step, 4),
            "images_per_second": round(config.batch_size / per_step, 1)}  # fmt: skip


def _run_command(args: BenchAdaptiveFlowOptions) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.data:
        data_root = Path(args.data)
    else:
        data_root = out / "data"
        if not (data_root / "data" / "train_cub_cleaned.mat").is_file():
            synthetic = SyntheticConfig(
                category="bird", n=args.objects, layout="cub", size=128, background="noise", seed=args.seed
            )
            generate(data_root, synthetic)
    results: dict[str, Any] = {"machine": machine_info(), "objects": args.objects, "preset": args.preset}

    stage1 = _config(args, data_root, 1, out / "stage1", [f"iterations={args.stage1_iterations}"])
    train_set, eval_set = datasets(stage1)
    results["train_items"] = len(train_set)
    results["eval_items"] = len(eval_set) if eval_set is not None else 0  # type: ignore[arg-type]
    untrained = AdaptiveFlowTraining(stage1).build_model()
    results["untrained"] = _evaluate(stage1, untrained, eval_set)
    if args.stage1_checkpoint:
        checkpoint = Path(args.stage1_checkpoint)
        meta = json.loads(checkpoint.with_suffix(".json").read_text())
        results["stage1"] = {"metrics": meta["metrics"], "steps": meta["step"], "reused": str(checkpoint)}
    else:
        started = time.perf_counter()
        first = run(stage1, train_set, eval_set)
        checkpoint = first.checkpoint  # type: ignore[assignment]
        results["stage1"] = {"metrics": {k: round(v, 4) for k, v in first.metrics.items()},
                             "steps": args.stage1_iterations,
                             "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    stage2_base = [f"iterations={args.stage2_iterations}", f"stage1_checkpoint={checkpoint}"]
    for name in dict.fromkeys(args.variants):
        config = _config(args, data_root, 2, out / f"stage2_{name}", [*stage2_base, *VARIANTS[name]])
        started = time.perf_counter()
        result = run(config, *datasets(config))
        results[name] = {"metrics": {k: round(v, 4) for k, v in result.metrics.items()},
                         "steps": args.stage2_iterations,
                         "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        if name == "full":
            results["inference_cpu"] = inference_ms(
                result.model, config.model.image_size, args.timing_repeats, torch.device("cpu")
            )
            results["gpu_training"] = gpu_throughput(
                apply_overrides(config, {"batch_size": 64}), datasets(config)[0]
            )
    text = json.dumps(results, indent=2)
    (out / "bench.json").write_text(text)
    print(text)
    return 0


COMMAND = BenchSpec(
    "bench-adaptive-flow",
    "train adaptive-flow on synthetic birds: full model vs. no D_var vs. no FID, timings (JSON)",
    __doc__, BenchAdaptiveFlowOptions, _run_command,
)  # fmt: skip
"""``mono2mesh-train bench-adaptive-flow``: one flag per field of ``BenchAdaptiveFlowOptions``."""
