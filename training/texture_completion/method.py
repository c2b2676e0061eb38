"""``TextureCompletionTraining``, the ``texture-completion`` method for ``training.loop.train``.

- ``TextureCompletionNetwork``: the backend's ``TextureGenerator`` plus the training-only
  ``PatchDiscriminator`` (none without a GAN term); checkpoints keep only the generator.
- ``draw`` / ``complete``: the holes (``training.datasets.holes.random_holes``, and noise for generators
  with a noise channel) drawn from a generator seeded by ``(seed, step)``, and the generator's completion
  composited with the known pixels (``Completion``).
- ``training_step``: ``masked_l1`` over the hidden object pixels and both players' GAN losses
  (``training.losses.adversarial.two_player_losses``), weighted by ``loss_weights``.
- ``evaluate`` / ``visualise``: on holes drawn from ``EVAL_SEED`` (the same for every run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backend.models.texture_completion import (
    TEXTURE_METHOD,
    TEXTURE_TEMPLATE,
    PatchDiscriminator,
    TextureGenerator,
)
from training.config import TrainConfig
from training.datasets.holes import random_holes
from training.distributed import unwrap_model
from training.losses.adversarial import two_player_losses
from training.losses.compose import weighted_total
from training.losses.fid import FidMetric
from training.texture_completion.config import TextureCompletionTrainConfig

EVAL_SEED = 20_240_607
"""Seed of the evaluation holes (item i uses EVAL_SEED + i): every run is scored on the same holes."""


def masked_l1(output: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean |output - target| (B, 3, S, S) over the pixels where weight (B, 1, S, S) is 1, and channels.

    Pooled over the batch: ``sum weight * |d| / (3 * sum weight)``; 0 when no pixel is weighted.
    """
    total = ((output - target).abs() * weight).sum()
    return total / (3 * weight.sum()).clamp_min(1.0)


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
