"""Typed training configuration: ``TrainConfig``, the settings every method's training shares.

``TrainConfig`` is a ``backend.config.Config`` (a frozen pydantic model; the docstring under each field is
its help text) holding device, precision, batch, schedule, intervals, seed, output, resume and pretrained
weights. A method's config subclasses it and adds its own fields, notably ``model`` (the backend's model
config) and its data options; its presets are instances built with only the fields they set::

    class SoftRasTrainConfig(TrainConfig):
        model: SoftRasModelConfig = SoftRasModelConfig()
        \"\"\"Network hyper-parameters (saved in every checkpoint; the backend rebuilds from them).\"\"\"

    SoftRasTrainConfig.PRESETS = {"cpu": SoftRasTrainConfig(iterations=3000, lr=1e-3)}

Cross-field rules are ``@model_validator(mode="after")`` methods (each with its own name: pydantic runs
the base's and the subclass's). The names ``config``, ``preset`` and ``set`` are taken by the command line
and cannot be fields. ``config.model_dump(mode="json")`` is what checkpoints store and
``model_validate`` reads it back (``ConfigError`` naming the field for unknown keys or bad values).

Re-exported from ``backend.config`` / ``backend.config_cli`` for the trainers: ``ConfigError``,
``apply_overrides``, ``apply_preset``, ``available_presets``, ``add_config_arguments``,
``config_from_args``, ``build_parser``, ``parse_config``. ``lr_factor`` is the learning-rate schedule the
loop applies (a multiplier of ``lr``).
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import model_validator

from backend.config import Config, ConfigError, apply_overrides, apply_preset, available_presets
from backend.config_cli import add_config_arguments, build_parser, config_from_args, parse_config

__all__ = [
    "DEVICES",
    "RESUME_AUTO",
    "Config",
    "ConfigError",
    "Precision",
    "PretrainedPolicy",
    "Schedule",
    "TrainConfig",
    "add_config_arguments",
    "apply_overrides",
    "apply_preset",
    "available_presets",
    "build_parser",
    "config_from_args",
    "lr_factor",
    "parse_config",
]

DEVICES = ("auto", "cpu", "cuda", "mps")
RESUME_AUTO = "auto"

Precision = Literal["fp32", "fp16", "bf16"]
Schedule = Literal["constant", "step", "inverse", "cosine"]
PretrainedPolicy = Literal["auto", "none", "download", "require"]


class TrainConfig(Config):
    """Settings every method's training shares. Subclass to add a method's own fields."""

    device: str = "auto"
    """Torch device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps"."""

    precision: Precision = "fp32"
    """Arithmetic: "fp16"/"bf16" use torch.amp autocast (+ GradScaler for fp16) on CUDA; fp32 elsewhere."""

    batch_size: int = 64
    """Global batch (images per optimiser step, summed over all processes); divisible by the process count."""

    eval_batch_size: int = 0
    """Batch of the evaluation loader; 0 means batch_size divided by the process count."""

    iterations: int = 1000
    """Optimiser steps to train for (ignored when epochs is set)."""

    epochs: int = 0
    """When > 0, train for this many passes over the training set instead of a number of iterations."""

    lr: float = 1e-4
    """Base learning rate of the Adam optimiser (multiplied by the schedule's factor)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""

    weight_decay: float = 0.0
    """Adam's L2 weight decay (unsup3d uses 5e-4)."""

    lr_schedule: Schedule = "constant"
    """Learning-rate schedule: constant; step (times lr_gamma at each of lr_milestones, SoftRas: x0.3 at
    150k/250k); inverse (1 / (1 + step * lr_inverse_decay), UMR); cosine (from 1 to lr_min_factor)."""

    lr_milestones: tuple[int, ...] = ()
    """Steps at which the "step" schedule multiplies the learning rate by lr_gamma."""

    lr_gamma: float = 0.3
    """Factor applied at each milestone of the "step" schedule."""

    lr_inverse_decay: float = 5e-4
    """Decay rate k of the "inverse" schedule lr0 / (1 + step * k) (UMR: 5e-4)."""

    lr_min_factor: float = 0.0
    """Final learning-rate factor of the "cosine" schedule."""

    grad_clip: float = 0.0
    """Clip the global gradient L2 norm to this value; 0 disables clipping."""

    log_every: int = 50
    """Steps between scalar logs (TensorBoard, history.jsonl, progress bar)."""

    eval_every: int = 1000
    """Steps between evaluations (there is always one at the end); 0 evaluates only at the end."""

    image_every: int = 1000
    """Steps between image grids (input | reconstruction | novel views); 0 disables them."""

    image_count: int = 4
    """Number of evaluation items shown in each image grid."""

    checkpoint_every: int = 1000
    """Steps between resumable checkpoints (always also at the end); 0 writes only the final one."""

    keep_checkpoints: int = 2
    """Periodic checkpoints kept in <out>/checkpoints (older ones are deleted); 0 keeps all."""

    seed: int = 0
    """Seed of python's, numpy's and torch's generators, of the shuffling and of the loader workers."""

    workers: int = 0
    """DataLoader worker processes (0 loads in the main process; resume is bitwise exact only then)."""

    shuffle: bool = True
    """Shuffle the training set every epoch (a permutation derived from seed and epoch)."""

    out: str = "runs/train"
    """Run folder: checkpoints/, <method>.safetensors + .json (final), history.jsonl, report/, tensorboard/"""

    resume: str = ""
    """Resume: "" starts fresh (refused if out already holds a run), "auto" continues from the newest
    checkpoint in out (or starts fresh), a path continues from that <stem>.state.json."""

    pretrained: PretrainedPolicy = "auto"
    """ImageNet encoder weights: auto (use them if already on this machine, else random init with a
    warning), none (random init), download (let torchvision fetch them), require (error if absent)."""

    pretrained_path: str = ""
    """A weights file (.pth state dict or .safetensors) or a folder holding torchvision's file; "" uses the
    torch hub cache ($TORCH_HOME/hub/checkpoints)."""

    tensorboard: bool = True
    """Write TensorBoard scalars and images to <out>/tensorboard when tensorboard is installed."""

    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""

    @model_validator(mode="after")
    def _check_train_config(self) -> Self:
        """Values outside their documented range (the message names the field)."""
        device = self.device
        if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
            raise ValueError(f"device {device!r} is not one of {', '.join(DEVICES)} or cuda:N")
        positive = {
            "batch_size": self.batch_size,
            "image_count": self.image_count,
            "log_every": self.log_every,
        }
        if self.epochs == 0:
            positive["iterations"] = self.iterations
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in (
            "eval_batch_size", "epochs", "eval_every", "image_every", "checkpoint_every", "keep_checkpoints",
            "workers", "grad_clip", "weight_decay", "lr_inverse_decay",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing, got {list(self.lr_milestones)}")
        if not 0.0 <= self.lr_min_factor <= 1.0:
            raise ValueError(f"lr_min_factor must be in [0, 1], got {self.lr_min_factor}")
        return self


TrainConfig.PRESETS = {
    "smoke": TrainConfig(
        iterations=20, epochs=0, batch_size=8, log_every=5, eval_every=10, image_every=10, checkpoint_every=10
    ),
}


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of ``config.lr`` for optimiser step ``step`` (0-based) of ``total_steps``.

    >>> cfg = TrainConfig(lr_schedule="step", lr_milestones=(150, 250), lr_gamma=0.3)
    >>> [round(lr_factor(cfg, s, 300), 4) for s in (0, 149, 150, 250)]
    [1.0, 1.0, 0.3, 0.09]
    >>> lr_factor(TrainConfig(lr_schedule="inverse"), 2000, 10_000)
    0.5
    """
    if config.lr_schedule == "step":
        return float(config.lr_gamma ** sum(step >= milestone for milestone in config.lr_milestones))
    if config.lr_schedule == "inverse":
        return 1.0 / (1.0 + step * config.lr_inverse_decay)
    if config.lr_schedule == "cosine":
        progress = min(step / max(total_steps, 1), 1.0)
        low = config.lr_min_factor
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
