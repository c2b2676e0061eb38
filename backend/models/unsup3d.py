"""Unsup3d (Wu, Rupprecht, Vedaldi 2020): the networks and the image formation of a symmetric object.

Contract:

- ``Unsup3dModelConfig``: the reference's values as defaults (64 x 64 images, depth in [0.9, 1.1], a 10
  degree field of view, views within +-60 degrees and +-0.1 translations, ambient and diffuse light in
  [0, 1]). ``build_unsup3d(settings)`` rebuilds the network from a checkpoint's ``config["model"]`` (its
  dump); ``TEMPLATE_ID`` is the checkpoint template id (the 64 x 64 depth grid).
- ``Unsup3dNet(config)``: ``forward(images (B, 3, S, S) in [0, 1]) -> Unsup3dOutput``. Five networks read
  the image scaled to [-1, 1] (as the reference): ``depth_net`` and ``albedo_net`` (encoder-decoders
  with GroupNorm, 3 -> 1 without activation and 3 -> 3 with tanh), ``light_net`` (3 -> 4) and
  ``view_net`` (3 -> 6) (plain encoders ending in tanh) and ``confidence_net`` (two softplus heads:
  2 x S x S and 2 x S/4 x S/4). Layer tables of the reference (``EDDeconv``, ``Encoder``, ``ConfNet``),
  generalised to any power-of-two size >= 32 by the number of stride-2 levels (channels
  ``nf * min(2^l, 8)`` at level l). The output maps the raw values as the reference does (``Unsup3dOutput``).
- ``shade(albedo, depth, ambient, diffuse, light_direction, fov) -> Shading``: Lambertian shading of the
  canonical view: ``image = albedo * (ambient + diffuse * max(0, n . l))`` with ``n`` the depth map's
  normals (``depth_normals``: central differences of the unprojected grid, as the reference; the 1-px
  border faces the camera).
- ``flip(tensor)``: left-right flip (last axis); the symmetric branch uses ``flip`` of the canonical
  depth and albedo.
- ``warp_to_view(canon_image, canon_depth, view, fov, pivot_depth) -> ViewWarp``: the canonical image
  seen from the view (module section "Warp" below).
- ``reconstruct(output, config) -> Reconstruction``: the image formation of one training step, both
  branches (the input's canonical depth and albedo, and their flips), as the reference's ``forward``.

Frames. The project's view space is right-handed, Y up, the camera at the origin looking down -Z
(``backend.geometry``); the reference's camera frame is x right, y DOWN, z forward: ``S = diag(1, -1, -1)``
maps one to the other. Normals (``Shading.normal``) point out of the surface towards the camera (z > 0
for a surface facing it) and ``light_direction`` points from the surface towards the light, both in the
project's view space. The reference writes its light direction as ``normalize(dx, dy, 1)`` and its normals
away from the camera in its own frame; both are ``-S`` of ours, so ``n . l`` is the same and our light
direction is ``normalize(-dx, dy, 1)``. ``view`` (B, 6) is the reference's parameterisation in ITS frame:
rotation angles (degrees) about its x, y, z axes composed as ``R = R_z R_y R_x`` (x first), then the
translation (t_x, t_y, t_z); ``warp_to_view`` applies ``S R S`` and ``S t`` in ours.

Warp (``warp_to_view``; the reference uses a neural mesh renderer for the view's depth and then
``grid_sample``): the canonical depth-grid mesh (``backend.geometry.depth_grid``) is rotated about the
pivot (0, 0, -pivot_depth) and translated, projected with the same camera and rasterised with the
project's rasteriser (hard coverage, perspective-correct). Each covered pixel's ray meets the visible
triangle at barycentrics recomputed here (differentiably, in the triangle's projected and depth
positions), whose point in the canonical frame is projected back into the canonical image, where
``F.grid_sample`` (bilinear, ``align_corners=True``: pixel centres at integer positions as in the
reference) reads the colour. The rasteriser is asked for the visible face at the pixel centre moved by
``TIE_BREAK_OFFSET`` (a fixed 1e-3 px sub-pixel offset): in the identity view every pixel centre falls
on a mesh vertex, and a closed inside test in floating point can miss all of the triangles around it;
the recomputed barycentrics are those of the true pixel centre, so an identity view reproduces the
image exactly. Pixel centres on the mesh's outline (the outer ring in the identity view) are covered on
its right and bottom sides and not on its left and top ones.
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
from backend.geometry.depth_grid import (
    depth_grid_faces,
    depth_grid_vertices,
    grid_pixel_positions,
    project_to_pixels,
    unproject_pixels,
)
from backend.geometry.ops import gather_rows
from backend.render.rasterize import rasterize
from backend.render.settings import RasterSettings

TEMPLATE_ID = "depthgrid-64"
"""Checkpoint template id: the depth grid of a 64 x 64 image (``backend.geometry.depth_grid``)."""

TIE_BREAK_OFFSET = (1.0e-3, 0.4e-3)
"""Pixel offset (columns, rows) of the point whose visible face the rasteriser finds (module docstring):
at an angle of about 22 degrees, away from the grid's edge directions (0, 45, 90, 135 degrees)."""

NEAR = 1e-3
"""Faces with a corner nearer than this depth are not rasterised."""

MIN_IMAGE_SIZE = 32
GROUPS_PER_NF = 16
"""GroupNorm groups per ``nf`` channels (the reference: ``GroupNorm(16 * m, m * nf)``)."""
LEAKY_SLOPE = 0.2


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class Unsup3dModelConfig(Config):
    """What the backend needs to rebuild the networks from a checkpoint's JSON (``config["model"]``)."""

    image_size: int = 64
    """Side S of the square input (the reference: 64); a power of two >= 32."""
    nf: int = 64
    """Base channels of the depth, albedo and confidence networks (the reference: 64); a multiple of 16."""
    zdim: int = 256
    """Bottleneck channels of the depth and albedo encoder-decoders (the reference: 256)."""
    confidence_zdim: int = 128
    """Bottleneck channels of the confidence network (the reference: 128)."""
    encoder_nf: int = 32
    """Base channels of the light and view encoders (the reference: 32)."""
    depth_min: float = 0.9
    """Smallest canonical depth (the reference: 0.9)."""
    depth_max: float = 1.1
    """Largest canonical depth (the reference: 1.1)."""
    border_pixels: int = 2
    """Columns at the left and at the right whose canonical depth is clamped (the reference: 2; its clamp
    leaves the top and bottom rows alone)."""
    border_depth: float | None = None
    """The clamped depth; None: ``0.7 depth_max + 0.3 depth_min`` (the reference's, 1.04)."""
    fov: float = 10.0
    """Field of view of the camera in degrees (the reference: 10)."""
    rotation_range: float = 60.0
    """Largest view rotation about each axis, degrees (the reference's xyz_rotation_range: 60)."""
    xy_translation_range: float = 0.1
    """Largest view translation along x and y (the reference: 0.1)."""
    z_translation_range: float = 0.1
    """Largest view translation along z (the reference: 0.1; 0.1 for its cats too)."""
    ambient_min: float = 0.0
    """Ambient light for a tanh output of -1 (the reference's min_amb_light: 0)."""
    ambient_max: float = 1.0
    """Ambient light for a tanh output of +1 (the reference's max_amb_light: 1)."""
    diffuse_min: float = 0.0
    """Diffuse light for a tanh output of -1 (the reference's min_diff_light: 0)."""
    diffuse_max: float = 1.0
    """Diffuse light for a tanh output of +1 (the reference's max_diff_light: 1)."""
    confidence: bool = True
    """False: the ablation without confidence maps (the reference's use_conf_map=False). The confidence
    network is still built and run (one checkpoint layout), but the trainer passes ``sigma=None`` to the
    losses: plain L1 and squared feature distance, the reference's terms."""

    @model_validator(mode="after")
    def _check_unsup3d_model(self) -> Self:
        if not _power_of_two(self.image_size) or self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(
                f"model.image_size must be a power of two >= {MIN_IMAGE_SIZE}, got {self.image_size}"
            )
        if self.nf < GROUPS_PER_NF or self.nf % GROUPS_PER_NF:
            raise ValueError(f"model.nf must be a positive multiple of {GROUPS_PER_NF}, got {self.nf}")
        for name in ("zdim", "confidence_zdim", "encoder_nf"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.depth_min < self.depth_max:
            raise ValueError(
                f"model.depth_min and model.depth_max must satisfy 0 < depth_min < depth_max, "
                f"got {self.depth_min} and {self.depth_max}"
            )
        if not 0 <= self.border_pixels <= self.image_size // 4:
            raise ValueError(
                f"model.border_pixels must lie in 0..{self.image_size // 4}, got {self.border_pixels}"
            )
        if self.border_depth is not None and not self.depth_min <= self.border_depth <= self.depth_max:
            raise ValueError(
                f"model.border_depth must lie in [depth_min, depth_max] = [{self.depth_min}, "
                f"{self.depth_max}], got {self.border_depth}"
            )
        if not 0.0 < self.fov < 180.0:
            raise ValueError(f"model.fov must lie in (0, 180) degrees, got {self.fov}")
        if not 0.0 <= self.rotation_range <= 180.0:
            raise ValueError(f"model.rotation_range must lie in [0, 180] degrees, got {self.rotation_range}")
        for name in ("xy_translation_range", "z_translation_range"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        if self.z_translation_range >= self.depth_min:
            raise ValueError(
                f"model.z_translation_range ({self.z_translation_range}) must be smaller than "
                f"model.depth_min ({self.depth_min}): the surface must stay in front of the camera"
            )
        for low, high in (("ambient_min", "ambient_max"), ("diffuse_min", "diffuse_max")):
            if not 0.0 <= getattr(self, low) <= getattr(self, high):
                raise ValueError(
                    f"model.{low} and model.{high} must satisfy 0 <= {low} <= {high}, "
                    f"got {getattr(self, low)} and {getattr(self, high)}"
                )
        return self

    @property
    def border_depth_value(self) -> float:
        """The clamped border depth: ``border_depth``, or the reference's ``0.7 max + 0.3 min``."""
        if self.border_depth is not None:
            return self.border_depth
        return 0.7 * self.depth_max + 0.3 * self.depth_min

    @property
    def pivot_depth(self) -> float:
        """Depth of the point views rotate about: the middle of the depth range (the reference's 1.0)."""
        return (self.depth_min + self.depth_max) / 2.0

    @property
    def background_depth(self) -> float:
        """The reference's depth of uncovered pixels: ``depth_max + (depth_max - depth_min) / 2`` (1.2)."""
        return self.depth_max + (self.depth_max - self.depth_min) / 2.0


# --- networks ----------------------------------------------------------------------------------------------


def _levels(image_size: int) -> int:
    """Stride-2 levels from S x S down to 4 x 4."""
    return int(math.log2(image_size)) - 2


def _level_channels(nf: int, level: int) -> int:
    """Channels at encoder level l (output side S / 2^(l + 1)): ``nf * min(2^l, 8)``."""
    return nf * min(2**level, 8)


def _group_norm(channels: int, nf: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS_PER_NF * channels // nf, channels)


def _encoder_trunk(in_channels: int, nf: int, zdim: int, image_size: int) -> list[nn.Module]:
    """The reference's GroupNorm encoder: S x S -> (zdim, 1, 1), no norm on the last stride-2 level."""
    levels = _levels(image_size)
    layers: list[nn.Module] = []
    channels = in_channels
    for level in range(levels):
        out = _level_channels(nf, level)
        layers.append(nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1, bias=False))
        if level < levels - 1:
            layers.append(_group_norm(out, nf))
        layers.append(nn.LeakyReLU(LEAKY_SLOPE))
        channels = out
    layers += [nn.Conv2d(channels, zdim, kernel_size=4, stride=1, padding=0, bias=False), nn.ReLU()]
    return layers


class EncoderDecoder(nn.Module):
    """The reference's ``EDDeconv``: (B, C_in, S, S) -> (B, C_out, S, S), optional tanh at the end."""

    def __init__(self, in_channels: int, out_channels: int, nf: int, zdim: int, image_size: int, tanh: bool):
        super().__init__()
        levels = _levels(image_size)
        top = _level_channels(nf, levels - 1)
        layers = _encoder_trunk(in_channels, nf, zdim, image_size)
        layers += [
            nn.ConvTranspose2d(zdim, top, kernel_size=4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.Conv2d(top, top, kernel_size=3, stride=1, padding=1, bias=False),
            nn.ReLU(),
        ]
        for level in range(levels - 2, -1, -1):  # 4 x 4 -> S / 2 x S / 2
            above, out = _level_channels(nf, level + 1), _level_channels(nf, level)
            layers += [
                nn.ConvTranspose2d(above, out, kernel_size=4, stride=2, padding=1, bias=False),
                _group_norm(out, nf),
                nn.ReLU(),
                nn.Conv2d(out, out, kernel_size=3, stride=1, padding=1, bias=False),
                _group_norm(out, nf),
                nn.ReLU(),
            ]
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(nf, nf, kernel_size=3, stride=1, padding=1, bias=False),
            _group_norm(nf, nf),
            nn.ReLU(),
            nn.Conv2d(nf, nf, kernel_size=5, stride=1, padding=2, bias=False),
            _group_norm(nf, nf),
            nn.ReLU(),
            nn.Conv2d(nf, out_channels, kernel_size=5, stride=1, padding=2, bias=False),
        ]
        if tanh:
            layers.append(nn.Tanh())
        self.network = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C_in, S, S) -> (B, C_out, S, S)."""
        result: Tensor = self.network(images)
        return result


class Encoder(nn.Module):
    """The reference's ``Encoder``: (B, 3, S, S) -> (B, C_out) through tanh (no normalisation)."""

    def __init__(self, in_channels: int, out_channels: int, nf: int, image_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for level in range(_levels(image_size)):
            out = _level_channels(nf, level)
            layers += [nn.Conv2d(channels, out, kernel_size=4, stride=2, padding=1, bias=False), nn.ReLU()]
            channels = out
        layers += [
            nn.Conv2d(channels, channels, kernel_size=4, stride=1, padding=0, bias=False),
            nn.ReLU(),
            nn.Conv2d(channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
            nn.Tanh(),
        ]
        self.network = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C_in, S, S) -> (B, C_out) in (-1, 1)."""
        result: Tensor = self.network(images)
        return result.reshape(images.shape[0], -1)


class ConfidenceNet(nn.Module):
    """The reference's ``ConfNet``: (B, 3, S, S) -> sigmas (B, 2, S, S) and (B, 2, S / 4, S / 4), softplus."""

    def __init__(self, in_channels: int, nf: int, zdim: int, image_size: int):
        super().__init__()
        levels = _levels(image_size)
        top = _level_channels(nf, levels - 1)
        layers = _encoder_trunk(in_channels, nf, zdim, image_size)
        layers += [nn.ConvTranspose2d(zdim, top, kernel_size=4, stride=1, padding=0, bias=False), nn.ReLU()]
        for level in range(levels - 2, 0, -1):  # 4 x 4 -> S / 4 x S / 4
            above, out = _level_channels(nf, level + 1), _level_channels(nf, level)
            layers += [
                nn.ConvTranspose2d(above, out, kernel_size=4, stride=2, padding=1, bias=False),
                _group_norm(out, nf),
                nn.ReLU(),
            ]
        self.network = nn.Sequential(*layers)
        quarter = _level_channels(nf, 1)
        self.full_head = nn.Sequential(
            nn.ConvTranspose2d(quarter, nf, kernel_size=4, stride=2, padding=1, bias=False),
            _group_norm(nf, nf),
            nn.ReLU(),
            nn.ConvTranspose2d(nf, nf, kernel_size=4, stride=2, padding=1, bias=False),
            _group_norm(nf, nf),
            nn.ReLU(),
            nn.Conv2d(nf, 2, kernel_size=5, stride=1, padding=2, bias=False),
            nn.Softplus(),
        )
        self.quarter_head = nn.Sequential(
            nn.Conv2d(quarter, 2, kernel_size=3, stride=1, padding=1, bias=False), nn.Softplus()
        )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, S, S) -> (B, 2, S, S) and (B, 2, S / 4, S / 4), both > 0."""
        features = self.network(images)  # (B, 2 nf, S / 4, S / 4)
        return self.full_head(features), self.quarter_head(features)


@dataclass
class Unsup3dOutput:
    """The networks' predictions for B images of S x S pixels (module docstring for the frames).

    Attributes:
        canon_depth: (B, S, S) canonical depth in [depth_min, depth_max] (raw - its image mean, tanh,
            mapped affinely), the ``border_pixels`` leftmost and rightmost columns set to the border depth.
        canon_albedo: (B, 3, S, S) canonical albedo in [0, 1] ((tanh + 1) / 2).
        light: (B, 4) the light network's raw tanh outputs (ambient, diffuse, dx, dy).
        ambient: (B,) ambient intensity in [ambient_min, ambient_max].
        diffuse: (B,) diffuse intensity in [diffuse_min, diffuse_max].
        light_direction: (B, 3) unit, from the surface towards the light, project view space:
            ``normalize(-dx, dy, 1)`` (the reference's ``normalize(dx, dy, 1)`` in its frame).
        view: (B, 6) rotation angles about x, y, z in degrees (tanh * rotation_range) and translation
            x, y (tanh * xy_translation_range), z (tanh * z_translation_range), the reference's frame.
        conf_photometric: (B, 2, S, S) sigma > 0 of the photometric loss: channel 0 for the input's
            reconstruction, 1 for the flipped one.
        conf_perceptual: (B, 2, S / 4, S / 4) sigma > 0 of the perceptual loss, same channels.
    """

    canon_depth: Tensor
    canon_albedo: Tensor
    light: Tensor
    ambient: Tensor
    diffuse: Tensor
    light_direction: Tensor
    view: Tensor
    conf_photometric: Tensor
    conf_perceptual: Tensor


def _rescale(raw: Tensor, low: float, high: float) -> Tensor:
    """The reference's rescaler: -1 -> low, +1 -> high (``(1 + x) / 2 high + (1 - x) / 2 low``)."""
    return (1.0 + raw) / 2.0 * high + (1.0 - raw) / 2.0 * low


class Unsup3dNet(nn.Module):
    """The five networks of Unsup3d (module docstring): images (B, 3, S, S) in [0, 1] -> ``Unsup3dOutput``."""

    def __init__(self, config: Unsup3dModelConfig):
        super().__init__()
        self.config = config
        size, nf = config.image_size, config.nf
        self.depth_net = EncoderDecoder(3, 1, nf, config.zdim, size, tanh=False)
        self.albedo_net = EncoderDecoder(3, 3, nf, config.zdim, size, tanh=True)
        self.light_net = Encoder(3, 4, config.encoder_nf, size)
        self.view_net = Encoder(3, 6, config.encoder_nf, size)
        self.confidence_net = ConfidenceNet(3, nf, config.confidence_zdim, size)

    def forward(self, images: Tensor) -> Unsup3dOutput:
        """Predictions (``Unsup3dOutput``) for images (B, 3, S, S) in [0, 1]."""
        config = self.config
        size = config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"images must have shape (B, 3, {size}, {size}), got {tuple(images.shape)}")
        scaled = images * 2.0 - 1.0  # (B, 3, S, S) in [-1, 1], as the reference's input

        raw = self.depth_net(scaled)[:, 0]  # (B, S, S)
        centred = torch.tanh(raw - raw.mean(dim=(1, 2), keepdim=True))
        depth = _rescale(centred, config.depth_min, config.depth_max)
        column = torch.arange(size, device=images.device)
        border = (column < config.border_pixels) | (column >= size - config.border_pixels)  # (S,)
        depth = torch.where(border, torch.full_like(depth, config.border_depth_value), depth)

        albedo = (self.albedo_net(scaled) + 1.0) / 2.0  # (B, 3, S, S)
        light = self.light_net(scaled)  # (B, 4)
        ambient = _rescale(light[:, 0], config.ambient_min, config.ambient_max)
        diffuse = _rescale(light[:, 1], config.diffuse_min, config.diffuse_max)
        direction = torch.stack([-light[:, 2], light[:, 3], torch.ones_like(light[:, 2])], dim=1)
        direction = F.normalize(direction, dim=1)  # (B, 3)

        raw_view = self.view_net(scaled)  # (B, 6)
        view = torch.cat(
            [
                raw_view[:, :3] * config.rotation_range,
                raw_view[:, 3:5] * config.xy_translation_range,
                raw_view[:, 5:] * config.z_translation_range,
            ],
            dim=1,
        )
        conf_photometric, conf_perceptual = self.confidence_net(scaled)
        return Unsup3dOutput(
            canon_depth=depth,
            canon_albedo=albedo,
            light=light,
            ambient=ambient,
            diffuse=diffuse,
            light_direction=direction,
            view=view,
            conf_photometric=conf_photometric,
            conf_perceptual=conf_perceptual,
        )


def build_unsup3d(settings: Mapping[str, Any]) -> Unsup3dNet:
    """Fresh networks from a checkpoint's ``config["model"]`` dict (``ConfigError`` if it does not fit)."""
    return Unsup3dNet(Unsup3dModelConfig.model_validate(settings))


# --- image formation ---------------------------------------------------------------------------------------


def flip(tensor: Tensor) -> Tensor:
    """Left-right flip: ``tensor`` reversed along its last axis (the image width), any shape."""
    return tensor.flip(-1)


def depth_normals(depth: Tensor, fov: float) -> Tensor:
    """Unit normals (B, 3, H, W) of depth maps (B, H, W), project view space, towards the camera.

    Central differences of the unprojected pixel grid (the reference's ``get_normal_from_depth``):
    ``n = normalize(t_v x t_u)`` with ``t_u`` the difference of the right and left neighbours and ``t_v``
    of the lower and upper ones; the 1-px border has the normal (0, 0, 1).
    """
    batch, height, width = depth.shape
    pixels = grid_pixel_positions(height, width, depth.device, depth.dtype)[: height * width]  # (H W, 2)
    points = unproject_pixels(pixels, depth.reshape(batch, -1), height, width, fov)  # (B, H W, 3)
    points = points.reshape(batch, height, width, 3)
    along_u = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]  # (B, H - 2, W - 2, 3)
    along_v = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    inner = torch.linalg.cross(along_v, along_u, dim=-1).permute(0, 3, 1, 2)  # (B, 3, H - 2, W - 2)
    normal = torch.cat([F.pad(inner[:, :2], (1, 1, 1, 1)), F.pad(inner[:, 2:], (1, 1, 1, 1), value=1.0)], 1)
    return F.normalize(normal, dim=1)


def _geometry_dtype(depth: Tensor) -> torch.dtype:
    """float64 for float64 depth, float32 for everything else (half precision included)."""
    return torch.float64 if depth.dtype == torch.float64 else torch.float32


def _needs_promotion(depth: Tensor, *others: Tensor) -> bool:
    """Whether autocast is on or an input is in half precision, or the inputs' dtypes differ from
    the depth's geometry dtype: the image formation then runs again in that dtype, autocast off."""
    dtype = _geometry_dtype(depth)
    return torch.is_autocast_enabled(depth.device.type) or any(t.dtype != dtype for t in (depth, *others))


@dataclass
class Shading:
    """Lambertian shading of a canonical view.

    Attributes:
        normal: (B, 3, H, W) unit normals, project view space, towards the camera (``depth_normals``).
        shading: (B, 1, H, W) ``ambient + diffuse * max(0, n . l)``.
        image: (B, 3, H, W) ``albedo * shading``: in [0, 1] when albedo is and ambient + diffuse <= 1.
    """

    normal: Tensor
    shading: Tensor
    image: Tensor


def shade(
    albedo: Tensor, depth: Tensor, ambient: Tensor, diffuse: Tensor, light_direction: Tensor, fov: float
) -> Shading:
    """Shade albedo (B, 3, H, W) on depth (B, H, W) with light ambient (B,), diffuse (B,) and a unit
    ``light_direction`` (B, 3) from the surface towards the light in project view space (module docstring:
    the reference's ``(dx, dy, 1)`` is our ``(-dx, dy, 1)``); ``fov`` in degrees. Differentiable.
    Computed in float32 (float64 for float64 depth) whatever the autocast state."""
    if _needs_promotion(depth, albedo):
        with torch.autocast(depth.device.type, enabled=False):
            dtype = _geometry_dtype(depth)
            return shade(
                albedo.to(dtype), depth.to(dtype), ambient.to(dtype), diffuse.to(dtype),
                light_direction.to(dtype), fov,
            )  # fmt: skip
    normal = depth_normals(depth, fov)  # (B, 3, H, W)
    cosine = (normal * light_direction[:, :, None, None]).sum(1, keepdim=True).clamp_min(0.0)  # (B, 1, H, W)
    shading = ambient[:, None, None, None] + diffuse[:, None, None, None] * cosine
    return Shading(normal=normal, shading=shading, image=albedo * shading)


def rotation_matrix(angles_degrees: Tensor) -> Tensor:
    """The reference's rotation (B, 3, 3) ``R_z R_y R_x`` from angles (B, 3) about x, y, z in degrees
    (its frame; right-handed rotations, ``R_x = [[1, 0, 0], [0, cos, -sin], [0, sin, cos]]``)."""
    radians = torch.deg2rad(angles_degrees)
    cos, sin = torch.cos(radians), torch.sin(radians)  # (B, 3)
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def matrix(rows: list[list[Tensor]]) -> Tensor:
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)  # (B, 3, 3)

    rx = matrix([[one, zero, zero], [zero, cos[:, 0], -sin[:, 0]], [zero, sin[:, 0], cos[:, 0]]])
    ry = matrix([[cos[:, 1], zero, sin[:, 1]], [zero, one, zero], [-sin[:, 1], zero, cos[:, 1]]])
    rz = matrix([[cos[:, 2], -sin[:, 2], zero], [sin[:, 2], cos[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def view_transform(points: Tensor, view: Tensor, pivot_depth: float) -> Tensor:
    """Points (B, N, 3) of the canonical view space moved into the view's (B, 6) space (project frame):
    rotated about (0, 0, -pivot_depth) by ``S R S``, then translated by ``S t`` (module docstring)."""
    flip_yz = torch.tensor([1.0, -1.0, -1.0], device=points.device, dtype=points.dtype)  # S
    rotation = rotation_matrix(view[:, :3]) * flip_yz[None, :, None] * flip_yz[None, None, :]  # (B, 3, 3)
    pivot = torch.tensor([0.0, 0.0, -pivot_depth], device=points.device, dtype=points.dtype)
    moved = (points - pivot) @ rotation.transpose(1, 2) + pivot
    return moved + (view[:, 3:] * flip_yz)[:, None, :]


@dataclass
class ViewWarp:
    """A canonical image seen from a view.

    Attributes:
        image: (B, C, S, S) the canonical image at the surface point each pixel sees, 0 where uncovered.
        mask: (B, 1, S, S) 1 where the moved surface covers the pixel centre, else 0 (no gradient).
        depth: (B, S, S) depth (positive distance along the view axis) of the visible surface,
            ``background_depth`` (or each image's largest visible depth) where uncovered.
        grid: (B, S, S, 2) the canonical image position each pixel samples, ``grid_sample`` coordinates
            (x right, y down, -1 and 1 at the centres of the first and last pixels), 0 where uncovered.
    """

    image: Tensor
    mask: Tensor
    depth: Tensor
    grid: Tensor


def _pixel_barycentrics(corners: Tensor, pixel: Tensor) -> Tensor:
    """Screen barycentrics (P, 3) of points (P, 2) in non-degenerate triangles (P, 3, 2), either winding."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]  # (P, 2) each

    def cross(u: Tensor, v: Tensor) -> Tensor:
        return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]

    area = cross(b - a, c - a)  # (P,) twice the signed area
    weight_a = cross(c - b, pixel - b) / area
    weight_b = cross(a - c, pixel - c) / area
    return torch.stack([weight_a, weight_b, 1.0 - weight_a - weight_b], dim=1)


def warp_to_view(
    canon_image: Tensor,
    canon_depth: Tensor,
    view: Tensor,
    fov: float,
    pivot_depth: float = 1.0,
    *,
    background_depth: float | None = None,
) -> ViewWarp:
    """The canonical image (B, C, S, S) on the depth-grid mesh of ``canon_depth`` (B, S, S), seen from
    ``view`` (B, 6) (module docstring, "Warp"). ``fov`` in degrees; ``pivot_depth``: the rotation centre's
    depth (the reference: the middle of the depth range, 1.0). Differentiable in the image, the depth and
    the view (through the sample positions); the mask is not. Computed in float32 (float64 for float64
    depth) whatever the autocast state: half-precision vertex positions would be off by hundredths of a pixel.
    """
    if _needs_promotion(canon_depth, canon_image, view):
        with torch.autocast(canon_depth.device.type, enabled=False):
            dtype = _geometry_dtype(canon_depth)
            return warp_to_view(
                canon_image.to(dtype), canon_depth.to(dtype), view.to(dtype), fov, pivot_depth,
                background_depth=background_depth,
            )  # fmt: skip
    batch, _, height, width = canon_image.shape
    if height != width:
        raise ValueError(f"warp_to_view needs square images, got {height} x {width}")
    if canon_depth.shape != (batch, height, width):
        raise ValueError(
            f"canon_depth must have shape {(batch, height, width)}, got {tuple(canon_depth.shape)}"
        )
    if view.shape != (batch, 6):
        raise ValueError(f"view must have shape ({batch}, 6), got {tuple(view.shape)}")
    device, dtype = canon_depth.device, canon_depth.dtype
    size = width
    faces = depth_grid_faces(height, width, device)  # (F, 3)
    canonical = depth_grid_vertices(canon_depth, fov)  # (B, N, 3)
    moved = view_transform(canonical, view, pivot_depth)  # (B, N, 3)
    num_vertices = moved.shape[1]

    with torch.no_grad():  # which face each pixel sees: the rasteriser's search at the offset point
        pixels, depths = project_to_pixels(moved, height, width, fov)  # (B, N, 2), (B, N)
        in_front = depths > NEAR
        offset = torch.tensor(TIE_BREAK_OFFSET, device=device, dtype=dtype)
        pixels = torch.where(in_front[..., None], pixels + offset, torch.zeros_like(pixels))
        ndc = torch.stack(
            [(2.0 * pixels[..., 0] + 1.0) / size - 1.0, 1.0 - (2.0 * pixels[..., 1] + 1.0) / size, depths],
            dim=-1,
        )  # (B, N, 3)
        settings = RasterSettings(image_size=size, soft=False, near=NEAR, perspective_correct=True)
        fragments = rasterize(ndc, faces, settings)

    pixel_id = fragments.pixel  # (P,) b * S * S + row * S + col
    image_index = torch.div(pixel_id, size * size, rounding_mode="floor")
    in_image = pixel_id - image_index * (size * size)
    row = torch.div(in_image, size, rounding_mode="floor")
    col = in_image - row * size
    corner_rows = faces.index_select(0, fragments.face) + image_index[:, None] * num_vertices  # (P, 3)
    moved_corners = gather_rows(moved.reshape(-1, 3), corner_rows)  # (P, 3, 3)
    canonical_corners = gather_rows(canonical.reshape(-1, 3), corner_rows)  # (P, 3, 3)
    corner_pixels, corner_depths = project_to_pixels(moved_corners, height, width, fov)  # (P, 3, 2), (P, 3)
    centre = torch.stack([col, row], dim=1).to(dtype)  # (P, 2)
    screen = _pixel_barycentrics(corner_pixels, centre)  # (P, 3)
    weighted = screen / corner_depths
    inverse_depth = weighted.sum(1)  # (P,)
    bary = weighted / inverse_depth[:, None]  # (P, 3) perspective-correct
    point = (bary[..., None] * canonical_corners).sum(1)  # (P, 3) the seen point, canonical frame
    source, _ = project_to_pixels(point, height, width, fov)  # (P, 2) canonical pixel position
    scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], device=device, dtype=dtype)
    sample = source * scale - 1.0  # (P, 2) grid_sample coordinates

    num_pixels = batch * size * size
    grid = torch.zeros(num_pixels, 2, device=device, dtype=dtype).index_copy(0, pixel_id, sample)
    grid = grid.reshape(batch, size, size, 2)
    mask = torch.zeros(num_pixels, device=device, dtype=dtype).index_fill(0, pixel_id, 1.0)
    mask = mask.reshape(batch, 1, size, size)
    sampled = F.grid_sample(canon_image, grid.to(canon_image.dtype), mode="bilinear", padding_mode="border",
                            align_corners=True)  # fmt: skip
    depth_values = 1.0 / inverse_depth  # (P,)
    if background_depth is None:
        largest = torch.zeros(batch, device=device, dtype=dtype)
        largest = largest.scatter_reduce(0, image_index, depth_values.detach(), "amax", include_self=False)
        fill = largest.repeat_interleave(size * size)  # (B S S,)
    else:
        fill = torch.full((num_pixels,), background_depth, device=device, dtype=dtype)
    depth = fill.index_copy(0, pixel_id, depth_values).reshape(batch, size, size)
    return ViewWarp(image=sampled * mask.to(sampled.dtype), mask=mask, depth=depth, grid=grid)


# --- one training step's image formation -------------------------------------------------------------------


@dataclass
class Reconstruction:
    """The image formation of one step (the reference's ``forward``), for B input images.

    Attributes:
        canon_shading: ``Shading`` of the canonical depth and albedo (B, ...).
        flip_shading: ``Shading`` of the flipped canonical depth and albedo, same light (B, ...).
        image: (B, 3, S, S) the input's reconstruction (canonical image seen from the view), times ``mask``.
        flip_image: (B, 3, S, S) the reconstruction from the flipped depth and albedo, times ``mask``.
        mask: (B, 1, S, S) pixels covered in both reconstructions (detached), the losses' mask.
        depth: (B, S, S) the view's depth of the input's reconstruction (background: the reference's
            ``background_depth``).
        flip_depth: (B, S, S) the same for the flipped reconstruction.
    """

    canon_shading: Shading
    flip_shading: Shading
    image: Tensor
    flip_image: Tensor
    mask: Tensor
    depth: Tensor
    flip_depth: Tensor


def reconstruct(output: Unsup3dOutput, config: Unsup3dModelConfig) -> Reconstruction:
    """Both branches of the reference's image formation: shade the canonical depth and albedo (and their
    flips) with the predicted light, warp each to the predicted view, keep the pixels both cover."""
    batch = output.canon_depth.shape[0]
    depth = torch.cat([output.canon_depth, flip(output.canon_depth)], dim=0)  # (2B, S, S)
    albedo = torch.cat([output.canon_albedo, flip(output.canon_albedo)], dim=0)  # (2B, 3, S, S)
    ambient, diffuse = output.ambient.repeat(2), output.diffuse.repeat(2)
    direction, view = output.light_direction.repeat(2, 1), output.view.repeat(2, 1)
    shading = shade(albedo, depth, ambient, diffuse, direction, config.fov)
    warp = warp_to_view(
        shading.image, depth, view, config.fov, config.pivot_depth, background_depth=config.background_depth
    )
    both = (warp.mask[:batch] * warp.mask[batch:]).detach()  # (B, 1, S, S)
    return Reconstruction(
        canon_shading=_rows(shading, slice(0, batch)),
        flip_shading=_rows(shading, slice(batch, None)),
        image=warp.image[:batch] * both,
        flip_image=warp.image[batch:] * both,
        mask=both,
        depth=warp.depth[:batch],
        flip_depth=warp.depth[batch:],
    )


def _rows(shading: Shading, rows: slice) -> Shading:
    """The images ``rows`` of a batch's shading."""
    return Shading(normal=shading.normal[rows], shading=shading.shading[rows], image=shading.image[rows])
