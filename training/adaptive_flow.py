"""Training the ``adaptive-flow`` method: UMR's two-stage recipe with the seed paper's D_var and FID loss.

Data: ``CubDataset`` (CMR's CUB layout, or the synthetic generator's "cub" copy of it), one photo per item
with its mask and, when present, part maps (SCOPS's in UMR's naming, or the synthetic generator's true ones).
No camera, keypoint or 3D annotation is used. The network is ``backend.models.adaptive_flow``: ResNet-18
features; D_shape (symmetric offsets on a learned template), D_cam (H weak-perspective hypotheses with
probabilities), D_flow (the texture flow) and, in stage 2, D_var (the variance map I_var, eq. 11).

Each step renders the predicted mesh with the sampled UV texture (``grid_sample(I_r * I_var, I_flow)``) at
every camera hypothesis (soft rasterizer, ``render_size``) and adds (the paper's equation numbers):

- ``mask``: 1 - soft IoU against the mask (eq. 1), weighted by the hypothesis probabilities;
- ``texture``: mean |render - photo| inside the mask (eq. 10), probability-weighted, plus
  ``perceptual_weight`` x the VGG perceptual distance (LPIPS's uncalibrated form) at the most probable
  hypothesis;
- ``texture_dt``: the distance-transform barrier of the mask sampled at the flow (CMR's tex_dt);
- ``alignment``: eq. 12, the mean flow of each visible face's texels against the mean image position the
  rasterizer gives the face at the most probable hypothesis (the SoftRas pseudo label; hard aggregation);
- ``deformation`` (eq. 3), ``laplacian`` (eq. 4-5, SoftRas's sum over vertices) and ``flatten`` (eq. 6);
- ``gan``: the WGAN-GP critic loss (eq. 37-39) on renders at random azimuths vs. the masked photos; a
  gradient-reversal layer (UMR's, weight ``grl_weight``) on the renders lets one optimiser train the critic
  and, reversed, the generator;
- stage 2 only: ``fid`` (eq. 42-47) between features of the photos and of the random-view renders,
  ``part_probability`` (eq. 14) and ``part_chamfer`` (eq. 13) against the part maps with the vertex
  segmentation learned from stage 1, and ``-camera_entropy``.

The terms are weighted by the config's ``*_weight`` fields and added in this order by
``training.losses.compose.weighted_total`` (``loss_weights``); ``gan``, ``fid``, the part terms,
``camera_entropy`` and the perceptual distance are computed only when their weight is not 0.

Stage 1 (``--preset stage1``) starts from a sphere, learns the template (every ``template_update_epochs``
epochs the mean predicted offset is moved into it, as UMR does, in the loop's ``after_step`` hook, outside
the loss) without D_var and FID. Stage 2 starts from the stage-1 checkpoint (``stage1_checkpoint``: the
template, and by default every stage-1 weight), first computes the vertex segmentation (UMR's ``avg_uv``
step: part maps sampled at the projected visible vertices over the training set; left in the run folder as
``vertex_parts.safetensors``) and trains with D_var and the FID loss. The template stays fixed.

UMR's "ori" regulariser (mean |coordinate| across the symmetry plane) is not used: the network's shapes are
symmetric by construction (``AdaptiveFlowModel``), so the term would be identically zero.

Evaluation (the paper's Table 1 metrics, plus what ground truth allows on synthetic data):
``mask_iou`` (soft silhouette at the predicted camera vs. the mask, UMR's protocol), ``ssim`` (the render at
the predicted camera vs. the photo, both composited on white with the true mask), and when the dataset has
ground-truth meshes (``ground_truth_mesh``), ``novel_iou`` and ``novel_ssim``: the prediction and the
ground truth, each turned about its own up axis by 90, 180 and 270 degrees from its camera, compared as
hard silhouettes and as textured renders on white. ``fid`` (Inception, between the photos and renders at
random azimuths) when Inception weights are on this machine.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Self

import torch
import torch.nn.functional as F
from pydantic import model_validator
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from backend.checkpoints import atomic_write, load_checkpoint
from backend.devices import resolve_device
from backend.geometry.camera import Camera
from backend.geometry.metrics import mask_iou, ssim
from backend.geometry.ops import EdgeAdjacency, deformation_loss, edge_adjacent_faces, uniform_laplacian
from backend.models.adaptive_flow import (
    TEMPLATE_ID,
    AdaptiveFlowModel,
    AdaptiveFlowModelConfig,
    AdaptiveFlowOutput,
)
from backend.models.discriminator import Discriminator
from backend.render.renderer import Lighting, RenderOutput, render
from backend.render.settings import RasterSettings
from backend.render.uv import uv_rasterize
from training.commands import register_training_command
from training.config import Schedule, TrainConfig, apply_overrides
from training.datasets.cmr import PartMaps
from training.datasets.cub import CubDataset
from training.distributed import unwrap_model
from training.evaluation import ground_truth_mesh, mean_metrics
from training.loop import RunResult, base_dataset, move_to_device, train
from training.losses.adversarial import grad_reverse, wgan_critic_loss
from training.losses.camera import camera_entropy, weighted_by_hypothesis
from training.losses.compose import Term, weighted_total
from training.losses.fid import FidFeatures, FidMetric, fid_loss
from training.losses.parts import part_chamfer_loss, part_probability_loss, render_part_probabilities
from training.losses.regularisers import softras_flatten, softras_laplacian
from training.losses.silhouette import iou_loss
from training.losses.texture import (
    VggFeatures,
    distance_transform_barrier,
    face_flow_means,
    face_pixel_means,
    flow_alignment_loss,
    perceptual_loss,
    texture_dt_loss,
)
from training.pretrained import imagenet_encoder

log = logging.getLogger(__name__)

NOVEL_TURNS = (90.0, 180.0, 270.0)
"""Azimuths (degrees) of the novel views of the evaluation."""

WHITE = Lighting(background=(1.0, 1.0, 1.0))
"""Unlit colours on a white background: how renders are compared with photos composited on white."""


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


@dataclass
class _Renders:
    """What one step rendered: every hypothesis (item-major) and the most probable one."""

    all_views: RenderOutput  # B H renders
    best: Tensor  # (B,) index of the most probable hypothesis
    best_camera: Camera


@dataclass(frozen=True)
class _Step:
    """What the loss terms of one training step share: the prediction, its texture and renders, the photos."""

    network: AdaptiveFlowModel
    output: AdaptiveFlowOutput
    texture: Tensor  # (B, Ht, Wt, 3)
    renders: _Renders
    image: Tensor  # (B, 3, S, S)
    mask: Tensor  # (B, 1, S, S)
    small_image: Tensor  # (B, 3, s, s), s = render_size
    small_mask: Tensor  # (B, 1, s, s)


@dataclass(frozen=True)
class _Topology:
    """What the losses need of the network's fixed mesh and UV layout, on one device."""

    laplacian: Tensor  # (V, V) uniform Laplacian of the template's edges
    adjacency: EdgeAdjacency  # the two faces beside each edge (flatten term)
    texel_face: Tensor  # (Ht, Wt) face of each texel of the flow image, -1 where no face

    @staticmethod
    def build(network: AdaptiveFlowModel) -> _Topology:
        faces, config = network.faces, network.config
        texel_face, _ = uv_rasterize(
            network.uvs.cpu(), network.face_uvs.cpu(), config.flow_height, config.flow_width
        )
        return _Topology(
            uniform_laplacian(faces, network.num_vertices, device=faces.device),
            edge_adjacent_faces(faces),
            texel_face.to(faces.device),
        )


@dataclass
class _Caches:
    """What a run builds once: the topology (rebuilt when the network changes device) and the FID metric."""

    topology: _Topology | None = None
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
    """The ``adaptive-flow`` method for ``training.loop.train`` (module docstring)."""

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

    def _topology(self, network: AdaptiveFlowModel) -> _Topology:
        """The network's ``_Topology`` on its device, built once."""
        cached = self._caches.topology
        if cached is None or cached.texel_face.device != network.faces.device:
            cached = self._caches.topology = _Topology.build(network)
        return cached

    def settings(self) -> RasterSettings:
        return RasterSettings(image_size=self.config.render_size, sigma=self.config.sigma)

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        """The module docstring's terms, weighted by ``loss_weights`` (``training.losses.compose``)."""
        wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
        shared = self._step_inputs(model, wrapper.network, batch)
        photo_terms, logs = self._photo_terms(shared)
        terms: dict[str, Term] = {
            **photo_terms,
            **self._shape_terms(shared),
            **self._adversarial_terms(shared, wrapper.critic),
            **self._part_terms(shared, batch, step),
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

    def _step_inputs(self, model: nn.Module, network: AdaptiveFlowModel, batch: Mapping[str, Any]) -> _Step:
        """Predict from the batch's photos (through ``model``, so that DDP synchronises) and render."""
        image, mask = batch["image"], batch["mask"]  # (B, 3, S, S), (B, 1, S, S)
        output: AdaptiveFlowOutput = model(image)
        texture = network.texture(image, output)  # (B, Ht, Wt, 3)
        size = self.config.render_size
        small_image, small_mask = _resize(image, size), _resize(mask, size)
        renders = self.render_hypotheses(network, output, texture)
        return _Step(network, output, texture, renders, image, mask, small_image, small_mask)

    def _photo_terms(self, shared: _Step) -> tuple[dict[str, Term], dict[str, Tensor]]:
        """``mask`` (eq. 1) and ``texture`` (eq. 10 plus ``perceptual_weight`` x the perceptual distance at
        the most probable hypothesis, also logged as ``perceptual``), probability-weighted over the
        hypotheses; ``texture_dt`` and ``alignment`` (eq. 12) of the flow."""
        network, output, renders = shared.network, shared.output, shared.renders
        hypotheses = output.probs.shape[1]
        items = torch.arange(len(shared.image), device=shared.image.device)
        alpha = renders.all_views.alpha[..., 0]  # (B H, s, s)
        target = shared.small_mask[:, 0].repeat_interleave(hypotheses, 0)
        mask = weighted_by_hypothesis(iou_loss(alpha, target).view(-1, hypotheses), output.probs).mean()
        rgb = renders.all_views.rgb.permute(0, 3, 1, 2)  # (B H, 3, s, s)
        photo = (shared.small_image * shared.small_mask).repeat_interleave(hypotheses, 0)
        pixel = ((rgb * target[:, None] - photo).abs().mean(dim=(1, 2, 3))).view(-1, hypotheses)

        def perceptual() -> Tensor:
            best_rgb = rgb.view(-1, hypotheses, *rgb.shape[1:])[items, renders.best]  # (B, 3, s, s)
            net = self._perceptual_net(shared.image.device)
            return perceptual_loss(
                net, best_rgb * shared.small_mask, shared.small_image * shared.small_mask
            ).mean()

        texture, texture_parts = weighted_total(
            {"pixel": weighted_by_hypothesis(pixel, output.probs).mean(), "perceptual": perceptual},
            {"pixel": 1.0, "perceptual": self.config.perceptual_weight},
        )
        texel_face = self._topology(network).texel_face
        barrier = distance_transform_barrier(shared.mask)
        texture_dt = texture_dt_loss(output.flow, barrier, (texel_face >= 0).float()).mean()
        face_index = renders.all_views.face_index.view(-1, hypotheses, *alpha.shape[1:])
        best_faces = face_index[items, renders.best]  # (B, s, s)
        flow_means, _ = face_flow_means(output.flow, texel_face, network.num_faces)
        pixel_means, weights = face_pixel_means(best_faces, network.num_faces)
        alignment = flow_alignment_loss(flow_means, pixel_means, weights).mean()
        logs = {"perceptual": texture_parts["perceptual"]} if "perceptual" in texture_parts else {}
        return {"mask": mask, "texture": texture, "texture_dt": texture_dt, "alignment": alignment}, logs

    def _shape_terms(self, shared: _Step) -> dict[str, Term]:
        """``laplacian`` (eq. 4-5) and ``flatten`` (eq. 6) of the meshes, ``deformation`` (eq. 3) of the
        offsets (always computed: the deformation weight switches on during the run)."""
        topology = self._topology(shared.network)
        faces, vertices = shared.network.faces, shared.output.vertices
        return {
            "laplacian": softras_laplacian(vertices, faces, topology.laplacian).mean(),
            "flatten": softras_flatten(vertices, faces, topology.adjacency).mean(),
            "deformation": deformation_loss(shared.output.offsets).mean(),
        }

    def _adversarial_terms(self, shared: _Step, critic: Discriminator) -> dict[str, Term]:
        """``gan`` (the WGAN-GP critic loss through gradient reversal, eq. 37-39) and ``fid`` (eq. 42-47)
        between the masked photos and renders turned by random azimuths, each computed only when weighted;
        the random views are rendered once for both."""
        config = self.config

        @functools.cache
        def views() -> tuple[Tensor, Tensor]:
            fake = self.random_views(
                shared.network, shared.output, shared.texture, shared.renders.best_camera
            )
            real = torch.cat([shared.small_image * shared.small_mask, shared.small_mask], dim=1)
            return real, fake  # (B, 4, s, s) each

        def gan() -> Tensor:
            real, fake = views()
            critic_loss, _ = wgan_critic_loss(
                critic, real, grad_reverse(fake, config.grl_weight), config.gradient_penalty
            )
            return critic_loss

        def fid() -> Tensor:
            real, fake = views()
            return fid_loss(self._fid_net(shared.image.device), real[:, :3], fake[:, :3])

        return {"gan": gan, "fid": fid}

    def _part_terms(self, shared: _Step, batch: Mapping[str, Any], step: int) -> dict[str, Term]:
        """Stage 2: ``part_probability`` (eq. 14, the vertex parts rendered at the most probable camera) and
        ``part_chamfer`` (eq. 13, projected part vertices at every hypothesis, probability-weighted) against
        the batch's part maps, each computed only when weighted (``loss_weights`` zeroes both without part
        maps or semantic template). ``step`` seeds the Chamfer term's pixel samples."""
        config, network, output = self.config, shared.network, shared.output
        hypotheses = output.probs.shape[1]
        template = self.vertex_parts

        @functools.cache
        def parts() -> tuple[Tensor, Tensor]:
            if template is None:
                raise ValueError("the part terms need the vertex segmentation (vertex_parts)")
            maps = _resize(batch["parts"], config.render_size)  # (B, P + 1, s, s)
            return maps, template.to(output.vertices.device)  # (V, P + 1)

        def probability() -> Tensor:
            maps, vertex_parts = parts()
            rendered = render_part_probabilities(
                output.vertices, network.faces, shared.renders.best_camera, vertex_parts, self.settings()
            )
            return part_probability_loss(rendered, maps).mean()

        def chamfer() -> Tensor:
            maps, vertex_parts = parts()
            projected = network.all_cameras(output).project(output.vertices.repeat_interleave(hypotheses, 0))
            distances = part_chamfer_loss(
                projected[..., :2], _vertex_labels(vertex_parts), maps.repeat_interleave(hypotheses, 0),
                config.part_points, torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + step),
            ).view(-1, hypotheses)  # fmt: skip
            return weighted_by_hypothesis(distances, output.probs).mean()

        return {"part_probability": probability, "part_chamfer": chamfer}

    def after_step(self, step: int, model: nn.Module) -> None:
        """The loop's hook after optimiser step ``step`` (0-based): in stage 1, the step's offsets go into
        ``_update_template``, which moves their mean into the template every ``template_update_epochs``."""
        offsets, self._step_offsets = self._step_offsets, None
        if offsets is not None:
            wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
            self._update_template(wrapper.network, offsets, step)

    def render_hypotheses(
        self, network: AdaptiveFlowModel, output: AdaptiveFlowOutput, texture: Tensor
    ) -> _Renders:
        """Textured soft renders (B H) at every hypothesis and the most probable camera."""
        hypotheses = output.probs.shape[1]
        cameras = network.all_cameras(output)
        views = render(
            output.vertices.repeat_interleave(hypotheses, 0), network.faces, cameras, self.settings(),
            uvs=network.uvs, face_uvs=network.face_uvs, texture=texture.repeat_interleave(hypotheses, 0),
        )  # fmt: skip
        best = output.probs.detach().argmax(dim=1)
        return _Renders(views, best, network.camera(output, best))

    def random_views(
        self, network: AdaptiveFlowModel, output: AdaptiveFlowOutput, texture: Tensor, camera: Camera
    ) -> Tensor:
        """RGBA renders (B, 4, s, s) (colour premultiplied) of each prediction turned by a random azimuth."""
        batch = len(texture)
        limit = self.config.random_azimuth
        azimuth = (torch.rand(batch, device=texture.device) * 2 - 1) * limit
        views = render(
            output.vertices, network.faces, camera.turned(azimuth), self.settings(),
            uvs=network.uvs, face_uvs=network.face_uvs, texture=texture,
        )  # fmt: skip
        alpha = views.alpha.permute(0, 3, 1, 2)
        return torch.cat([views.rgb.permute(0, 3, 1, 2) * alpha, alpha], dim=1)

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
        wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
        network = wrapper.network
        dataset = base_dataset(loader.dataset)
        settings = self.settings()
        hard = replace(settings, soft=False)
        values: dict[str, list[float]] = {"mask_iou": [], "ssim": [], "novel_iou": [], "novel_ssim": []}
        device = network.faces.device
        fid = self._fid_metric().accumulator(device)
        for batch in loader:
            batch = move_to_device(batch, device)
            image, mask = batch["image"], batch["mask"]
            output = network(image)
            texture = network.texture(image, output)
            best = output.probs.argmax(dim=1)
            camera = network.camera(output, best)
            small_image, small_mask = _resize(image, settings.image_size), _resize(mask, settings.image_size)
            soft = render(output.vertices, network.faces, camera, settings).alpha[..., 0]
            values["mask_iou"] += mask_iou(soft, small_mask[:, 0], soft=True).tolist()
            ours = self._textured(network, output.vertices, texture, camera, hard)
            photo = _on_white(small_image, small_mask)
            values["ssim"] += ssim(ours.rgb, photo).tolist()
            if "camera" in batch:
                self._novel_views(network, dataset, batch, output, texture, camera, hard, values)
            if fid.active:
                fake = self.random_views(network, output, texture, camera)
                fid.update(real=small_image * small_mask, fake=fake[:, :3])
        metrics = mean_metrics({name: v for name, v in values.items() if v})
        if (value := fid.compute()) is not None:
            metrics["fid"] = value
        return metrics

    def _fid_metric(self) -> FidMetric:
        """The FID metric (Inception-v3 when its ImageNet weights are here), looked up once per run."""
        if self._caches.fid_metric is None:
            config = self.config
            self._caches.fid_metric = FidMetric(config.pretrained, config.pretrained_path or None)
        return self._caches.fid_metric

    def _textured(
        self,
        network: AdaptiveFlowModel,
        vertices: Tensor,
        texture: Tensor,
        camera: Camera,
        settings: RasterSettings,
    ) -> RenderOutput:
        return render(
            vertices, network.faces, camera, settings,
            uvs=network.uvs, face_uvs=network.face_uvs, texture=texture, lighting=WHITE,
        )  # fmt: skip

    def _novel_views(
        self,
        network: AdaptiveFlowModel,
        dataset: Dataset[Any],
        batch: Mapping[str, Any],
        output: AdaptiveFlowOutput,
        texture: Tensor,
        camera: Camera,
        settings: RasterSettings,
        values: dict[str, list[float]],
    ) -> None:
        """Novel-view silhouette IoU and SSIM against the ground-truth object (when the set has it)."""
        truth_cameras = _camera_from_vector(batch["camera"])
        for item in range(len(texture)):
            truth = ground_truth_mesh(dataset, int(batch["index"][item]))
            if truth is None:
                continue
            truth = truth.to(texture.device)
            for turn in NOVEL_TURNS:
                azimuth = texture.new_tensor([turn])
                theirs = render(
                    truth.vertices, truth.faces, truth_cameras[item].turned(azimuth), settings,
                    uvs=truth.uvs, face_uvs=truth.face_uvs, texture=truth.texture, lighting=WHITE,
                )  # fmt: skip
                ours = self._textured(
                    network, output.vertices[item : item + 1], texture[item : item + 1],
                    camera[item].turned(azimuth), settings,
                )  # fmt: skip
                values["novel_iou"].append(
                    float(mask_iou(ours.alpha[0, ..., 0], theirs.alpha[0, ..., 0], soft=False))
                )
                values["novel_ssim"].append(float(ssim(ours.rgb, theirs.rgb)[0]))

    @torch.no_grad()
    def visualise(self, model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        """Rows: photo | reconstruction at its camera | turned by 90, 180 degrees | I_var (when on)."""
        wrapper: AdaptiveFlowNetwork = unwrap_model(model)  # type: ignore[assignment]
        network = wrapper.network
        image, mask = batch["image"], batch["mask"]
        size = self.config.render_size
        output = network(image)
        texture = network.texture(image, output)
        camera = network.camera(output, output.probs.argmax(dim=1))
        hard = RasterSettings(size, soft=False)
        columns = [_on_white(_resize(image, size), _resize(mask, size)).permute(0, 3, 1, 2)]
        for turn in (0.0, 90.0, 180.0):
            azimuth = torch.full((len(image),), turn, device=image.device)
            views = self._textured(network, output.vertices, texture, camera.turned(azimuth), hard)
            columns.append(views.rgb.permute(0, 3, 1, 2))
        if output.variance is not None:
            variance = _resize(output.variance.mean(1, keepdim=True), size)
            low = 1 - network.config.variance_amplitude
            columns.append(((variance - low) / (2 * network.config.variance_amplitude)).expand(-1, 3, -1, -1))
        rows = torch.cat(columns, dim=3)  # (B, 3, s, k s)
        return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1]).clamp(0, 1)


# -- helpers ------------------------------------------------------------------------------------------------
def _camera_from_vector(vector: Tensor) -> Camera:
    """Cameras from the datasets' (B, 7) ``[scale, tx, ty, qw, qx, qy, qz]`` vectors."""
    return Camera.weak_perspective(vector[:, 0], vector[:, 1:3], vector[:, 3:7])


def _resize(images: Tensor, size: int) -> Tensor:
    """(B, C, S, S) -> (B, C, size, size), area-averaged when shrinking."""
    if images.shape[-1] == size:
        return images
    mode = "area" if images.shape[-1] > size else "bilinear"
    return F.interpolate(images, size=(size, size), mode=mode)


def _on_white(image: Tensor, mask: Tensor) -> Tensor:
    """Photos (B, 3, s, s) composited on white with masks (B, 1, s, s) -> (B, s, s, 3)."""
    return (image * mask + (1 - mask)).permute(0, 2, 3, 1)


def _vertex_labels(vertex_parts: Tensor) -> Tensor:
    """(V,) most probable part of each vertex, -1 for background or never-seen vertices."""
    labels = vertex_parts.argmax(dim=1)
    return torch.where((labels == 0) | (vertex_parts.sum(1) <= 0), torch.full_like(labels, -1), labels)


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


@torch.no_grad()
def vertex_segmentation(
    network: AdaptiveFlowModel,
    loader: DataLoader[Any],
    settings: RasterSettings,
    part_permutation: Sequence[int] | None,
    device: torch.device,
) -> Tensor | None:
    """UMR's semantic template: (V, P + 1) part probabilities of the template's vertices.

    For every training photo with part maps, the part maps are sampled at the projected vertices that are
    visible (belong to a face the rasterizer shows) at the most probable camera; the sums are averaged
    over photos and over each vertex and its mirror partner (part channels permuted left/right). Vertices
    never seen get zeros. None when the data has no part maps.
    """
    network = network.to(device).eval()
    totals: Tensor | None = None
    counts = torch.zeros(network.num_vertices, device=device)
    for batch in loader:
        if "parts" not in batch:
            return None
        image = batch["image"].to(device)
        parts = batch["parts"].to(device)  # (B, P + 1, S, S)
        output = network(image)
        camera = network.camera(output, output.probs.argmax(dim=1))
        faces_seen = render(output.vertices, network.faces, camera, replace(settings, soft=False)).face_index
        projected = camera.project(output.vertices)[..., :2]  # (B, V, 2) NDC, y up
        grid = torch.stack([projected[..., 0], -projected[..., 1]], dim=-1)[:, :, None]  # (B, V, 1, 2)
        sampled = F.grid_sample(parts, grid, align_corners=False)[..., 0].transpose(1, 2)  # (B, V, P + 1)
        for item in range(len(image)):
            shown = faces_seen[item][faces_seen[item] >= 0].unique()
            visible = torch.zeros(network.num_vertices, dtype=torch.bool, device=device)
            visible[network.faces[shown].flatten()] = True
            contribution = sampled[item] * visible[:, None]
            totals = contribution if totals is None else totals + contribution
            counts += visible.float()
    if totals is None:
        return None
    mirrored = totals[network.mirror_index]
    mirrored_counts = counts[network.mirror_index]
    if part_permutation is not None:
        mirrored = mirrored[:, list(part_permutation)]
    totals, counts = totals + mirrored, counts + mirrored_counts
    probabilities = totals / counts.clamp_min(1)[:, None]
    return probabilities.cpu()


def datasets(config: AdaptiveFlowTrainConfig) -> tuple[CubDataset, Dataset[Any] | None]:
    """The training split (augmented) and the evaluation split (not augmented; None when absent)."""
    if not config.data:
        raise ValueError("no data folder: pass --data DIR (CUB in CMR's layout, or a synthetic 'cub' copy)")
    part_maps = None
    if config.part_maps:
        part_maps = PartMaps(directory=Path(config.part_maps), num_channels=config.part_channels)
    common: dict[str, Any] = {
        "annotation_root": config.annotation_root or None,
        "image_size": config.model.image_size,
        "part_maps": part_maps,
        "seed": config.seed,
    }
    train_set = CubDataset(config.data, config.train_split, **common)
    try:
        eval_set: Dataset[Any] | None = CubDataset(config.data, config.eval_split, augment=False, **common)
    except FileNotFoundError:
        eval_set = None
    if eval_set is not None and config.eval_items:
        eval_set = Subset(eval_set, range(min(config.eval_items, len(eval_set))))  # type: ignore[arg-type]
    return train_set, eval_set


def run(
    config: AdaptiveFlowTrainConfig,
    train_set: Dataset[Any] | None = None,
    eval_set: Dataset[Any] | None = None,
) -> RunResult:
    """Train as ``config`` says (module docstring); the result names the final checkpoint."""
    if train_set is None:
        train_set, eval_set = datasets(config)
    size = len(train_set)  # type: ignore[arg-type]
    steps_per_epoch = max(1, size // config.batch_size)
    vertex_parts, permutation = None, None
    base = base_dataset(train_set)
    part_maps: PartMaps | None = getattr(base, "part_maps", None)
    if config.stage == 2 and config.stage1_checkpoint and part_maps is not None:
        permutation = part_maps.channel_permutation
        stage1 = AdaptiveFlowTraining(apply_overrides(config, {"stage1_init": "all"}))
        wrapper = stage1.build_model()
        assert isinstance(wrapper, AdaptiveFlowNetwork)
        network = wrapper.network
        loader = DataLoader(_unaugmented(base), batch_size=config.batch_size, shuffle=False)
        device = resolve_device(config.device)
        vertex_parts = vertex_segmentation(network, loader, stage1.settings(), permutation, device)
        if vertex_parts is not None:
            save_vertex_parts(vertex_parts, Path(config.out))
    method = AdaptiveFlowTraining(config, steps_per_epoch, vertex_parts, permutation)
    info = {
        "name": "cub-layout",
        "root": str(Path(config.data).resolve()) if config.data else type(base).__name__,
        "train_split": config.train_split,
        "train_items": size,
        "eval_split": config.eval_split,
        "eval_items": len(eval_set) if eval_set is not None else 0,  # type: ignore[arg-type]
        "stage": config.stage,
        "part_maps": part_maps is not None,
    }
    return train(method, config, train_set, eval_set, dataset_info=info)


VERTEX_PARTS_FILE = "vertex_parts.safetensors"
"""Where stage 2 leaves its vertex segmentation in the run folder (tensor ``vertex_parts``), to inspect."""


def save_vertex_parts(vertex_parts: Tensor, out: Path) -> Path:
    """Write the (V, P + 1) vertex segmentation to ``out / VERTEX_PARTS_FILE`` (safetensors, atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / VERTEX_PARTS_FILE
    tensors = {"vertex_parts": vertex_parts.detach().cpu().contiguous()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    return path


def _unaugmented(dataset: Dataset[Any]) -> Dataset[Any]:
    """The same photos without jitter or mirroring (for the vertex segmentation)."""
    if isinstance(dataset, CubDataset):
        return CubDataset(
            dataset.root, dataset.split, image_size=dataset.config.image_size, augment=False,
            part_maps=dataset.part_maps, seed=dataset.config.seed,
        )  # fmt: skip
    return dataset


# -- command line ---------------------------------------------------------------------------------------
def register(subparsers: Any) -> argparse.ArgumentParser:
    """``mono2mesh-train adaptive-flow``: every field of ``AdaptiveFlowTrainConfig`` as a flag."""
    return register_training_command(
        subparsers,
        "adaptive-flow",
        "train the adaptive-gradient texture-flow model (method adaptive-flow; two stages)",
        __doc__,
        AdaptiveFlowTrainConfig,
        datasets,
        run,
    )
