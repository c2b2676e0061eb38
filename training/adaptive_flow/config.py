"""``AdaptiveFlowTrainConfig``: every setting of ``adaptive-flow`` training, and its presets.

The fields are the paper's / UMR's hyper-parameters (each docstring names its source) on top of
``training.config.TrainConfig``; ``--preset stage1`` is UMR's first stage (learn the template: no D_var,
FID or part terms), ``stage2`` the default, ``cpu`` a minutes-long run. The validator refuses what stage 1
cannot train (D_var, the FID loss) and non-positive sizes. ``stage_config`` is one stage of a benchmark's
two-stage run (the benchmarks' shared recipe).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self

from pydantic import model_validator

from backend.models.adaptive_flow import AdaptiveFlowModelConfig
from training.config import Schedule, TrainConfig, apply_overrides, apply_preset


class AdaptiveFlowTrainConfig(TrainConfig):
    """Stage 2 of the seed paper / UMR by default; ``--preset stage1`` for stage 1 (module docstring)."""

    model: AdaptiveFlowModelConfig = AdaptiveFlowModelConfig()
    """Network hyper-parameters (saved in every checkpoint; the backend rebuilds the network from them)."""

    data: str = ""
    """CUB folder in CMR's layout (images/, data/<split>_cub_cleaned.mat) or a synthetic "cub" copy."""

    annotation_root: str = ""
    """CMR's cachedir/cub (data/, sfm/) when it is not inside data."""

    part_maps: str = ""
    """Folder of part maps (SCOPS .npy in UMR's naming, or label PNGs); "" uses data/parts when it exists."""

    part_channels: int = 5
    """Channels of SCOPS part maps, background first (UMR: 5); ignored for the synthetic layout."""

    train_split: str = "train"
    """Split the network learns from (CMR's file name part)."""

    eval_split: str = "test"
    """Split evaluated (UMR evaluates CUB's test split)."""

    eval_items: int = 0
    """Evaluate only the first N items of the evaluation split; 0 evaluates all."""

    stage: int = 2
    """1: learn the template (no D_var, FID or part losses); 2: deformation and texture with D_var and FID."""

    stage1_checkpoint: str = ""
    """Stage 2: the stage-1 final checkpoint (<run>/adaptive-flow.safetensors) giving the template."""

    stage1_init: Literal["all", "template"] = "all"
    """Stage 2 starts from every stage-1 weight ("all", our default: faster convergence) or only from its
    template ("template", UMR, whose stage 2 trains the network afresh on the fixed template)."""

    render_size: int = 64
    """Side of the soft-rasterised images the losses compare (UMR: 256; the photo is resized to it)."""

    sigma: float = 1e-4
    """Soft rasterizer sharpness at render_size (SoftRas 1e-4 at 64; UMR 1e-5 at 256)."""

    mask_weight: float = 2.5
    """Silhouette term, eq. 1 (UMR stage 2: 2.5; stage 1: 3.0)."""

    laplacian_weight: float = 0.15
    """Laplacian smoothness, eq. 4-5, summed over vertices as SoftRas does (UMR: 0.15 both stages)."""

    flatten_weight: float = 5e-4
    """Flatten term, eq. 6 (UMR stage 2: 5e-4; stage 1: 4e-4)."""

    deformation_weight: float = 1.0
    """Mean offset norm, eq. 3 (UMR stage 2: 1.0; stage 1: 5.0 from epoch deformation_after_epoch)."""

    deformation_after_epoch: int = 0
    """The deformation term is off before this epoch (UMR stage 1: 5)."""

    texture_weight: float = 3.0
    """Image reconstruction, eq. 10 (UMR tex 3.0, both stages)."""

    perceptual_weight: float = 1.0
    """Weight of the VGG perceptual distance inside the texture term (UMR's texture loss is perceptual)."""

    vgg_layers: int = 5
    """VGG-16 taps used by the perceptual distance (relu1_2 ... relu5_3; fewer are cheaper)."""

    texture_dt_weight: float = 3.0
    """Distance-transform barrier sampled at the flow (UMR tex_dt 3.0)."""

    alignment_weight: float = 1.0
    """Flow alignment to the SoftRas pseudo label, eq. 12 (UMR tex_cycle: 1.0 stage 2, 0.5 stage 1)."""

    gan_weight: float = 1.0
    """WGAN-GP critic loss on random-view renders, eq. 37-39 (UMR GAN 1.0)."""

    gradient_penalty: float = 10.0
    """WGAN-GP gradient penalty weight (Gulrajani et al.: 10)."""

    grl_weight: float = 0.2
    """Gradient-reversal factor from the critic into the generator (UMR grl_wt 0.2)."""

    random_azimuth: float = 180.0
    """Random views turn the object by U(-a, a) degrees about its up axis (UMR: 0-180)."""

    fid_weight: float = 1.0
    """FID loss between photo and random-view features, eq. 42-47 (stage 2; the paper gives no weight)."""

    fid_features: Literal["inception", "conv"] = "inception"
    """FID feature network: Inception-v3 pool features when ImageNet weights are on this machine (else the
    conv network, with a warning), or a small fixed random conv network."""

    fid_dims: int = 64
    """Feature width of the conv FID network."""

    part_probability_weight: float = 5.0
    """Rendered vertex-part probabilities vs. the part maps, eq. 14 (UMR part 5.0, stage 2)."""

    part_chamfer_weight: float = 10.0
    """Chamfer between projected part vertices and part pixels, eq. 13 (UMR vertex Chamfer 10.0, stage 2)."""

    part_points: int = 30
    """Pixels sampled per part for the part Chamfer term (UMR: 10-30 per part)."""

    camera_entropy_weight: float = 0.05
    """The loss subtracts this times the entropy of the hypothesis probabilities (UMR cam entropy 0.05),
    keeping every hypothesis trained (stage 2)."""

    template_update_epochs: int = 5
    """Stage 1: move the mean predicted offset into the template every N epochs (UMR: 5); 0 never."""

    iterations: int = 100_000
    """Optimiser steps (UMR: 500 epochs of CUB's 5964 photos at batch 16-64)."""

    batch_size: int = 16
    """Global batch (UMR's README: 16 for stage 2)."""

    lr_schedule: Schedule = "inverse"
    """UMR: lr0 / (1 + step * 5e-4)."""

    out: str = "runs/adaptive-flow"
    """Run folder (checkpoints, final adaptive-flow.safetensors + .json, history, report, tensorboard)."""

    @model_validator(mode="after")
    def _check_adaptive_flow(self) -> Self:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.stage == 1 and self.model.variance:
            raise ValueError("stage 1 trains without D_var: set model.variance=false (--preset stage1 does)")
        if self.stage == 1 and self.fid_weight:
            raise ValueError("stage 1 trains without the FID loss: set fid_weight=0 (--preset stage1 does)")
        for name in ("render_size", "sigma", "vgg_layers", "part_points", "fid_dims"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        return self


AdaptiveFlowTrainConfig.PRESETS = {
    "stage1": AdaptiveFlowTrainConfig(
        stage=1, model=AdaptiveFlowModelConfig(variance=False), mask_weight=3.0, flatten_weight=4e-4,
        deformation_weight=5.0, deformation_after_epoch=5, alignment_weight=0.5, fid_weight=0.0,
        camera_entropy_weight=0.0, part_probability_weight=0.0, part_chamfer_weight=0.0,
        out="runs/adaptive-flow-stage1",
    ),
    "stage2": AdaptiveFlowTrainConfig(stage=2),
    "cpu": AdaptiveFlowTrainConfig(
        iterations=300, batch_size=16, lr=3e-4, model=AdaptiveFlowModelConfig(image_size=128), render_size=64,
        vgg_layers=2, fid_features="conv", eval_every=0, image_every=150, checkpoint_every=150, log_every=25,
        template_update_epochs=3, deformation_after_epoch=2,
    ),
}  # fmt: skip


def stage_config(
    data: str | Path,
    stage: int,
    out: str | Path,
    *,
    preset: str = "cpu",
    seed: int = 0,
    overrides: Sequence[str] = (),
) -> AdaptiveFlowTrainConfig:
    """One stage of a benchmark's run on ``data``: ``preset`` on the defaults (then, for stage 1, the
    ``stage1`` preset), ``overrides`` (``KEY=VALUE``, in order) and ``out``; no progress bars. Stage 2
    names its stage-1 checkpoint in ``overrides`` (``stage1_checkpoint=...``)."""
    config = AdaptiveFlowTrainConfig(data=str(data), seed=seed, progress=False)
    config = apply_preset(config, preset)
    if stage == 1:
        config = apply_preset(config, "stage1")
    return apply_overrides(config, [*overrides, f"out={out}"])
