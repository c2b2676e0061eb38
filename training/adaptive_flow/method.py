"""``AdaptiveFlowTraining``, the ``adaptive-flow`` method for ``training.loop.train``, and what it trains.

- ``AdaptiveFlowNetwork``: the backend's ``AdaptiveFlowModel`` plus the training-only critic; checkpoints
  keep only the backend's network (``export_weights``).
- ``AdaptiveFlowTraining.build_model``: the network on an ImageNet ResNet-18 (when its weights are here);
  in stage 2 the stage-1 checkpoint's template (and by default every weight of matching shape).
- ``training_step``: predict and render (``views.render_hypotheses``), then the terms of ``terms``
  weighted by ``loss_weights`` and added by ``training.losses.compose.weighted_total``.
- ``after_step``: stage 1's template update (UMR), outside the loss.
- ``evaluate`` and ``visualise``: ``training.adaptive_flow.evaluation``.

The VGG and FID feature networks, the topology and the FID metric are built once per method, on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backend.checkpoints import load_checkpoint
from backend.models.adaptive_flow import (
    TEMPLATE_ID,
    AdaptiveFlowModel,
    AdaptiveFlowOutput,
)
from backend.models.discriminator import Discriminator
from backend.render.settings import RasterSettings
from training.adaptive_flow import evaluation
from training.adaptive_flow.config import AdaptiveFlowTrainConfig
from training.adaptive_flow.terms import (
    StepInputs,
    Topology,
    adversarial_terms,
    part_terms,
    photo_terms,
    shape_terms,
)
from training.adaptive_flow.views import render_hypotheses, resize
from training.distributed import unwrap_model
from training.losses.camera import camera_entropy
from training.losses.compose import Term, weighted_total
from training.losses.fid import FidFeatures, FidMetric
from training.losses.texture import VggFeatures
from training.pretrained import imagenet_encoder

log = logging.getLogger(__name__)


@dataclass
class _Caches:
    """What a run builds once: the topology (rebuilt when the network changes device) and the FID metric."""

    topology: Topology | None = None
    fid_metric: FidMetric | None = None


class AdaptiveFlowNetwork(nn.Module):
    """What the loop trains: the backend's network plus the training-only critic.

    ``export_weights`` keeps only ``network.*`` (renamed to the backend's keys), so checkpoints load into a
    bare ``AdaptiveFlowModel``.
    """

    def __init__(self, network: AdaptiveFlowModel, critic: Discriminator) -> None:
        super().__init__()
        self.network = network
        self.critic = critic

    def forward(self, image: Tensor) -> AdaptiveFlowOutput:
        return self.network(image)


class AdaptiveFlowTraining:
    """The ``adaptive-flow`` method for ``training.loop.train`` (package docstring)."""

    name = "adaptive-flow"
    template = TEMPLATE_ID

    def __init__(
        self,
        config: AdaptiveFlowTrainConfig,
        steps_per_epoch: int = 1,
        vertex_parts: Tensor | None = None,
        part_permutation: Sequence[int] | None = None,
    ) -> None:
        """Args:
        config: the run's configuration.
        steps_per_epoch: optimiser steps per pass over the training set (for epoch-based switches).
        vertex_parts: (V, P + 1) vertex part probabilities (stage 2's semantic template), or None.
        part_permutation: left/right permutation of the part channels (background first), or None.
        """
        self.config = config
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.vertex_parts = vertex_parts
        self.part_permutation = part_permutation
        self.pretrained_encoder = False
        self._perceptual: VggFeatures | None = None
        self._fid: FidFeatures | None = None
        self._caches = _Caches()
        self._step_offsets: Tensor | None = None  # stage 1: the last step's offsets, for after_step
        self._offset_sum: Tensor | None = None
        self._offset_count = 0

    # -- model -----------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        config = self.config
        encoder = imagenet_encoder("resnet18", config.pretrained, config.pretrained_path or None)
        self.pretrained_encoder = encoder.pretrained
        network = AdaptiveFlowModel(config.model, encoder_weights=encoder.model)
        if config.stage == 2 and config.stage1_checkpoint:
            _load_stage1(network, Path(config.stage1_checkpoint), config.stage1_init)
        elif config.stage == 2:
            log.warning("stage 2 without stage1_checkpoint: the template is the sphere, no part losses run")
        critic = Discriminator(in_channels=4, image_size=config.render_size)
        return AdaptiveFlowNetwork(network, critic)

    def export_weights(self, model: nn.Module) -> Mapping[str, Tensor]:
        wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
        return wrapper.network.state_dict()

    def _perceptual_net(self, device: torch.device) -> VggFeatures:
        if self._perceptual is None:
            self._perceptual = VggFeatures.build(
                self.config.pretrained, self.config.pretrained_path or None, layers=self.config.vgg_layers
            )
        return self._perceptual.to(device)

    def _fid_net(self, device: torch.device) -> FidFeatures:
        if self._fid is None:
            self._fid = FidFeatures.build(
                self.config.fid_features, self.config.pretrained, self.config.pretrained_path or None,
                dims=self.config.fid_dims,
            )  # fmt: skip
        return self._fid.to(device)

    def _topology(self, network: AdaptiveFlowModel) -> Topology:
        """The network's ``Topology`` on its device, built once."""
        cached = self._caches.topology
        if cached is None or cached.texel_face.device != network.faces.device:
            cached = self._caches.topology = Topology.build(network)
        return cached

    def settings(self) -> RasterSettings:
        return RasterSettings(image_size=self.config.render_size, sigma=self.config.sigma)

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        """The package docstring's terms, weighted by ``loss_weights`` (``training.losses.compose``)."""
        wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
        shared = self._step_inputs(model, wrapper.network, batch)
        topology = self._topology(wrapper.network)
        photo, logs = photo_terms(shared, topology, self._perceptual_net, self.config.perceptual_weight)
        terms: dict[str, Term] = {
            **photo,
            **shape_terms(shared, topology),
            **adversarial_terms(shared, wrapper.critic, self.config, self.settings(), self._fid_net),
            **part_terms(shared, batch, step, self.config, self.settings(), self.vertex_parts),
            "camera_entropy": lambda: camera_entropy(shared.output.probs).mean(),
        }
        total, logged = weighted_total(terms, self.loss_weights(batch, step))
        if self.config.stage == 1 and self.config.template_update_epochs:
            self._step_offsets = shared.output.offsets.detach()  # moved into the template by after_step
        return {**logged, **logs, "loss": total}

    def loss_weights(self, batch: Mapping[str, Any], step: int) -> dict[str, float]:
        """The config's weight of each term at 0-based ``step``: ``deformation`` is 0 before epoch
        ``deformation_after_epoch``, the part terms are 0 without part maps or the semantic template, and
        ``camera_entropy`` is subtracted (the entropy is maximised)."""
        c = self.config
        deforming = step // self.steps_per_epoch >= c.deformation_after_epoch
        parts = c.stage == 2 and self.vertex_parts is not None and "parts" in batch
        return {
            "mask": c.mask_weight, "texture": c.texture_weight, "texture_dt": c.texture_dt_weight,
            "alignment": c.alignment_weight, "laplacian": c.laplacian_weight, "flatten": c.flatten_weight,
            "deformation": c.deformation_weight if deforming else 0.0, "gan": c.gan_weight,
            "fid": c.fid_weight, "part_probability": c.part_probability_weight if parts else 0.0,
            "part_chamfer": c.part_chamfer_weight if parts else 0.0,
            "camera_entropy": -c.camera_entropy_weight,
        }  # fmt: skip

    def _step_inputs(
        self, model: nn.Module, network: AdaptiveFlowModel, batch: Mapping[str, Any]
    ) -> StepInputs:
        """Predict from the batch's photos (through ``model``, so that DDP synchronises) and render."""
        image, mask = batch["image"], batch["mask"]  # (B, 3, S, S), (B, 1, S, S)
        output: AdaptiveFlowOutput = model(image)
        texture = network.texture(image, output)  # (B, Ht, Wt, 3)
        size = self.config.render_size
        small_image, small_mask = resize(image, size), resize(mask, size)
        renders = render_hypotheses(network, output, texture, self.settings())
        return StepInputs(network, output, texture, renders, image, mask, small_image, small_mask)

    def after_step(self, step: int, model: nn.Module) -> None:
        """The loop's hook after optimiser step ``step`` (0-based): in stage 1, the step's offsets go into
        ``_update_template``, which moves their mean into the template every ``template_update_epochs``."""
        offsets, self._step_offsets = self._step_offsets, None
        if offsets is not None:
            wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
            self._update_template(wrapper.network, offsets, step)

    def _update_template(self, network: AdaptiveFlowModel, offsets: Tensor, step: int) -> None:
        """Stage 1 (UMR): accumulate the mean offset; every ``template_update_epochs`` epochs move it into the
        template. The shape head is linear, so the mean offset is the head applied to the mean feature."""
        total = offsets.float().sum(0)  # fp32, as autocast (where the step ran) sums half-precision values
        self._offset_sum = total if self._offset_sum is None else self._offset_sum + total
        self._offset_count += offsets.shape[0]
        period = self.config.template_update_epochs * self.steps_per_epoch
        if (step + 1) % period == 0 and self._offset_count:
            mean = self._offset_sum / self._offset_count
            with torch.no_grad():
                network.set_template(network.template_vertices + mean)
            log.info(
                "step %d: template updated (mean offset %.4f)", step + 1, float(mean.norm(dim=-1).mean())
            )
            self._offset_sum, self._offset_count = None, 0

    # -- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        """``training.adaptive_flow.evaluation.evaluate`` of the network (the critic is not evaluated)."""
        wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
        return evaluation.evaluate(
            wrapper.network, loader, self.settings(), self._fid_metric(), self.config.random_azimuth
        )

    def _fid_metric(self) -> FidMetric:
        """The FID metric (Inception-v3 when its ImageNet weights are here), looked up once per run."""
        if self._caches.fid_metric is None:
            config = self.config
            self._caches.fid_metric = FidMetric(config.pretrained, config.pretrained_path or None)
        return self._caches.fid_metric

    @torch.no_grad()
    def visualise(self, model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        """Rows: photo | reconstruction at its camera | turned by 90, 180 degrees | I_var (when on)."""
        wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
        return evaluation.visualise(wrapper.network, batch, self.config.render_size)


def _load_stage1(network: AdaptiveFlowModel, path: Path, init: str) -> None:
    """Copy the stage-1 template (for ``init="all"`` every weight of matching shape) into ``network``."""
    loaded = load_checkpoint(path, method=AdaptiveFlowTraining.name, template=TEMPLATE_ID)
    if "template_free" not in loaded.weights:
        raise ValueError(f"{path} has no template_free: not an adaptive-flow checkpoint")
    stage = loaded.meta.config.get("stage")
    if stage not in (1, None):
        log.warning("%s was trained as stage %s, not stage 1; using its template anyway", path, stage)
    state = network.state_dict()
    if init == "template":
        chosen = {"template_free": loaded.weights["template_free"]}
    else:
        chosen = {k: v for k, v in loaded.weights.items() if k in state and state[k].shape == v.shape}
    network.load_state_dict(chosen, strict=False)
    log.info("stage 2 starts from %s (%d tensors: %s)", path, len(chosen), init)
