"""``TextureCompletionTrainConfig``: every setting of ``texture-completion`` training, and its presets.

The fields are pix2pix's hyper-parameters (each docstring names its source) on top of
``training.config.TrainConfig``: the generator (``model``, the backend's ``TextureGeneratorConfig``), the
data (image + mask crops, folder or CUB layout), the holes (``training.datasets.holes.HoleConfig``), the
loss weights and the PatchGAN discriminator. Presets: ``paper`` (the defaults) and ``cpu``, a minutes-long
run. The validator refuses weights that train nothing and a PatchGAN deeper than the crops allow.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import model_validator

from backend.models.texture_completion import TextureGeneratorConfig
from training.config import TrainConfig
from training.datasets.holes import HoleConfig
from training.losses.adversarial import GanLoss


class TextureCompletionTrainConfig(TrainConfig):
    """The texture generator's training (module docstring); defaults are the "paper" preset."""

    model: TextureGeneratorConfig = TextureGeneratorConfig()
    """Generator hyper-parameters (saved in every checkpoint; the backend rebuilds the generator from them).
    model.image_size is also the side of the training crops."""

    data: str = ""
    """Image + mask data: a folder (images/ + masks/, or <split>/images + <split>/masks) or a CUB layout."""

    layout: Literal["folder", "cub"] = "folder"
    """"folder" (ImageFolderDataset; masks optional: all ones without) or "cub" (CMR's CUB layout)."""

    annotation_root: str = ""
    """CUB layout: CMR's cachedir/cub (data/, sfm/) when it is not inside data."""

    train_split: str = "train"
    """Folder layout: the subfolder trained on (data itself when it has none); CUB: the split file name."""

    eval_split: str = "val"
    """Split evaluated (the folder layout's subfolder, CUB's split file); none when it does not exist."""

    eval_items: int = 0
    """Evaluate only the first N items of the evaluation split; 0 evaluates all."""

    augment: bool = True
    """Jitter and mirror the training crops (the evaluation crops never are)."""

    holes: HoleConfig = HoleConfig()
    """The random holes hidden in each training crop."""

    l1_weight: float = 100.0
    """Weight of the L1 over the hidden object pixels (pix2pix's lambda: 100)."""

    gan_weight: float = 1.0
    """Weight of the adversarial terms (pix2pix: 1); 0 trains the generator on L1 alone."""

    gan_loss: GanLoss = "lsgan"
    """"lsgan" (least squares, CycleGAN/pix2pix code's lsgan) or "hinge" (SN-PatchGAN)."""

    discriminator_channels: int = 64
    """Channels of the PatchGAN's first layer (pix2pix ndf: 64)."""

    discriminator_layers: int = 3
    """Stride-2 layers of the PatchGAN: 3 sees 70 x 70 pixels per logit (pix2pix), 2 sees 34, 1 sees 16."""

    discriminator_lr_factor: float = 1.0
    """The discriminator's learning rate is lr times this (pix2pix: 1)."""

    iterations: int = 100_000
    """Optimiser steps (~270 epochs of CUB's 5964 training photos at batch 16)."""

    batch_size: int = 16
    """Global batch (crops per step)."""

    lr: float = 2e-4
    """Adam learning rate of the generator (pix2pix: 2e-4)."""

    betas: tuple[float, float] = (0.5, 0.999)
    """Adam's betas (pix2pix: 0.5, 0.999)."""

    out: str = "runs/texture-completion"
    """Run folder (checkpoints, final texture-completion.safetensors + .json, history, report)."""

    @model_validator(mode="after")
    def _check_texture_completion(self) -> Self:
        for name in ("l1_weight", "gan_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.l1_weight == 0 and self.gan_weight == 0:
            raise ValueError("l1_weight and gan_weight are both 0: nothing would train the generator")
        if self.gan_loss not in ("lsgan", "hinge"):
            raise ValueError(f"gan_loss must be 'lsgan' or 'hinge', got {self.gan_loss!r}")
        if self.discriminator_channels < 1 or not 1 <= self.discriminator_layers <= 6:
            raise ValueError(
                f"discriminator_channels must be positive and discriminator_layers in 1..6, got "
                f"{self.discriminator_channels} and {self.discriminator_layers}"
            )
        smallest = 2 ** (self.discriminator_layers + 2)
        if self.model.image_size < smallest:
            raise ValueError(
                f"model.image_size {self.model.image_size} is too small for a PatchGAN of "
                f"{self.discriminator_layers} layers (needs >= {smallest}); lower discriminator_layers"
            )
        if not (self.discriminator_lr_factor > 0 and math.isfinite(self.discriminator_lr_factor)):
            raise ValueError(f"discriminator_lr_factor must be positive, got {self.discriminator_lr_factor}")
        return self


TextureCompletionTrainConfig.PRESETS = {
    "paper": TextureCompletionTrainConfig(),
    "cpu": TextureCompletionTrainConfig(
        iterations=1500, batch_size=8,
        model=TextureGeneratorConfig(image_size=64, base_channels=16, depth=4, working_size=128),
        discriminator_channels=32, discriminator_layers=2, eval_every=500, image_every=500,
        checkpoint_every=500, log_every=50,
    ),
}  # fmt: skip
