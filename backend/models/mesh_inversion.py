"""MeshInversion's 3-D GAN: ConvMesh's generator of UV-space meshes and textures, and its UV critic.

Contract:

- ``MeshGenerator(config)``: ``forward(z (B, z_dim), labels (B,) int64 | None) -> GeneratorOutput`` with
  ``displacement`` (B, 3, M, M), the UV-space displacement map of the 482-vertex UV sphere
  (``uv_sphere_template()``, template id ``TEMPLATE_ID``; ``backend.geometry.uv_displacement.UvDisplacement``
  samples it at the vertices: ``vertices(displacement) -> (B, V, 3)``), and ``texture`` (B, 3, T, T) in
  [0, 1], in the template's UV layout (row 0 is v = 1, column j at u = (j + 0.5) / T). Labels are required
  when ``config.num_classes > 0`` (a class embedding of ``z_dim`` entries is concatenated to z) and refused
  otherwise. ``faces``, ``uvs`` and ``face_uvs`` are the template's, as non-persistent buffers (they follow
  the module's device and stay out of the state dict); ``mesh(output, index)`` is one sample as a CPU
  ``TexturedMesh`` with its (T, T, 3) texture.
- Architecture (ConvMesh's generator, sizes ours): z (+ embedding) -> linear -> (C, 4, 4) -> blocks of
  nearest x2 upsampling and two 3 x 3 convolutions (BatchNorm, ReLU) up to M x M, where the displacement
  head (one 3 x 3 convolution, zero-initialised, so every z gives the template at initialisation) reads
  the features; the texture branch continues the same blocks up to T x T and ends with a 3 x 3
  convolution and a sigmoid. Channels at resolution r: ``width * min(8, T / r)``. Convolutions pad the
  map's width (u) circularly, since u wraps around the sphere, and its height (v) by replication (the
  poles). With ``config.symmetric`` (ConvMesh's default) the texture branch keeps only the right half of
  the M x M features (u >= 0.5) and generates a (T, T / 2) half, padded by reflection at both ends (the
  plane of symmetry at u = 0.5 and the seam at u = 1 each face their mirror image); the full texture is
  that half beside its left-right flip (``backend.geometry.templates.mirror_texture``: x -> -x maps u to
  1 - u), and the displacement map goes through ``UvDisplacement.symmetrize``. BatchNorm makes the output
  of one z depend on the batch in training mode: callers that invert or sample call ``eval()``.
- ``UvDiscriminator(mesh_size, texture_size, base_channels, norm)``: D_uv of MeshInversion's eq. 1-2 on
  (displacement, texture) in UV space. Its input is ``pack(displacement, texture, mask)`` (B, 7, T, T): the
  texture times the visibility mask, the mask, and the displacement map upsampled (bilinear) to T x T.
  Fake textures are masked with a pseudo-ground-truth mask too, so the mask tells real from fake nothing.
  It scores at two scales, as ConvMesh's separate texture and mesh critics do: pix2pix's PatchGAN
  (``backend.models.texture_completion.PatchDiscriminator``) on the T x T input for local texture detail,
  and, when T > M, a second one on the input area-averaged to M x M for the whole shape (its receptive
  field covers the map). ``forward`` returns patch logits (B, S, h, w), one channel per scale, the coarse
  scale resized (nearest) to the fine scale's grid so that a mean over the logits weighs the scales
  equally. ``score(packed)`` is the same on a packed input.
- ``build_generator(settings)``: the generator from a checkpoint's ``config["model"]`` (the
  ``MeshInversionModelConfig`` dump). Checkpoints (``mono2mesh-train mesh-inversion-gan``) hold the
  generator's weights only.

D_I (the 70 x 70 image PatchGAN of the paper) is ``PatchDiscriminator`` itself, used by the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn

from backend.config import Config
from backend.geometry.mesh import TexturedMesh
from backend.geometry.templates import SymmetricTemplate, uv_sphere_template
from backend.geometry.uv_displacement import UvDisplacement
from backend.models.texture_completion import NORMS, NormKind, PatchDiscriminator

TEMPLATE_ID = "uvsphere-482"
"""Checkpoint template id: the 482-vertex UV sphere (32 segments, 16 rings) of ConvMesh/MeshInversion."""

BASE_SIZE = 4
"""Side of the generator's first feature map."""

CHANNEL_FACTOR_CAP = 8
"""Channels stop growing at ``CHANNEL_FACTOR_CAP * width`` towards low resolutions."""

UV_CRITIC_CHANNELS = 7
"""D_uv input channels: masked texture (3), mask (1), displacement (3)."""


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class MeshInversionModelConfig(Config):
    """What the backend needs to rebuild the generator from a checkpoint's JSON (``config["model"]``)."""

    z_dim: int = 64
    """Size of the latent code z (ConvMesh/MeshInversion: 64)."""
    num_classes: int = 0
    """0: unconditional; otherwise the number of classes of a class-conditional generator (CUB: 200)."""
    mesh_size: int = 32
    """Side M of the displacement map (ConvMesh: 32); a power of two >= 8."""
    texture_size: int = 64
    """Side T of the texture (the paper: 512); a power of two >= mesh_size."""
    width: int = 32
    """Base channels: the texture's last block has this many, lower resolutions up to 8x."""
    symmetric: bool = True
    """Bilaterally symmetric outputs: half-width texture mirrored, displacement symmetrised (ConvMesh)."""

    @model_validator(mode="after")
    def _check_mesh_inversion_model(self) -> Self:
        if self.z_dim < 1:
            raise ValueError(f"model.z_dim must be positive, got {self.z_dim}")
        if self.num_classes < 0:
            raise ValueError(f"model.num_classes must be >= 0, got {self.num_classes}")
        if not _power_of_two(self.mesh_size) or self.mesh_size < 2 * BASE_SIZE:
            raise ValueError(
                f"model.mesh_size must be a power of two >= {2 * BASE_SIZE}, got {self.mesh_size}"
            )
        if not _power_of_two(self.texture_size) or self.texture_size < self.mesh_size:
            raise ValueError(
                f"model.texture_size must be a power of two >= model.mesh_size ({self.mesh_size}), "
                f"got {self.texture_size}"
            )
        if self.width < 1:
            raise ValueError(f"model.width must be positive, got {self.width}")
        return self


@dataclass
class GeneratorOutput:
    """One batch of generated meshes.

    Attributes:
        displacement: (B, 3, M, M) UV-space displacement map of the UV sphere (``UvDisplacement``).
        texture: (B, 3, T, T) texture in [0, 1], the template's UV layout (row 0 is v = 1).
    """

    displacement: Tensor
    texture: Tensor


class UvConv(nn.Module):
    """A 3 x 3 convolution on a UV map: width padded circularly (full map) or by reflection (half map),
    height by replication. (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, half: bool) -> None:
        super().__init__()
        self.width_padding = "reflect" if half else "circular"
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, features: Tensor) -> Tensor:
        padded = F.pad(features, (1, 1, 0, 0), mode=self.width_padding)
        padded = F.pad(padded, (0, 0, 1, 1), mode="replicate")
        result: Tensor = self.conv(padded)
        return result


class UpBlock(nn.Module):
    """Nearest x2 upsampling, two ``UvConv`` + BatchNorm + ReLU: (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int, half: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            UvConv(in_channels, out_channels, half),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            UvConv(out_channels, out_channels, half),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, features: Tensor) -> Tensor:
        result: Tensor = self.layers(F.interpolate(features, scale_factor=2.0, mode="nearest"))
        return result


class MeshGenerator(nn.Module):
    """z (B, z_dim) (+ labels (B,)) -> displacement (B, 3, M, M), texture (B, 3, T, T) (module docstring)."""

    faces: Tensor  # (F, 3) int64
    uvs: Tensor  # (U, 2) float32
    face_uvs: Tensor  # (F, 3) int64

    def __init__(self, config: MeshInversionModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or MeshInversionModelConfig()
        config = self.config
        template = uv_sphere_template()
        self.template: SymmetricTemplate = template
        self._uv = UvDisplacement(template, map_size=config.mesh_size)  # geometry, not weights
        self._uv_device = self._uv.device
        self.register_buffer("faces", template.mesh.faces.clone(), persistent=False)
        self.register_buffer("uvs", template.mesh.uvs.clone(), persistent=False)
        self.register_buffer("face_uvs", template.mesh.face_uvs.clone(), persistent=False)

        self.embedding = nn.Embedding(config.num_classes, config.z_dim) if config.num_classes else None
        in_features = config.z_dim * (2 if config.num_classes else 1)
        base_channels = self.channels(BASE_SIZE)
        self.fc = nn.Linear(in_features, base_channels * BASE_SIZE * BASE_SIZE)
        self.fc_norm = nn.BatchNorm2d(base_channels)
        trunk: list[nn.Module] = []
        size = BASE_SIZE
        while size < config.mesh_size:
            trunk.append(UpBlock(self.channels(size), self.channels(2 * size), half=False))
            size *= 2
        self.trunk = nn.Sequential(*trunk)
        self.displacement_head = UvConv(self.channels(config.mesh_size), 3, half=False)
        for parameter in self.displacement_head.parameters():  # z -> the template at initialisation
            nn.init.zeros_(parameter)
        branch: list[nn.Module] = []
        while size < config.texture_size:
            branch.append(UpBlock(self.channels(size), self.channels(2 * size), half=config.symmetric))
            size *= 2
        self.texture_branch = nn.Sequential(*branch)
        self.texture_head = UvConv(self.channels(config.texture_size), 3, half=config.symmetric)

    def channels(self, size: int) -> int:
        """Feature channels at resolution ``size``: ``width * min(8, T / size)``."""
        factor = min(CHANNEL_FACTOR_CAP, max(1, self.config.texture_size // size))
        return self.config.width * factor

    @property
    def uv(self) -> UvDisplacement:
        """The displacement-map sampler of the template, on the device of the module's buffers."""
        device = self.faces.device
        if self._uv_device != device:
            self._uv = self._uv.to(device)
            self._uv_device = device
        return self._uv

    @property
    def device(self) -> torch.device:
        return self.faces.device

    def sample_latent(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Latent codes z ~ N(0, I): (batch, z_dim) on the module's device."""
        return torch.randn(batch, self.config.z_dim, generator=generator, device=self.device)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> GeneratorOutput:
        """z (B, z_dim) and, for a class-conditional generator, labels (B,) int64 -> ``GeneratorOutput``."""
        config = self.config
        if z.dim() != 2 or z.shape[1] != config.z_dim:
            raise ValueError(f"z must have shape (B, {config.z_dim}), got {tuple(z.shape)}")
        batch = z.shape[0]
        inputs = z
        if self.embedding is not None:
            if labels is None or labels.shape != (batch,):
                shape = None if labels is None else tuple(labels.shape)
                raise ValueError(f"this generator is class-conditional: labels must have shape ({batch},), "
                                 f"got {shape}")  # fmt: skip
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= config.num_classes):
                raise ValueError(f"labels must be in 0..{config.num_classes - 1}")
            inputs = torch.cat([z, self.embedding(labels.to(z.device))], dim=1)  # (B, 2 z_dim)
        elif labels is not None:
            raise ValueError("this generator is unconditional (model.num_classes is 0): pass no labels")
        features = self.fc(inputs).view(batch, -1, BASE_SIZE, BASE_SIZE)  # (B, C, 4, 4)
        features = F.relu(self.fc_norm(features))
        features = self.trunk(features)  # (B, C_M, M, M)
        displacement = self.displacement_head(features)  # (B, 3, M, M)
        if config.symmetric:
            displacement = self.uv.symmetrize(displacement)
            features = features[..., config.mesh_size // 2 :]  # (B, C_M, M, M / 2): u >= 0.5
        texture = torch.sigmoid(self.texture_head(self.texture_branch(features)))  # (B, 3, T, T or T / 2)
        if config.symmetric:
            texture = torch.cat([texture.flip(-1), texture], dim=-1)  # (B, 3, T, T): u -> 1 - u
        return GeneratorOutput(displacement, texture)

    def vertices(self, displacement: Tensor) -> Tensor:
        """Displacement maps (B, 3, M, M) -> vertices (B, V, 3) of the UV sphere (``UvDisplacement``)."""
        vertices: Tensor = self.uv.vertices(displacement)
        return vertices

    def mesh(self, output: GeneratorOutput, index: int = 0) -> TexturedMesh:
        """Sample ``index`` of ``output`` as a CPU ``TexturedMesh`` with its (T, T, 3) texture in [0, 1]."""
        batch = output.displacement.shape[0]
        if not -batch <= index < batch:
            raise IndexError(f"index {index} out of range for a batch of {batch}")
        with torch.no_grad():
            vertices = self.vertices(output.displacement[index : index + 1])[0]  # (V, 3)
            texture = output.texture[index].permute(1, 2, 0).clamp(0, 1)  # (T, T, 3)
        return TexturedMesh(
            vertices.detach().float().cpu(),
            self.faces.cpu(),
            self.uvs.cpu(),
            self.face_uvs.cpu(),
            texture.detach().float().cpu().contiguous(),
        )


def _patch_layers(size: int) -> int:
    """PatchGAN layers for a ``size`` x ``size`` input: 3 (70 x 70 receptive field) when it fits."""
    return max(1, min(3, int(math.log2(size)) - 2))


class UvDiscriminator(nn.Module):
    """D_uv: (displacement (B, 3, M, M), texture (B, 3, T, T), mask (B, 1, T, T)) -> logits (B, S, h, w)."""

    def __init__(
        self,
        mesh_size: int = 32,
        texture_size: int = 64,
        base_channels: int = 64,
        norm: NormKind = "instance",
    ) -> None:
        super().__init__()
        if not _power_of_two(mesh_size) or not _power_of_two(texture_size) or texture_size < mesh_size:
            raise ValueError(f"mesh_size and texture_size must be powers of two, texture_size >= mesh_size; "
                             f"got {mesh_size} and {texture_size}")  # fmt: skip
        if mesh_size < 8:
            raise ValueError(f"mesh_size must be at least 8, got {mesh_size}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.mesh_size = mesh_size
        self.texture_size = texture_size
        self.fine = PatchDiscriminator(UV_CRITIC_CHANNELS, base_channels, _patch_layers(texture_size), norm)
        self.coarse = (
            PatchDiscriminator(UV_CRITIC_CHANNELS, base_channels, _patch_layers(mesh_size), norm)
            if texture_size > mesh_size
            else None
        )

    @property
    def num_scales(self) -> int:
        return 1 if self.coarse is None else 2

    def pack(self, displacement: Tensor, texture: Tensor, mask: Tensor) -> Tensor:
        """The critic's input (B, 7, T, T): ``texture * mask``, ``mask``, displacement upsampled to T."""
        batch = displacement.shape[0]
        size, mesh = self.texture_size, self.mesh_size
        if displacement.shape != (batch, 3, mesh, mesh):
            raise ValueError(
                f"displacement must have shape (B, 3, {mesh}, {mesh}), got {tuple(displacement.shape)}"
            )
        if texture.shape != (batch, 3, size, size) or mask.shape != (batch, 1, size, size):
            expected = f"(B, 3, {size}, {size}) and (B, 1, {size}, {size})"
            got = f"{tuple(texture.shape)} and {tuple(mask.shape)}"
            raise ValueError(f"texture and mask must have shapes {expected}, got {got}")
        mask = mask.to(texture.dtype)
        upsampled = F.interpolate(displacement, size=(size, size), mode="bilinear", align_corners=False)
        return torch.cat([texture * mask, mask, upsampled.to(texture.dtype)], dim=1)

    def score(self, packed: Tensor) -> Tensor:
        """Packed inputs (B, 7, T, T) -> patch logits (B, S, h, w) (module docstring)."""
        expected = (UV_CRITIC_CHANNELS, self.texture_size, self.texture_size)
        if packed.dim() != 4 or packed.shape[1:] != expected:
            raise ValueError(
                f"expected packed inputs (B, {', '.join(map(str, expected))}), got {tuple(packed.shape)}"
            )
        fine: Tensor = self.fine(packed)  # (B, 1, h, w)
        if self.coarse is None:
            return fine
        coarse = self.coarse(F.adaptive_avg_pool2d(packed, self.mesh_size))  # (B, 1, h', w')
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="nearest")  # (B, 1, h, w)
        return torch.cat([fine, coarse], dim=1)

    def forward(self, displacement: Tensor, texture: Tensor, mask: Tensor) -> Tensor:
        """(B, 3, M, M), (B, 3, T, T), (B, 1, T, T) -> patch logits (B, S, h, w)."""
        return self.score(self.pack(displacement, texture, mask))


def build_generator(settings: Mapping[str, Any]) -> MeshGenerator:
    """A fresh generator from a checkpoint's ``config["model"]`` dict (``ConfigError`` if it does not fit)."""
    return MeshGenerator(MeshInversionModelConfig.model_validate(settings))
