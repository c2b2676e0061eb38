"""The GPU check's training runs: tiny synthetic sets and one short ``mono2mesh-train`` run per trainer and
precision.

``make_data(root)`` writes the sets every trainer reads under ``root/data`` (once; later calls reuse
them). ``trainer_arguments`` is the command line of one run of ``steps`` steps with its evaluation, image
grid and mid-run checkpoint, into ``run_folder(root, trainer, precision)``; ``train_one`` runs it in this
process and checks it: exit status 0, finite losses, the final checkpoint (``FINAL_NAME``) with the
precision and step count it was given. ``TRAINERS`` lists every trainer command (adaptive-flow as its two
stages; stage 2 starts from stage 1's fp32 checkpoint), ``PRECISIONS`` the precisions each runs in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from training.gpu_check.check import PartFailure

PRECISIONS = ("fp32", "fp16", "bf16")


def make_data(root: Path) -> dict[str, Any]:
    """The tiny synthetic sets every trainer reads, under ``root/data`` (generated once, then reused)."""
    from training.datasets.synthetic import SyntheticConfig, generate

    splits = (("train", 0.75), ("val", 0.25))
    sets = {
        "shapenet64": SyntheticConfig(
            category="bird", n=8, layout="shapenet", views=4, seed=3, splits=splits
        ),
        "shapenet32": SyntheticConfig(
            category="bird", n=8, layout="shapenet", views=4, size=32, seed=3, splits=splits
        ),
        "cub64": SyntheticConfig(
            category="bird",
            n=12,
            layout="cub",
            size=64,
            seed=5,
            background="noise",
            splits=(("train", 0.75), ("test", 0.25)),
        ),
        "folder32": SyntheticConfig(
            category="bird", n=10, layout="folder", size=32, seed=2, background="noise"
        ),
    }
    for name, config in sets.items():
        if not (root / "data" / name / ".complete").is_file():
            generate(root / "data" / name, config)
            (root / "data" / name / ".complete").touch()
    faces = root / "data" / "faces32"  # unsup3d's synthetic faces (their own generator)
    if not (faces / ".complete").is_file():
        from training.datasets.synthetic_faces import SyntheticFacesConfig, generate_faces

        generate_faces(faces, SyntheticFacesConfig(n=12, size=32, seed=4, splits=splits, supersample=1))
        (faces / ".complete").touch()
    return {"sets": sorted([*sets, "faces32"])}


COMMON = ["--progress", "false", "--tensorboard", "false"]
EVERY_TEN_STEPS = ["--eval-every", "10", "--image-every", "10", "--checkpoint-every", "10"]
"""An evaluation, an image grid and a checkpoint every 10 steps (for the presets that space them wider)."""


def sets(*pairs: str) -> list[str]:
    """``--set KEY=VALUE`` flags for each pair."""
    return [item for pair in pairs for item in ("--set", pair)]


def run_folder(root: Path, trainer: str, precision: str) -> Path:
    """Where ``train_one`` puts the run of ``trainer`` in ``precision``."""
    return root / "runs" / f"{trainer}-{precision}"


def trainer_arguments(trainer: str, precision: str, device: str, root: Path, steps: int) -> list[str]:
    """The ``mono2mesh-train`` arguments of one tiny run of ``steps`` steps with evaluation and images,
    reading ``make_data(root)``'s sets and writing ``run_folder(root, trainer, precision)``."""
    data, out = root / "data", str(run_folder(root, trainer, precision))
    base = ["--device", device, "--precision", precision, "--out", out, "--iterations", str(steps), *COMMON]
    base += ["--log-every", "1"]
    if trainer == "softras":
        return [
            "softras",
            "--data",
            str(data / "shapenet64"),
            "--preset",
            "smoke",
            *base,
            "--batch-size",
            "4",
            "--eval-views",
            "1",
        ]
    adaptive = sets(
        "model.image_size=64",
        "model.flow_height=32",
        "model.flow_width=64",
        "render_size=32",
        "batch_size=4",
        "lr=1e-3",
        "vgg_layers=1",
        "fid_features=conv",
        "fid_dims=8",
        "eval_items=3",
        "pretrained=none",
    )
    adaptive = ["adaptive-flow", "--data", str(data / "cub64"), "--preset", "smoke", *adaptive, *base]
    if trainer == "adaptive-flow-stage1":
        return [*adaptive, "--preset", "stage1"]
    if trainer == "adaptive-flow-stage2":
        stage1 = run_folder(root, "adaptive-flow-stage1", "fp32") / "adaptive-flow.safetensors"
        if not stage1.is_file():
            raise PartFailure(f"stage 2 needs stage 1's fp32 checkpoint {stage1}, which is missing")
        return [*adaptive, *sets(f"stage1_checkpoint={stage1}")]
    if trainer == "pointcloud-poisson":
        return [
            "pointcloud-poisson",
            "--data",
            str(data / "shapenet32"),
            "--preset",
            "cpu",
            *base,
            *sets("model.image_size=32", "model.channels=4", "model.z_dim=32", "model.hidden=32"),
            "--batch-size",
            "2",
            "--views-per-item",
            "2",
            "--eval-views",
            "1",
            "--eval-objects",
            "1",
            "--ground-truth-points",
            "500",
            *EVERY_TEN_STEPS,
        ]
    if trainer == "texture-completion":
        return [
            "texture-completion",
            "--data",
            str(data / "folder32"),
            "--preset",
            "cpu",
            *base,
            "--batch-size",
            "4",
            "--pretrained",
            "none",
            *EVERY_TEN_STEPS,
            *sets("model.image_size=32", "model.depth=3"),
        ]
    if trainer == "mesh-inversion-gan":  # the pseudo ground truth (a fit per photo) is built on the device
        return [
            "mesh-inversion-gan",
            "--data",
            str(data / "cub64"),
            "--preset",
            "cpu",
            *base,
            "--batch-size",
            "4",
            "--eval-items",
            "3",
            "--pretrained",
            "none",
            "--pseudo-gt-fit-iterations",
            "3",
            "--pseudo-gt-dir",
            str(Path(out) / "pseudo-gt"),
            "--uv-discriminator-channels",
            "8",
            "--image-discriminator-channels",
            "8",
            "--views",
            "2",
            *EVERY_TEN_STEPS,
            *sets("model.width=4"),
        ]
    if trainer == "unsup3d":
        return [
            "unsup3d",
            "--data",
            str(data / "faces32"),
            "--preset",
            "cpu",
            *base,
            "--batch-size",
            "4",
            "--eval-items",
            "3",
            "--perceptual-weight",
            "1",
            *EVERY_TEN_STEPS,
        ]
    raise ValueError(f"unknown trainer {trainer!r}")


TRAINERS = (
    "softras",
    "adaptive-flow-stage1",
    "adaptive-flow-stage2",
    "pointcloud-poisson",
    "texture-completion",
    "mesh-inversion-gan",
    "unsup3d",
)
FINAL_NAME = {
    "softras": "softras",
    "adaptive-flow-stage1": "adaptive-flow",
    "adaptive-flow-stage2": "adaptive-flow",
    "pointcloud-poisson": "pointcloud-poisson",
    "texture-completion": "texture-completion",
    "mesh-inversion-gan": "mesh-inversion",
    "unsup3d": "unsup3d",
}


def train_one(trainer: str, precision: str, device: str, root: Path, steps: int) -> dict[str, Any]:
    """One tiny training run in this process (``trainer_arguments``): raises ``PartFailure`` unless it exits
    0 with finite losses and writes its final checkpoint with the precision and step count it was given."""
    from training.cli import main as train_main

    arguments = trainer_arguments(trainer, precision, device, root, steps)
    out = run_folder(root, trainer, precision)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    status = train_main(arguments)
    if status != 0:
        raise PartFailure(f"mono2mesh-train {' '.join(arguments)} exited with {status}")
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    if len(losses) < 2 or not all(math.isfinite(v) for v in losses):
        raise PartFailure(f"training losses are missing or not finite: {losses}")
    checkpoint = out / f"{FINAL_NAME[trainer]}.safetensors"
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    if meta["config"]["precision"] != precision or meta["step"] != steps:
        raise PartFailure(f"the checkpoint says precision {meta['config']['precision']}, step {meta['step']}")
    evaluations = [r for r in records if r.get("kind") == "eval"]
    steps_per_second = [r["steps_per_second"] for r in records if "steps_per_second" in r]
    return {
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
        "evaluations": len(evaluations),
        "steps_per_second": round(steps_per_second[-1], 2) if steps_per_second else None,
        "checkpoint": str(checkpoint),
    }
