"""Training ``texture-completion``: the texture-completion network of ``pointcloud-poisson``'s last stage.

The backend bakes the photo onto the Poisson mesh's atlas; the visible and mirrored texels are known, the
rest is filled by ``backend.models.texture_completion.TextureGenerator`` (``complete_texture``). Training
needs no meshes: it learns the same completion on real image crops (image + mask datasets: the "folder"
layout, ``ImageFolderDataset``, or the "cub" layout, ``CubDataset``). Each step:

- ``random_holes`` hides part of each crop: free-form strokes (polylines of random width, as the
  free-form masks of DeepFill v2, Yu et al. 2019), boxes, and sometimes a whole half-plane (like the hidden
  side of an object), drawn from a generator seeded by ``(seed, step)`` so that a resumed run draws the
  same holes. The object pixels outside the holes are known; the hidden object pixels are the target; the
  background outside the object mask is unknown and unsupervised, as the gutter between atlas charts.
- The generator gets the known colours (zeros elsewhere) and the known mask; its output is composited with
  the known pixels (``completed``), as the backend does.
- ``l1``: mean |output - photo| over the hidden object pixels (and channels), weight ``l1_weight``.
- ``gan``: the generator's adversarial loss against a ``PatchDiscriminator`` (pix2pix's 70x70 PatchGAN,
  fewer layers for small crops) that sees real crops ``image * mask`` and completed crops
  ``completed * mask`` (same silhouette, same known pixels: only the holes differ). LSGAN (Mao et al. 2017;
  pix2pix/CycleGAN's "lsgan") or hinge (SN-PatchGAN, DeepFill v2).
- ``discriminator``: the discriminator's loss on real vs. detached completed crops.

One optimiser trains both players (the shared loop has one) with the frozen-critic scheme of
``training.losses.adversarial.two_player_losses``: one backward gives each network the gradient of its own
objective, with any GAN loss (gradient reversal is exact only for the zero-sum WGAN loss).
``configure_optimizer`` gives the discriminator its own parameter group (learning rate
``lr * discriminator_lr_factor``; TTUR, Heusel et al. 2017, when != 1).

Weights (ours; sources): ``l1_weight`` 100 and ``gan_weight`` 1 are pix2pix's lambda = 100 (Isola et al.
2017, sec. 4.1), with our L1 averaged over the hidden pixels rather than the whole image; Adam lr 2e-4,
betas (0.5, 0.999), weights N(0, 0.02) are pix2pix's too. A smaller ``l1_weight`` (e.g. 10) gives the
discriminator more say: sharper, riskier fills.

Evaluation, on the evaluation split with holes drawn from a fixed seed (the same for every run): ``l1`` and
``psnr`` over the hidden object pixels, ``l1_mean_fill`` (the same L1 for the trivial fill with each
crop's mean known colour: the bar to beat) and, when Inception-v3 ImageNet weights are on this machine,
``fid`` between real and completed crops (``training.losses.fid.FidMetric``; skipped otherwise, as the
run's dataset information records).

The final checkpoint (``<out>/texture-completion.safetensors + .json``) has method ``TEXTURE_METHOD``,
template ``TEXTURE_TEMPLATE``, ``config["model"]`` the generator's settings and only the generator's
weights (``export_weights``): ``backend.methods.checkpointed.load_method_network`` rebuilds it.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import torch
from pydantic import model_validator
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from backend.models.texture_completion import (
    TEXTURE_METHOD,
    TEXTURE_TEMPLATE,
    PatchDiscriminator,
    TextureGenerator,
    TextureGeneratorConfig,
)
from training.commands import register_training_command
from training.config import Config, TrainConfig
from training.datasets.cub import CubDataset
from training.datasets.folder import ImageFolderDataset
from training.distributed import unwrap_model
from training.loop import RunResult, train
from training.losses.adversarial import GanLoss, two_player_losses
from training.losses.compose import weighted_total
from training.losses.fid import FidMetric, inception_available

log = logging.getLogger(__name__)

EVAL_SEED = 20_240_607
"""Seed of the evaluation holes (item i uses EVAL_SEED + i): every run is scored on the same holes."""
STROKE_VERTICES = 5
"""Vertices of each free-form stroke's polyline."""


class HoleConfig(Config):
    """How ``random_holes`` hides parts of the crops (lengths are fractions of the crop side)."""

    max_strokes: int = 4
    """Each crop gets 0..max_strokes free-form strokes (polylines of 5 vertices)."""

    stroke_width: tuple[float, float] = (0.05, 0.15)
    """Range of a stroke's width."""

    stroke_step: tuple[float, float] = (0.1, 0.3)
    """Range of the length of each of a stroke's segments (random directions)."""

    max_boxes: int = 2
    """Each crop gets 0..max_boxes axis-aligned boxes (at least one hole of some kind is always drawn)."""

    box_size: tuple[float, float] = (0.15, 0.5)
    """Range of each side of a box."""

    half_probability: float = 0.15
    """Probability of also hiding a half-plane through a point near the centre (a hidden side)."""

    @model_validator(mode="after")
    def _check_holes(self) -> Self:
        if self.max_strokes < 0 or self.max_boxes < 0 or self.max_strokes + self.max_boxes < 1:
            raise ValueError(
                f"holes.max_strokes and holes.max_boxes must be >= 0 with a positive sum, got "
                f"{self.max_strokes} and {self.max_boxes}"
            )
        for name in ("stroke_width", "stroke_step", "box_size"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"holes.{name} must satisfy 0 < low <= high <= 1, got {(low, high)}")
        if not 0 <= self.half_probability <= 1:
            raise ValueError(f"holes.half_probability must be in [0, 1], got {self.half_probability}")
        return self


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


# -- holes and losses ---------------------------------------------------------------------------------------
def segment_distance(points: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Distance (..., P) from points (P, 2) to segments start, end (..., 2) (a point when start == end)."""
    direction = end - start  # (..., 2)
    length2 = direction.pow(2).sum(-1, keepdim=True)  # (..., 1)
    offset = points - start[..., None, :]  # (..., P, 2)
    t = ((offset * direction[..., None, :]).sum(-1) / length2.clamp_min(1e-12)).clamp(0, 1)  # (..., P)
    closest = start[..., None, :] + t[..., None] * direction[..., None, :]  # (..., P, 2)
    return (points - closest).norm(dim=-1)


def random_holes(
    batch: int, size: int, holes: HoleConfig, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """Random hole masks (B, 1, S, S) in {0, 1} (1 = hidden), reproducible from ``generator`` (a CPU one).

    Every random number is drawn on the CPU in fixed shapes (the same draws whatever the counts), then
    the shapes are rasterised on ``device`` at pixel centres ``((j + 0.5) / S, (i + 0.5) / S)``.
    """
    strokes, boxes = holes.max_strokes, holes.max_boxes

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, device="cpu")

    stroke_count = torch.randint(0, strokes + 1, (batch,), generator=generator, device="cpu")  # (B,)
    box_count = torch.randint(0, boxes + 1, (batch,), generator=generator, device="cpu")
    start = uniform(batch, max(strokes, 1), 1, 2)  # (B, K, 1, 2)
    angle = uniform(batch, max(strokes, 1), STROKE_VERTICES - 1, high=2 * math.pi)
    step = uniform(batch, max(strokes, 1), STROKE_VERTICES - 1, low=holes.stroke_step[0],
                   high=holes.stroke_step[1])  # fmt: skip
    width = uniform(batch, max(strokes, 1), low=holes.stroke_width[0], high=holes.stroke_width[1])  # (B, K)
    moves = torch.stack([angle.cos(), angle.sin()], dim=-1) * step[..., None]  # (B, K, V - 1, 2)
    vertices = torch.cat([start, start + moves.cumsum(dim=2)], dim=2).clamp(0, 1)  # (B, K, V, 2)
    centre = uniform(batch, max(boxes, 1), 2)  # (B, Kb, 2)
    half_side = uniform(batch, max(boxes, 1), 2, low=holes.box_size[0], high=holes.box_size[1]) / 2
    half = uniform(batch) < holes.half_probability  # (B,)
    plane_point = 0.5 + uniform(batch, 2, low=-0.15, high=0.15)  # (B, 2)
    plane_angle = uniform(batch, high=2 * math.pi)
    nothing = (stroke_count + box_count == 0) & ~half
    if boxes > 0:
        box_count = torch.where(nothing, torch.ones_like(box_count), box_count)
    else:
        stroke_count = torch.where(nothing, torch.ones_like(stroke_count), stroke_count)

    device = torch.device(device)
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    rows, columns = torch.meshgrid(coords, coords, indexing="ij")
    points = torch.stack([columns.flatten(), rows.flatten()], dim=-1)  # (P, 2) as (x, y)
    hidden = torch.zeros(batch, size * size, dtype=torch.bool, device=device)
    vertices, width = vertices.to(device), width.to(device)
    for index in range(strokes):
        distance = segment_distance(points, vertices[:, index, :-1], vertices[:, index, 1:])  # (B, V-1, P)
        inside = (distance.amin(dim=1) <= width[:, index, None] / 2) & (stroke_count.to(device) > index)[
            :, None
        ]
        hidden |= inside
    centre, half_side = centre.to(device), half_side.to(device)
    for index in range(boxes):
        offset = (points[None] - centre[:, index, None]).abs()  # (B, P, 2)
        inside = (offset <= half_side[:, index, None]).all(dim=-1) & (box_count.to(device) > index)[:, None]
        hidden |= inside
    normal = torch.stack([plane_angle.cos(), plane_angle.sin()], dim=-1).to(device)  # (B, 2)
    side = ((points[None] - plane_point.to(device)[:, None]) * normal[:, None]).sum(-1) > 0  # (B, P)
    hidden |= side & half.to(device)[:, None]
    return hidden.view(batch, 1, size, size).float()


def masked_l1(output: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean |output - target| (B, 3, S, S) over the pixels where weight (B, 1, S, S) is 1, and channels.

    Pooled over the batch: ``sum weight * |d| / (3 * sum weight)``; 0 when no pixel is weighted.
    """
    total = ((output - target).abs() * weight).sum()
    return total / (3 * weight.sum()).clamp_min(1.0)


# -- the method ---------------------------------------------------------------------------------------------
class TextureCompletionNetwork(nn.Module):
    """What the loop trains: the backend's generator plus the training-only discriminator.

    ``forward`` is the generator's (so that DDP synchronises it); ``export_weights`` keeps only
    ``generator.*`` under the generator's own names. Without a GAN term (``gan_weight`` 0) there is no
    discriminator (None), so that every parameter gets a gradient at every step (as DDP requires).
    """

    def __init__(self, generator: TextureGenerator, discriminator: PatchDiscriminator | None) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, colors: Tensor, known: Tensor, noise: Tensor | None = None) -> Tensor:
        """colors (B, 3, S, S), known (B, 1, S, S), noise (B, 1, S, S) or None -> colours (B, 3, S, S)."""
        output: Tensor = self.generator(colors, known, noise)
        return output


@dataclass
class Completion:
    """One batch's holes and completion (B crops of side S)."""

    known: Tensor  # (B, 1, S, S) object pixels outside the holes
    hidden: Tensor  # (B, 1, S, S) object pixels inside the holes (the L1 target)
    output: Tensor  # (B, 3, S, S) the generator's raw output
    completed: Tensor  # (B, 3, S, S) known pixels from the photo, the rest from the output


class TextureCompletionTraining:
    """The ``texture-completion`` method for ``training.loop.train`` (module docstring)."""

    name = TEXTURE_METHOD
    template = TEXTURE_TEMPLATE

    def __init__(self, config: TextureCompletionTrainConfig) -> None:
        self.config = config
        self.fid = FidMetric(config.pretrained, config.pretrained_path or None)

    def build_model(self) -> nn.Module:
        config = self.config
        discriminator = None
        if config.gan_weight:
            discriminator = PatchDiscriminator(
                3, config.discriminator_channels, config.discriminator_layers, config.model.norm
            )
        return TextureCompletionNetwork(TextureGenerator(config.model), discriminator)

    def configure_optimizer(self, model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        """Adam with two groups: the generator at ``lr``, the discriminator at ``lr`` x its factor."""
        wrapper: TextureCompletionNetwork = unwrap_model(model)  # type: ignore[assignment]
        factor = getattr(config, "discriminator_lr_factor", self.config.discriminator_lr_factor)
        groups = [{"params": list(wrapper.generator.parameters()), "lr": config.lr}]
        if wrapper.discriminator is not None:
            groups.append({"params": list(wrapper.discriminator.parameters()), "lr": config.lr * factor})
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)

    def export_weights(self, model: nn.Module) -> Mapping[str, Tensor]:
        wrapper: TextureCompletionNetwork = unwrap_model(model)  # type: ignore[assignment]
        return wrapper.generator.state_dict()

    def draw(self, batch: int, size: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """Holes (B, 1, S, S) and, for generators with a noise channel, noise (B, 1, S, S) after them,
        concatenated on the channel axis: (B, 1 or 2, S, S), all from ``generator``."""
        holes = random_holes(batch, size, self.config.holes, generator, device)  # (B, 1, S, S)
        if not self.config.model.noise:
            return holes
        noise = torch.randn((batch, 1, size, size), generator=generator, device="cpu").to(device)  # CPU draws
        return torch.cat([holes, noise], dim=1)

    def complete(self, model: nn.Module, image: Tensor, mask: Tensor, drawn: Tensor) -> Completion:
        """The generator run on image (B, 3, S, S) with mask (B, 1, S, S) and ``draw``'s holes (and noise)."""
        present = (mask > 0.5).to(image.dtype)
        holes = drawn[:, :1]  # (B, 1, S, S)
        known, hidden = present * (1 - holes), present * holes
        noise = drawn[:, 1:] if self.config.model.noise else None
        output = model(image * known, known, noise)  # (B, 3, S, S)
        completed = known * image + (1 - known) * output
        return Completion(known, hidden, output, completed)

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        config = self.config
        wrapper: TextureCompletionNetwork = unwrap_model(model)  # type: ignore[assignment]
        image, mask = batch["image"], batch["mask"]  # (B, 3, S, S), (B, 1, S, S)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        drawn = self.draw(len(image), image.shape[-1], generator, image.device)
        completion = self.complete(model, image, mask, drawn)
        l1 = masked_l1(completion.output, image, completion.hidden)
        present = completion.known.sum() + completion.hidden.sum()
        losses = {"l1": l1, "hidden_fraction": (completion.hidden.sum() / present.clamp_min(1)).detach()}

        def adversarial() -> Tensor:  # both players' GAN losses (each reaches only its player), logged apart
            if wrapper.discriminator is None:
                raise ValueError("the adversarial term needs the discriminator: gan_weight must be > 0")
            real, fake = image * mask, completion.completed * mask  # (B, 3, S, S) each
            terms = two_player_losses(wrapper.discriminator, real, fake, config.gan_loss)
            losses.update(
                gan=terms.generator,
                discriminator=terms.discriminator,
                d_real=terms.real_score,
                d_fake=terms.fake_score,
            )
            return terms.generator + terms.discriminator

        losses["loss"], _ = weighted_total({"l1": l1, "adversarial": adversarial}, self.loss_weights())
        return losses

    def loss_weights(self) -> dict[str, float]:
        """``l1_weight`` for the masked L1, ``gan_weight`` for the adversarial term (computed only when > 0,
        as the discriminator exists only then)."""
        return {"l1": self.config.l1_weight, "adversarial": self.config.gan_weight}

    # -- evaluation ------------------------------------------------------------------------------------
    def eval_draw(self, image: Tensor, first: int) -> Tensor:
        """``draw`` for evaluation items first, first + 1, ... of images (B, 3, S, S): item i's holes come
        from seed ``EVAL_SEED + i``, whatever the batch size, so every run is scored on the same holes."""
        size = image.shape[-1]
        return torch.cat([
            self.draw(1, size, torch.Generator().manual_seed(EVAL_SEED + first + item), image.device)
            for item in range(len(image))
        ])  # fmt: skip

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        wrapper: TextureCompletionNetwork = unwrap_model(model)  # type: ignore[assignment]
        device = next(wrapper.parameters()).device
        sums = {"abs": 0.0, "square": 0.0, "mean_fill": 0.0, "count": 0.0}
        fid = self.fid.accumulator(device)
        seen = 0
        for batch in loader:
            image, mask = batch["image"].to(device), batch["mask"].to(device)
            completion = self.complete(wrapper.generator, image, mask, self.eval_draw(image, seen))
            seen += len(image)
            hidden = completion.hidden  # (B, 1, S, S)
            difference = (completion.output - image) * hidden
            sums["abs"] += float(difference.abs().sum())
            sums["square"] += float(difference.pow(2).sum())
            sums["count"] += 3 * float(hidden.sum())
            known = completion.known
            known_count = known.sum((2, 3), keepdim=True).clamp_min(1)  # (B, 1, 1, 1)
            mean_colour = (image * known).sum((2, 3), keepdim=True) / known_count  # (B, 3, 1, 1)
            sums["mean_fill"] += float(((mean_colour - image).abs() * hidden).sum())
            if fid.active:
                fid.update(real=image * mask, fake=completion.completed * mask)
        count = max(sums["count"], 1.0)
        mse = sums["square"] / count
        metrics = {
            "l1": sums["abs"] / count,
            "psnr": 10 * math.log10(1 / mse) if mse > 0 else float("inf"),
            "l1_mean_fill": sums["mean_fill"] / count,
        }
        if (value := fid.compute()) is not None:
            metrics["fid"] = value
        return metrics

    @torch.no_grad()
    def visualise(self, model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        """Rows: input (known pixels, grey elsewhere) | completed | photo | raw generator output."""
        wrapper: TextureCompletionNetwork = unwrap_model(model)  # type: ignore[assignment]
        image, mask = batch["image"], batch["mask"]
        completion = self.complete(wrapper.generator, image, mask, self.eval_draw(image, 0))
        known = completion.known
        shown = known * image + (1 - known) * 0.5
        columns = [shown, completion.completed * mask + (1 - mask), image, completion.output]
        rows = torch.cat(columns, dim=3)  # (B, 3, S, 4 S)
        return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1]).clamp(0, 1)


# -- data and run -------------------------------------------------------------------------------------------
def _train_folder(config: TextureCompletionTrainConfig) -> Path:
    """The folder layout's ``data/<train_split>``, or ``data`` itself when it has no split folders."""
    root = Path(config.data)
    if (root / config.train_split).is_dir():
        return root / config.train_split
    splits = sorted(child.name for child in root.iterdir() if (child / "images").is_dir())
    if splits:
        raise FileNotFoundError(f"{root} has the split folders {splits} but no {config.train_split!r}")
    return root


def _folder_dataset(config: TextureCompletionTrainConfig, folder: Path, training: bool) -> ImageFolderDataset:
    return ImageFolderDataset(
        folder, image_size=config.model.image_size, augment=training and config.augment, seed=config.seed
    )


def datasets(config: TextureCompletionTrainConfig) -> tuple[Dataset[Any], Dataset[Any] | None]:
    """The training crops (augmented when ``augment``) and the evaluation crops (None when absent).

    Items carry "image" (3, S, S) and "mask" (1, S, S) with S = ``model.image_size``.
    """
    if not config.data:
        raise ValueError(
            "no data folder: pass --data DIR (images + masks, or a CUB layout with --layout cub)"
        )
    if not Path(config.data).is_dir():
        raise FileNotFoundError(f"data folder not found: expected the directory {config.data}")
    eval_set: Dataset[Any] | None
    if config.layout == "folder":
        train_set: Dataset[Any] = _folder_dataset(config, _train_folder(config), True)
        eval_folder = Path(config.data) / config.eval_split
        eval_set = _folder_dataset(config, eval_folder, False) if eval_folder.is_dir() else None
    elif config.layout == "cub":
        common: dict[str, Any] = {
            "annotation_root": config.annotation_root or None,
            "image_size": config.model.image_size,
            "seed": config.seed,
        }
        train_set = CubDataset(config.data, config.train_split, augment=config.augment, **common)
        try:
            eval_set = CubDataset(config.data, config.eval_split, augment=False, **common)
        except FileNotFoundError:
            eval_set = None
    else:
        raise ValueError(f"layout must be 'folder' or 'cub', got {config.layout!r}")
    if eval_set is not None and config.eval_items:
        eval_set = Subset(eval_set, range(min(config.eval_items, len(eval_set))))
    return train_set, eval_set


def run(
    config: TextureCompletionTrainConfig,
    train_set: Dataset[Any] | None = None,
    eval_set: Dataset[Any] | None = None,
) -> RunResult:
    """Train as ``config`` says (module docstring); the result names the final checkpoint.

    The data sets default to ``datasets(config)``.
    """
    if train_set is None:
        train_set, eval_set = datasets(config)
    with_fid = inception_available(config.pretrained, config.pretrained_path or None)
    fid_note = (
        "inception-v3" if with_fid
        else "skipped: no Inception-v3 ImageNet weights on this machine (or pretrained=none)"
    )  # fmt: skip
    if eval_set is not None and not with_fid:
        log.warning("texture-completion: %s; evaluating L1 and PSNR only", fid_note.removeprefix("skipped: "))
    info = {
        "name": f"{config.layout}-layout",
        "root": str(Path(config.data).resolve()) if config.data else type(train_set).__name__,
        "train_split": config.train_split,
        "train_items": len(train_set),  # type: ignore[arg-type]
        "eval_split": config.eval_split,
        "eval_items": len(eval_set) if eval_set is not None else 0,  # type: ignore[arg-type]
        "fid": fid_note,
    }
    return train(TextureCompletionTraining(config), config, train_set, eval_set, dataset_info=info)


# -- command line ---------------------------------------------------------------------------------------
def register(subparsers: Any) -> argparse.ArgumentParser:
    """``mono2mesh-train texture-completion``: every field of ``TextureCompletionTrainConfig`` as a flag."""
    return register_training_command(
        subparsers,
        TEXTURE_METHOD,
        "train the texture-completion network of pointcloud-poisson (method texture-completion)",
        __doc__,
        TextureCompletionTrainConfig,
        datasets,
        run,
    )
