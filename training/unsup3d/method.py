"""``Unsup3dTraining``, the ``unsup3d`` method for ``training.loop.train``.

- ``build_model``: ``backend.models.unsup3d.Unsup3dNet(config.model)``, the five networks; checkpoints
  hold exactly its weights (``build_unsup3d(config["model"])`` loads them strictly). The frozen VGG16
  relu3_3 features of the perceptual loss live on the method, not in the model (ImageNet weights when on
  the machine, else fixed random ones: ``vgg_weights`` says which).
- ``training_step`` on a batch ("image" (B, 3, S, S) in [0, 1]): each image mirrored with probability 1/2
  when ``augment`` (``mirrored``: a generator seeded by the step), the networks' predictions, the image
  formation and the terms of ``training.unsup3d.terms``, weighted with lambda_flip = 1 before
  ``flip_start_epoch`` (epoch = step // ``steps_per_epoch``) and ``flip_weight`` from it on, lambda_perc =
  ``perceptual_weight``, plus the reference's optional depth smoothness when ``depth_smoothness_weight``
  > 0. Logged:
  each term, ``flip_weight`` (the lambda_flip in force) and the mean confidence sigma.
- ``evaluate``: the terms and total at the final lambda_flip, averaged over images; on data with
  ground-truth depth ("depth" (B, S, S) and the face "mask" (B, 1, S, S): ``SyntheticFaces``) ``side`` and
  ``mad`` as the reference computes them (``training.unsup3d.metrics``: the view's depth of the input's
  reconstruction against the ground truth, over the eroded ground-truth mask times the eroded
  coverage), averaged over the images with a non-empty mask.
- ``visualise``: ``training.unsup3d.pictures.picture_grid`` (input, reconstructions, albedo, shading,
  normals, depths, confidences).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backend.models.unsup3d import TEMPLATE_ID, Unsup3dNet, Unsup3dOutput
from backend.models.vgg import VggFeatures, load_vgg16_features
from training.distributed import unwrap_model
from training.evaluation import finite_mean
from training.losses.compose import Term, weighted_total
from training.unsup3d.config import Unsup3dTrainConfig
from training.unsup3d.metrics import evaluation_mask, mad, side
from training.unsup3d.pictures import picture_grid
from training.unsup3d.terms import Formation, depth_smoothness, form_images, loss_terms, loss_weights

METHOD = "unsup3d"
"""Checkpoint method name (the backend's ``unsup3d``)."""


class Unsup3dTraining:
    """The ``unsup3d`` method for ``training.loop.train`` (module docstring)."""

    name = METHOD
    template = TEMPLATE_ID

    def __init__(self, config: Unsup3dTrainConfig, steps_per_epoch: int = 1) -> None:
        self.config = config
        self.steps_per_epoch = max(1, steps_per_epoch)
        self._vgg: VggFeatures | None = None
        if config.perceptual_weight > 0:
            self._vgg = load_vgg16_features("cpu", config.vgg_path or None)

    @property
    def vgg_weights(self) -> str:
        """ "imagenet", "random" (the perceptual features' weights) or "none" (no perceptual loss)."""
        return "none" if self._vgg is None else str(self._vgg.weights)

    def features(self, device: torch.device) -> VggFeatures | None:
        """The perceptual network on ``device`` (moved once), None without the perceptual loss."""
        if self._vgg is not None and next(self._vgg.parameters()).device != device:
            self._vgg = self._vgg.to(device)
        return self._vgg

    def build_model(self) -> nn.Module:
        return Unsup3dNet(self.config.model)

    def flip_weight_at(self, step: int) -> float:
        """lambda_flip at optimiser step ``step``: 1 before ``flip_start_epoch``, then ``flip_weight``."""
        epoch = step // self.steps_per_epoch
        return 1.0 if epoch < self.config.flip_start_epoch else self.config.flip_weight

    def mirrored(self, images: Tensor, step: int) -> Tensor:
        """Images (B, 3, S, S) each mirrored with probability 1/2, drawn from a generator seeded by
        ``(seed, step)`` on their device: the same draws after a resume, whatever else used the global
        generator in between (the loop's evaluation loader does)."""
        generator = torch.Generator(device=images.device).manual_seed(self.config.seed * 1_000_003 + step)
        mirror = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
        return torch.where(mirror[:, None, None, None], images.flip(-1), images)

    def _losses(
        self, output: Unsup3dOutput, formation: Formation, images: Tensor, flip_weight: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        config = self.config
        features = self.features(images.device)
        terms: dict[str, Term] = dict(
            loss_terms(formation, output, images, config.model.confidence, features)
        )
        weights = loss_weights(config.flip, flip_weight, config.perceptual_weight, features is not None)
        if config.depth_smoothness_weight > 0:
            model = config.model
            terms["depth_smoothness"] = depth_smoothness(output.canon_depth, model.depth_min, model.depth_max)
            weights["depth_smoothness"] = config.depth_smoothness_weight
        return weighted_total(terms, weights)

    def training_step(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        images: Tensor = batch["image"]  # (B, 3, S, S)
        if self.config.augment:
            images = self.mirrored(images, step)
        output: Unsup3dOutput = model(images)
        formation = form_images(output, self.config.model, self.config.flip)
        flip_weight = self.flip_weight_at(step)
        total, logged = self._losses(output, formation, images, flip_weight)
        extra = {
            "flip_weight": torch.tensor(flip_weight if self.config.flip else 0.0, device=images.device),
            "sigma_photometric": output.conf_photometric.detach().mean(),
        }
        return {**logged, **extra, "loss": total}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        network: Unsup3dNet = unwrap_model(model)  # type: ignore[assignment]
        config = self.config
        sums: dict[str, float] = {}
        per_image: dict[str, list[float]] = {"side": [], "mad": []}
        seen = 0
        for batch in loader:
            images = batch["image"]
            count = images.shape[0]
            output = network(images)
            formation = form_images(output, config.model, config.flip)
            total, logged = self._losses(output, formation, images, config.flip_weight)
            for name, value in {**logged, "loss": total}.items():
                sums[name] = sums.get(name, 0.0) + float(value) * count
            seen += count
            if "depth" in batch:
                mask = evaluation_mask(batch["mask"][:, 0], formation.coverage)  # (B, S, S)
                per_image["side"] += side(formation.depth, batch["depth"], mask).tolist()
                per_image["mad"] += mad(formation.depth, batch["depth"], mask, config.model.fov).tolist()
        metrics = {name: value / max(seen, 1) for name, value in sums.items()}
        if per_image["side"]:
            metrics.update({name: finite_mean(values).value for name, values in per_image.items()})
        return metrics

    @torch.no_grad()
    def visualise(self, model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        network: Unsup3dNet = unwrap_model(model)  # type: ignore[assignment]
        images = batch["image"]
        output = network(images)
        formation = form_images(output, self.config.model, self.config.flip)
        return picture_grid(images, output, formation, self.config.model, batch.get("depth"))
