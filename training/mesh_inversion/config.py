"""``MeshInversionTrainConfig``: every setting of MeshInversion's GAN pre-training, and its presets.

On top of ``training.config.TrainConfig``: the generator (``model``, the backend's
``MeshInversionModelConfig``, stored in every checkpoint), the data (a CUB-layout folder; its pseudo
ground truth is built once and cached, ``pseudo_gt_dir``), the two discriminators and the loss weights.
Sources: MeshInversion (eq. 1-3, ``img_gan_loss_wt`` 0.2, D_I a 70 x 70 PatchGAN with ndf 64, least-squares
losses, 600 epochs at batch 32, texture 512) and ConvMesh's GAN (lr_g 1e-4, lr_d 4e-4, mesh regulariser
1e-4, generator EMA 0.999, mesh map 32, z 64); Adam's betas (0, 0.9) are the SAGAN/BigGAN two-time-scale
recipe that ConvMesh's learning rates come from (ours: the reference notes do not give them).

Presets: ``paper`` (the published sizes and schedule, the defaults) and ``cpu`` (texture 32, crops 64, a
few hundred steps: minutes on two cores, pseudo ground truth included for a small data set).
"""

from __future__ import annotations

import math
from typing import Self

from pydantic import model_validator

from backend.models.mesh_inversion import MeshInversionModelConfig
from training.config import TrainConfig
from training.losses.adversarial import GanLoss

PAPER_MODEL = MeshInversionModelConfig(texture_size=512, width=64)
"""The paper's generator: texture 512, mesh map 32, z 64, symmetric."""


class MeshInversionTrainConfig(TrainConfig):
    """MeshInversion's GAN pre-training (module docstring); the defaults are the "paper" preset."""

    model: MeshInversionModelConfig = PAPER_MODEL
    """Generator hyper-parameters (saved in every checkpoint; the backend rebuilds the generator from them).
    model.mesh_size and model.texture_size are also the pseudo ground truth's map sizes."""

    data: str = ""
    """A CUB layout (CMR's: images/, data/<split>_cub_cleaned.mat, sfm/; real CUB or make-synthetic's)."""

    annotation_root: str = ""
    """CMR's cachedir/cub (data/, sfm/) when it is not inside data."""

    train_split: str = "train"
    """The CUB split trained on (its annotation file name part)."""

    image_size: int = 256
    """Side S of the crops, of the pseudo ground truth's images and of D_I's renders (MeshInversion: 256)."""

    pseudo_gt_dir: str = ""
    """Cache of the pseudo ground truth (built on first use, reused after); "" is a folder named after the
    split and sizes in <data>/cache/mesh-inversion (with the dataset, as ConvMesh's cache/), or in
    <out>/pseudo-gt when data is not writable. A cache built with other settings is rebuilt."""

    pseudo_gt_fit_iterations: int = 100
    """Adam steps of each photo's UV-sphere fit when the pseudo ground truth is built."""

    pseudo_gt_fit_resolution: int = 128
    """Side of the silhouettes compared with each photo's mask during that fit."""

    eval_items: int = 16
    """Pseudo-ground-truth items scored by the evaluation and shown in the image grids (the first N)."""

    gan_loss: GanLoss = "lsgan"
    """"lsgan" (least squares, MeshInversion eq. 1-3) or "hinge" (ConvMesh)."""

    uv_gan_weight: float = 1.0
    """lambda_uv of eq. 1: the generator's loss against D_uv."""

    image_gan_weight: float = 0.2
    """lambda_I of eq. 1 (MeshInversion's img_gan_loss_wt 0.2); 0 drops D_I altogether."""

    discriminator_weight: float = 1.0
    """Weight of each discriminator's own loss (eq. 2 and 3); it reaches only the discriminators."""

    mesh_reg_weight: float = 1e-4
    """Weight of the flatness regulariser of the generated meshes (ConvMesh's mesh regularisation 1e-4)."""

    uv_discriminator_channels: int = 64
    """First-layer channels of D_uv's PatchGANs."""

    image_discriminator_channels: int = 64
    """First-layer channels of D_I (MeshInversion: ndf 64)."""

    image_discriminator_layers: int = 3
    """Stride-2 layers of D_I: 3 is the 70 x 70 PatchGAN (MeshInversion), 2 sees 34 x 34."""

    discriminator_lr: float = 4e-4
    """Adam learning rate of both discriminators (ConvMesh: lr_d 4e-4; lr is the generator's, 1e-4)."""

    ema_decay: float = 0.999
    """Exponential moving average of the generator's weights (ConvMesh: 0.999); checkpoints hold the
    average, as ConvMesh evaluates it. 0 exports the trained weights themselves."""

    render_sigma: float = 1e-4
    """SoftRas sharpness of the renders D_I sees (soft silhouettes give the shape its image gradient)."""

    views: int = 6
    """Azimuths (evenly spaced) from which the image grid shows each generated sample."""

    batch_size: int = 32
    """Global batch (MeshInversion / ConvMesh GAN: 32)."""

    epochs: int = 600
    """Passes over the pseudo ground truth (MeshInversion: 600)."""

    lr: float = 1e-4
    """Adam learning rate of the generator (ConvMesh: lr_g 1e-4)."""

    betas: tuple[float, float] = (0.0, 0.9)
    """Adam's betas for all three networks (SAGAN/BigGAN's two-time-scale GAN recipe)."""

    out: str = "runs/mesh-inversion"
    """Run folder (checkpoints, final mesh-inversion.safetensors + .json, history, report)."""

    @model_validator(mode="after")
    def _check_mesh_inversion(self) -> Self:
        for name in ("uv_gan_weight", "image_gan_weight", "discriminator_weight", "mesh_reg_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.uv_gan_weight == 0 and self.image_gan_weight == 0:
            raise ValueError(
                "uv_gan_weight and image_gan_weight are both 0: nothing would train the generator"
            )
        if self.discriminator_weight == 0:
            raise ValueError("discriminator_weight must be > 0: the discriminators would not learn")
        if self.gan_loss not in ("lsgan", "hinge"):
            raise ValueError(f"gan_loss must be 'lsgan' or 'hinge', got {self.gan_loss!r}")
        if self.uv_discriminator_channels < 1 or self.image_discriminator_channels < 1:
            raise ValueError("uv_discriminator_channels and image_discriminator_channels must be positive")
        if not 1 <= self.image_discriminator_layers <= 6:
            raise ValueError(
                f"image_discriminator_layers must be in 1..6, got {self.image_discriminator_layers}"
            )
        smallest = 2 ** (self.image_discriminator_layers + 2)
        if self.image_size < smallest:
            raise ValueError(
                f"image_size {self.image_size} is too small for a D_I of {self.image_discriminator_layers} "
                f"layers (needs >= {smallest}); lower image_discriminator_layers"
            )
        if not (self.discriminator_lr > 0 and math.isfinite(self.discriminator_lr)):
            raise ValueError(f"discriminator_lr must be a positive number, got {self.discriminator_lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (self.render_sigma > 0 and math.isfinite(self.render_sigma)):
            raise ValueError(f"render_sigma must be a positive number, got {self.render_sigma}")
        if self.pseudo_gt_fit_iterations < 0 or self.pseudo_gt_fit_resolution < 8:
            raise ValueError(
                f"pseudo_gt_fit_iterations must be >= 0 and pseudo_gt_fit_resolution >= 8, got "
                f"{self.pseudo_gt_fit_iterations} and {self.pseudo_gt_fit_resolution}"
            )
        if self.views < 1 or self.eval_items < 1:
            raise ValueError(f"views and eval_items must be positive, got {self.views} and {self.eval_items}")
        return self


MeshInversionTrainConfig.PRESETS = {
    "paper": MeshInversionTrainConfig(
        model=PAPER_MODEL, image_size=256, batch_size=32, epochs=600, lr=1e-4, discriminator_lr=4e-4,
        image_gan_weight=0.2, uv_discriminator_channels=64, image_discriminator_channels=64,
        image_discriminator_layers=3, ema_decay=0.999,
    ),
    "cpu": MeshInversionTrainConfig(
        model=MeshInversionModelConfig(texture_size=32, width=16), image_size=64, batch_size=8, epochs=0,
        iterations=1500, uv_discriminator_channels=16, image_discriminator_channels=16, ema_decay=0.99,
        pseudo_gt_fit_iterations=60, pseudo_gt_fit_resolution=64, eval_items=8, eval_every=500,
        image_every=500, checkpoint_every=500, log_every=50,
    ),
}  # fmt: skip
