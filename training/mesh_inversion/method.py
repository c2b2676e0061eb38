"""``MeshInversionTraining``, the ``mesh-inversion`` GAN pre-training for ``training.loop.train``.

- ``MeshInversionNetwork``: the backend's ``MeshGenerator``, its exponential moving average (no gradients;
  what checkpoints hold when ``ema_decay`` > 0), D_uv (``UvDiscriminator``) and D_I (``PatchDiscriminator``
  on RGBA renders, none when ``image_gan_weight`` is 0). ``forward`` is the generator's.
- ``training_step`` on a batch of pseudo ground truth (``training.mesh_inversion.pseudo_gt``: displacement
  (B, 3, M, M), texture (B, 3, T, T), texture_mask (B, 1, T, T), camera (B, 7) = [scale, tx, ty, qw, qx,
  qy, qz], image (B, 3, S, S), mask (B, 1, S, S)): z ~ N(0, I) from the global generator (restored on
  resume) gives G(z) = (displacement, texture);
  - ``uv_gan`` / ``uv_discriminator`` (eq. 1, 2): D_uv on the packed real (pseudo-GT displacement,
    texture, mask) against the packed fake (G's displacement and texture, masked with the same batch's
    pseudo-GT masks, so the mask tells nothing);
  - ``image_gan`` / ``image_discriminator`` (eq. 1, 3): D_I on the generated meshes rendered with the
    batch's pseudo-GT cameras (soft silhouette as alpha, texture on black) against the real masked images
    ``(image * mask, mask)``;
  - ``mesh_regulariser``: SoftRas's flatten loss of the generated meshes (mean over the batch).
  Each adversarial pair comes from ``training.losses.adversarial.two_player_losses`` (frozen critic: one
  optimiser, one backward, each network gets only its own objective's gradient), with ``gan_loss``
  (least squares by default); ``weighted_total`` composes them with the config's weights.
- ``configure_optimizer``: Adam, the generator at ``lr``, both discriminators at ``discriminator_lr``.
  ConvMesh's 2 discriminator steps per generator step are not reproduced (the loop makes one step).
- ``after_step``: the EMA update (parameters averaged, BatchNorm statistics copied).
- ``evaluate``: on the first ``eval_items`` pseudo-GT items, with latent codes from ``EVAL_SEED``: both
  discriminators' mean scores on real and generated data (``d_uv_real``, ``d_uv_fake``, ``d_image_real``,
  ``d_image_fake``), the RMS displacement of real and generated maps, the masked-texel mean colour gap
  and, when Inception-v3 ImageNet weights are present, ``fid`` between real masked images and the renders
  (ConvMesh's "full FID" with the dataset's cameras; skipped otherwise).
- ``visualise``: per item, the real masked image, the sample of latent ``EVAL_SEED + item`` rendered with
  that item's camera, the same sample from ``views`` azimuths (the camera turned about the object's up
  axis) and its texture.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from backend.geometry.camera import Camera
from backend.geometry.ops import EdgeAdjacency, edge_adjacent_faces, flatten_loss
from backend.models.mesh_inversion import (
    TEMPLATE_ID,
    GeneratorOutput,
    MeshGenerator,
    UvDiscriminator,
)
from backend.models.texture_completion import PatchDiscriminator
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from training.config import TrainConfig
from training.distributed import unwrap_model
from training.evaluation import camera_from_vector
from training.losses.adversarial import TwoPlayerLosses, two_player_losses
from training.losses.compose import Term, weighted_total
from training.losses.fid import FidMetric
from training.mesh_inversion.config import MeshInversionTrainConfig

METHOD = "mesh-inversion"
"""Checkpoint method name (the backend's ``mesh-inversion``)."""

EVAL_SEED = 20_240_917
"""Seed of the evaluation and picture latent codes (item i uses EVAL_SEED + i): the same in every run."""

IMAGE_CHANNELS = 4
"""D_I sees RGBA: colour on black and the silhouette."""


def render_rgba(
    generator: MeshGenerator, output: GeneratorOutput, camera: Camera, settings: RasterSettings
) -> Tensor:
    """The generated meshes rendered by ``camera`` (B cameras): RGBA (B, 4, S, S), colour on black."""
    vertices = generator.vertices(output.displacement)  # (B, V, 3)
    texture = output.texture.permute(0, 2, 3, 1)  # (B, T, T, 3)
    images = render(vertices, generator.faces, camera, settings, uvs=generator.uvs,
                    face_uvs=generator.face_uvs, texture=texture)  # fmt: skip
    return torch.cat([images.rgb, images.alpha], dim=-1).permute(0, 3, 1, 2)  # (B, 4, S, S)


def real_rgba(image: Tensor, mask: Tensor) -> Tensor:
    """Real images (B, 3, S, S) and masks (B, 1, S, S) as D_I's RGBA (B, 4, S, S): colour on black."""
    return torch.cat([image * mask, mask], dim=1)


class _PackedUvCritic(nn.Module):
    """D_uv on packed inputs (B, 7, T, T): the one-tensor critic ``two_player_losses`` calls."""

    def __init__(self, critic: UvDiscriminator) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, packed: Tensor) -> Tensor:
        return self.critic.score(packed)


class MeshInversionNetwork(nn.Module):
    """What the loop trains (module docstring). ``forward(z, labels)`` is the generator's."""

    def __init__(
        self,
        generator: MeshGenerator,
        uv_critic: UvDiscriminator,
        image_critic: PatchDiscriminator | None,
        ema: bool,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.uv_critic = uv_critic
        self.image_critic = image_critic
        self.ema: MeshGenerator | None = None
        if ema:
            self.ema = copy.deepcopy(generator)
            self.ema.requires_grad_(False)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> GeneratorOutput:
        """z (B, z_dim) (+ labels (B,)) -> the generator's ``GeneratorOutput``."""
        output: GeneratorOutput = self.generator(z, labels)
        return output

    @property
    def sampler(self) -> MeshGenerator:
        """The generator evaluated, shown and exported: the moving average when there is one."""
        return self.ema if self.ema is not None else self.generator

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """``ema = decay * ema + (1 - decay) * generator`` for parameters; buffers (BatchNorm) copied."""
        if self.ema is None:
            return
        for average, current in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            average.lerp_(current.detach(), 1.0 - decay)
        for average_buffer, buffer in zip(self.ema.buffers(), self.generator.buffers(), strict=True):
            average_buffer.copy_(buffer)


class MeshInversionTraining:
    """The ``mesh-inversion`` GAN pre-training for ``training.loop.train`` (module docstring)."""

    name = METHOD
    template = TEMPLATE_ID

    def __init__(self, config: MeshInversionTrainConfig) -> None:
        self.config = config
        self.fid = FidMetric(config.pretrained, config.pretrained_path or None)
        self._adjacency: EdgeAdjacency | None = None

    @property
    def raster(self) -> RasterSettings:
        """Soft rasterisation at the crops' size (soft silhouettes carry D_I's gradient to the shape)."""
        return RasterSettings(image_size=self.config.image_size, sigma=self.config.render_sigma, soft=True)

    def build_model(self) -> nn.Module:
        config = self.config
        model = config.model
        uv_critic = UvDiscriminator(model.mesh_size, model.texture_size, config.uv_discriminator_channels)
        image_critic = None
        if config.image_gan_weight > 0:
            image_critic = PatchDiscriminator(
                IMAGE_CHANNELS, config.image_discriminator_channels, config.image_discriminator_layers
            )
        return MeshInversionNetwork(MeshGenerator(model), uv_critic, image_critic, ema=config.ema_decay > 0)

    def configure_optimizer(self, model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        """Adam with two groups: the generator at ``lr``, the discriminators at ``discriminator_lr``."""
        network: MeshInversionNetwork = unwrap_model(model)  # type: ignore[assignment]
        critics = list(network.uv_critic.parameters())
        if network.image_critic is not None:
            critics += list(network.image_critic.parameters())
        discriminator_lr = getattr(config, "discriminator_lr", self.config.discriminator_lr)
        groups = [
            {"params": list(network.generator.parameters()), "lr": config.lr},
            {"params": critics, "lr": discriminator_lr},
        ]
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)

    def export_weights(self, model: nn.Module) -> Mapping[str, Tensor]:
        """The generator's state dict (its moving average when there is one), for ``build_generator``."""
        network: MeshInversionNetwork = unwrap_model(model)  # type: ignore[assignment]
        return network.sampler.state_dict()

    def after_step(self, step: int, model: nn.Module) -> None:
        network: MeshInversionNetwork = model  # type: ignore[assignment]
        network.update_ema(self.config.ema_decay)

    def adjacency(self, faces: Tensor) -> EdgeAdjacency:
        """The template's interior edges (for the flatten loss), computed once, on ``faces``' device."""
        if self._adjacency is None or self._adjacency.edges.device != faces.device:
            self._adjacency = edge_adjacent_faces(faces)
        return self._adjacency

    @staticmethod
    def labels(batch: Mapping[str, Any], generator: MeshGenerator) -> Tensor | None:
        """The batch's class labels (B,) for a class-conditional generator (``ValueError`` without them)."""
        if not generator.config.num_classes:
            return None
        if "label" not in batch:
            raise ValueError(
                "model.num_classes > 0 needs class labels: the pseudo ground truth has no 'label'"
            )
        labels: Tensor = batch["label"]
        return labels.long()

    # -- training --------------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, Any], step: int) -> dict[str, Tensor]:
        config = self.config
        network: MeshInversionNetwork = unwrap_model(model)  # type: ignore[assignment]
        generator = network.generator
        displacement, texture = batch["displacement"], batch["texture"]  # (B, 3, M, M), (B, 3, T, T)
        texture_mask = batch["texture_mask"]  # (B, 1, T, T)
        size = len(displacement)
        z = torch.randn(size, config.model.z_dim, device=displacement.device)  # global generator: resumable
        output: GeneratorOutput = model(z, self.labels(batch, generator))
        uv_critic = _PackedUvCritic(network.uv_critic)
        real_uv = network.uv_critic.pack(displacement, texture, texture_mask)  # (B, 7, T, T)
        fake_uv = network.uv_critic.pack(output.displacement, output.texture, texture_mask)
        uv = two_player_losses(uv_critic, real_uv, fake_uv, config.gan_loss)
        losses: dict[str, Tensor] = {"d_uv_real": uv.real_score, "d_uv_fake": uv.fake_score}
        vertices = generator.vertices(output.displacement)  # (B, V, 3)
        regulariser = flatten_loss(vertices, generator.faces, self.adjacency(generator.faces)).mean()

        @functools.cache
        def image_pair() -> TwoPlayerLosses:  # D_I on renders with the pseudo-GT cameras (eq. 1, 3)
            if network.image_critic is None:
                raise ValueError("the image terms need D_I: image_gan_weight must be > 0")
            camera = camera_from_vector(batch["camera"])
            fake = render_rgba(generator, output, camera, self.raster)  # (B, 4, S, S)
            real = real_rgba(batch["image"], batch["mask"])
            pair = two_player_losses(network.image_critic, real, fake, config.gan_loss)
            losses.update(d_image_real=pair.real_score, d_image_fake=pair.fake_score)
            return pair

        terms: dict[str, Term] = {
            "uv_gan": uv.generator,
            "uv_discriminator": uv.discriminator,
            "image_gan": lambda: image_pair().generator,
            "image_discriminator": lambda: image_pair().discriminator,
            "mesh_regulariser": regulariser,
        }
        total, logged = weighted_total(terms, self.loss_weights())
        return {**logged, **losses, "loss": total}

    def loss_weights(self) -> dict[str, float]:
        """Eq. 1's lambda_uv and lambda_I for the generator, ``discriminator_weight`` for eq. 2 and 3 (the
        image pair only with D_I), ``mesh_reg_weight`` for the flatness of the generated meshes."""
        config = self.config
        image_critic = config.discriminator_weight if config.image_gan_weight > 0 else 0.0
        return {
            "uv_gan": config.uv_gan_weight,
            "uv_discriminator": config.discriminator_weight,
            "image_gan": config.image_gan_weight,
            "image_discriminator": image_critic,
            "mesh_regulariser": config.mesh_reg_weight,
        }

    # -- evaluation ------------------------------------------------------------------------------------
    def eval_latents(self, generator: MeshGenerator, first: int, count: int) -> Tensor:
        """Latent codes (count, z_dim) of items first, first + 1, ...: item i's from ``EVAL_SEED + i``."""
        codes = [
            torch.randn(
                1,
                generator.config.z_dim,
                generator=torch.Generator().manual_seed(EVAL_SEED + i),
                device="cpu",
            )
            for i in range(first, first + count)
        ]  # drawn on the CPU so that every device sees the same codes
        return torch.cat(codes).to(generator.device)

    def eval_labels(self, generator: MeshGenerator, first: int, count: int) -> Tensor | None:
        """Labels (count,) of items first, ...: item i's is i modulo the class count (None: unconditional)."""
        classes = generator.config.num_classes
        if not classes:
            return None
        return torch.arange(first, first + count, device=generator.device) % classes

    def sample(self, generator: MeshGenerator, first: int, count: int) -> GeneratorOutput:
        """The samples of items first, ..., first + count - 1 (``eval_latents``)."""
        output: GeneratorOutput = generator(
            self.eval_latents(generator, first, count), self.eval_labels(generator, first, count)
        )
        return output

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader[Any]) -> dict[str, float]:
        network: MeshInversionNetwork = unwrap_model(model)  # type: ignore[assignment]
        generator = network.sampler
        sums: dict[str, float] = {}
        fid = self.fid.accumulator(generator.device)
        seen = 0

        def add(name: str, value: Tensor, count: int) -> None:
            sums[name] = sums.get(name, 0.0) + float(value) * count

        for batch in loader:
            count = len(batch["displacement"])
            output = self.sample(generator, seen, count)
            seen += count
            mask = batch["texture_mask"]
            add("d_uv_real", network.uv_critic(batch["displacement"], batch["texture"], mask).mean(), count)
            add("d_uv_fake", network.uv_critic(output.displacement, output.texture, mask).mean(), count)
            add("displacement_rms_real", batch["displacement"].pow(2).mean().sqrt(), count)
            add("displacement_rms_fake", output.displacement.pow(2).mean().sqrt(), count)
            visible = mask.sum().clamp_min(1.0)
            gap = ((batch["texture"] - output.texture) * mask).sum((0, 2, 3)) / visible  # (3,) mean colours
            add("texture_mean_gap", gap.abs().mean(), count)
            if network.image_critic is not None or fid.active:
                fake = render_rgba(generator, output, camera_from_vector(batch["camera"]), self.raster)
                real = real_rgba(batch["image"], batch["mask"])
                if network.image_critic is not None:
                    add("d_image_real", network.image_critic(real).mean(), count)
                    add("d_image_fake", network.image_critic(fake).mean(), count)
                if fid.active:
                    fid.update(real=real[:, :3], fake=fake[:, :3])
        metrics = {name: value / max(seen, 1) for name, value in sums.items()}
        if (value := fid.compute()) is not None:
            metrics["fid"] = value
        return metrics

    @torch.no_grad()
    def visualise(self, model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
        """Rows: real masked image | sample at the item's camera | the sample from ``views`` azimuths |
        its texture (resized to S), on white."""
        network: MeshInversionNetwork = unwrap_model(model)  # type: ignore[assignment]
        generator = network.sampler
        count = len(batch["image"])
        size = self.config.image_size
        output = self.sample(generator, 0, count)
        camera = camera_from_vector(batch["camera"])
        views = self.config.views
        turns = [360.0 * k / views for k in range(views)]
        cameras = Camera.cat([camera] + [camera.turned(turn) for turn in turns])  # ((1 + K) B,)
        repeated = GeneratorOutput(
            output.displacement.repeat(1 + views, 1, 1, 1), output.texture.repeat(1 + views, 1, 1, 1)
        )
        rgba = render_rgba(generator, repeated, cameras, self.raster)  # ((1 + K) B, 4, S, S)
        shown = rgba[:, :3] + (1 - rgba[:, 3:])  # on white
        renders = shown.view(1 + views, count, 3, size, size)  # (1 + K, B, 3, S, S)
        mask = batch["mask"]
        real = batch["image"] * mask + (1 - mask)
        texture = F.interpolate(output.texture, size=(size, size), mode="bilinear", align_corners=False)
        columns = [real, *renders.unbind(0), texture]
        rows = torch.cat(columns, dim=3)  # (B, 3, S, (3 + K) S)
        return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1]).clamp(0, 1)
