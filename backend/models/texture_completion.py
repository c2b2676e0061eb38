"""Texture completion, ``pointcloud-poisson``'s last stage: a generator completing a partly known atlas.

The seed paper textures its Poisson mesh with a GAN (its refs. [36] TextureGAN, [16]); it gives no
architecture. Ours (a design of this project, pix2pix/TextureGAN-like):

- ``TextureGenerator(config)``: a U-Net. Input: known colours (B, 3, H, W) (zeroed where unknown), the
  known mask (B, 1, H, W) and, when ``config.noise``, one noise channel (B, 1, H, W). A 3x3 stem, then
  ``depth`` 4x4 stride-2 convolutions (channels ``base_channels * 2^i``, capped at 8x), each followed by
  the norm (InstanceNorm, or none) and LeakyReLU(0.2); back up with bilinear x2 upsampling and a 3x3
  convolution on the concatenated skip features (+ norm + ReLU), rather than transposed convolutions,
  which leave checkerboard artefacts (Odena et al. 2016); a 3x3 head and a sigmoid give colours (B, 3, H, W)
  in [0, 1] everywhere. Any H, W work: the input is zero-padded (as unknown texels) to a multiple of
  ``2^depth`` and the output cropped back. Weights N(0, 0.02) as pix2pix (Isola et al. 2017, sec. 6.2).
- ``PatchDiscriminator``: pix2pix's PatchGAN (``layers`` 4x4 stride-2 convolutions from ``base_channels``
  doubling to at most 8x, then a stride-1 one and a 1-channel stride-1 one; LeakyReLU(0.2), the norm on all
  but the first): (B, 3, H, W) -> patch logits (B, 1, h, w). Three layers see 70 x 70 pixels per logit
  (pix2pix's 70x70 PatchGAN); fewer suit small crops (``receptive_field``). Used by training only.
- ``complete_texture(generator, colors, known, device)``: the backend's call. The generator learned at the
  scale of its training crops (``config.image_size``, e.g. 128-256) while atlases are up to 4096 x 4096, so
  it runs once, fully convolutionally, at a working resolution: the atlas is shrunk so that its longer side
  is at most ``config.working_size`` (mask-aware area averaging: a working texel is known when at least
  half of its footprint is, and takes the mean of its known texels), completed, composited with the known
  working texels, upsampled bilinearly to the atlas size, and composited again so that every known texel
  keeps its exact colour. The generated part is therefore smooth at the atlas's full resolution (detail
  comes from the photo; the hidden side gets plausible, lower-frequency colour). One pass sees the whole
  atlas, so charts far apart stay consistent; tiles at full resolution were not chosen because the
  generator's scale would not match its training and each tile would see only part of the atlas.
- ``build_texture_generator(settings)``: the network from a checkpoint's ``config["model"]`` dict.

Checkpoints (``mono2mesh-train texture-completion``) are of method ``TEXTURE_METHOD`` (``texture-completion``;
those of the former id ``pointcloud-texture`` load too, ``backend.checkpoints.METHOD_ALIASES``) and template
``TEXTURE_TEMPLATE`` and hold only the generator's weights. Displacement maps (the paper's generator also
makes them) are not implemented: the geometry is the Poisson mesh's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn

from backend.config import Config

TEXTURE_METHOD = "texture-completion"
"""Checkpoint method name of the texture generator."""

TEXTURE_TEMPLATE = "texture-atlas"
"""Checkpoint template id: the generator works on any unwrapped mesh's atlas, not on one topology."""

NormKind = Literal["instance", "none"]
NORMS = ("instance", "none")
CHANNEL_CAP = 8
"""Channels stop doubling at ``CHANNEL_CAP * base_channels`` (pix2pix: 8 x 64 = 512)."""


class TextureGeneratorConfig(Config):
    """What the backend needs to rebuild the generator from a checkpoint's JSON (``config["model"]``)."""

    image_size: int = 256
    """Side of the square training crops (the scale the generator learned; pix2pix: 256)."""
    base_channels: int = 64
    """Channels of the first level; each level below doubles them up to 8x (pix2pix ngf: 64)."""
    depth: int = 6
    """Stride-2 levels of the U-Net; the bottleneck is image_size / 2^depth (4 x 4 at 256)."""
    norm: NormKind = "instance"
    """Normalisation after each convolution: "instance" (pix2pix at batch 1, CycleGAN) or "none"."""
    noise: bool = False
    """Feed one channel of N(0, 1) noise (complete_texture draws it from a fixed seed: deterministic)."""
    working_size: int = 256
    """complete_texture shrinks atlases whose longer side exceeds this before running the generator."""

    @model_validator(mode="after")
    def _check_texture_generator(self) -> Self:
        if not 1 <= self.depth <= 8:
            raise ValueError(f"model.depth must be in 1..8, got {self.depth}")
        if self.base_channels < 1:
            raise ValueError(f"model.base_channels must be positive, got {self.base_channels}")
        if self.norm not in NORMS:
            raise ValueError(f"model.norm must be one of {NORMS}, got {self.norm!r}")
        smallest = 2 ** (self.depth + 1)
        if self.image_size < smallest:
            raise ValueError(
                f"model.image_size {self.image_size} is too small for depth {self.depth}: "
                f"the bottleneck needs at least 2 x 2 cells, i.e. image_size >= {smallest}"
            )
        if self.working_size < 8:
            raise ValueError(f"model.working_size must be at least 8, got {self.working_size}")
        return self

    @property
    def in_channels(self) -> int:
        """Generator input channels: colours (3) + known mask (1) (+ noise (1))."""
        return 5 if self.noise else 4


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True) if kind == "instance" else nn.Identity()


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix's initialisation: conv weights N(0, std), norm scales N(1, std), biases 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.InstanceNorm2d) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)


class TextureGenerator(nn.Module):
    """Known colours (B, 3, H, W) + known mask (B, 1, H, W) (+ noise) -> colours (B, 3, H, W) in [0, 1]."""

    def __init__(self, config: TextureGeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or TextureGeneratorConfig()
        config = self.config
        widths = [min(config.base_channels * 2**level, CHANNEL_CAP * config.base_channels)
                  for level in range(config.depth + 1)]  # fmt: skip
        self.widths = widths
        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2))
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[level - 1], widths[level], 4, stride=2, padding=1),
                _norm(config.norm, widths[level]),
                nn.LeakyReLU(0.2),
            )
            for level in range(1, config.depth + 1)
        )
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[level] + widths[level - 1], widths[level - 1], 3, padding=1),
                _norm(config.norm, widths[level - 1]),
                nn.ReLU(),
            )
            for level in range(1, config.depth + 1)
        )
        self.head = nn.Conv2d(widths[0], 3, 3, padding=1)
        init_weights(self)

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this side (2^depth), and to at least twice it."""
        return int(2**self.config.depth)

    def forward(self, colors: Tensor, known: Tensor, noise: Tensor | None = None) -> Tensor:
        """Colours for every texel.

        Args:
            colors: (B, 3, H, W) known colours in [0, 1] (values where ``known`` is 0 are ignored).
            known: (B, 1, H, W) in {0, 1} (soft values are accepted), 1 where the colour is known.
            noise: (B, 1, H, W), required when ``config.noise`` (and refused otherwise).
        Returns:
            (B, 3, H, W) generated colours in [0, 1] at every texel (known ones included; callers composite).
        """
        if colors.dim() != 4 or colors.shape[1] != 3:
            raise ValueError(f"colors must have shape (B, 3, H, W), got {tuple(colors.shape)}")
        batch, _, height, width = colors.shape
        if known.shape != (batch, 1, height, width):
            raise ValueError(f"known must have shape {(batch, 1, height, width)}, got {tuple(known.shape)}")
        known = known.to(colors.dtype)
        planes = [colors * known, known]
        if self.config.noise:
            if noise is None or noise.shape != (batch, 1, height, width):
                raise ValueError(
                    f"this generator takes noise of shape {(batch, 1, height, width)}, got "
                    f"{None if noise is None else tuple(noise.shape)}"
                )
            planes.append(noise.to(colors.dtype))
        elif noise is not None:
            raise ValueError("this generator was built without a noise channel (config.noise is false)")
        inputs = torch.cat(planes, dim=1)  # (B, C_in, H, W)
        step = self.multiple
        padded_height = max(-(-height // step) * step, 2 * step)
        padded_width = max(-(-width // step) * step, 2 * step)
        inputs = F.pad(inputs, (0, padded_width - width, 0, padded_height - height))  # zeros = unknown
        skips = [self.stem(inputs)]  # level 0: (B, w0, H', W')
        for layer in self.down:
            skips.append(layer(skips[-1]))  # level l: (B, w_l, H' / 2^l, W' / 2^l)
        features = skips[-1]
        for level in range(self.config.depth, 0, -1):
            features = F.interpolate(features, scale_factor=2.0, mode="bilinear", align_corners=False)
            features = self.up[level - 1](torch.cat([features, skips[level - 1]], dim=1))  # (B, w_{l-1}, ..)
        output = torch.sigmoid(self.head(features))  # (B, 3, H', W')
        return output[:, :, :height, :width]


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN: images (B, C, H, W) -> patch logits (B, 1, h, w) (module docstring).

    Each logit sees ``receptive_field`` x ``receptive_field`` input pixels; H, W must be at least
    ``2^(layers + 2)`` so that the last feature map keeps at least 2 x 2 cells.
    """

    def __init__(
        self, in_channels: int = 3, base_channels: int = 64, layers: int = 3, norm: NormKind = "instance"
    ) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1:
            raise ValueError(f"in_channels and base_channels must be positive, got {in_channels}, "
                             f"{base_channels}")  # fmt: skip
        if not 1 <= layers <= 6:
            raise ValueError(f"layers must be in 1..6, got {layers}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.layers = layers

        def width(level: int) -> int:
            return base_channels * min(2**level, CHANNEL_CAP)

        stack: list[nn.Module] = [nn.Conv2d(in_channels, width(0), 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for level in range(1, layers):
            stack += [nn.Conv2d(width(level - 1), width(level), 4, stride=2, padding=1),
                      _norm(norm, width(level)), nn.LeakyReLU(0.2)]  # fmt: skip
        stack += [nn.Conv2d(width(layers - 1), width(layers), 4, stride=1, padding=1),
                  _norm(norm, width(layers)), nn.LeakyReLU(0.2),
                  nn.Conv2d(width(layers), 1, 4, stride=1, padding=1)]  # fmt: skip
        self.net = nn.Sequential(*stack)
        init_weights(self)

    @property
    def receptive_field(self) -> int:
        """Input pixels (per side) behind one logit: 70 for 3 layers, 34 for 2, 16 for 1."""
        strides = [2] * self.layers + [1, 1]
        field, jump = 1, 1
        for stride in strides:  # every convolution is 4 x 4
            field += 3 * jump
            jump *= stride
        return field

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, H, W) -> logits (B, 1, h, w), unbounded (the loss decides their meaning)."""
        smallest = 2 ** (self.layers + 2)
        if images.dim() != 4 or min(images.shape[-2:]) < smallest:
            raise ValueError(
                f"expected images (B, C, H, W) with H, W >= {smallest}, got {tuple(images.shape)}"
            )
        logits: Tensor = self.net(images)
        return logits


def build_texture_generator(settings: Mapping[str, Any]) -> TextureGenerator:
    """A fresh generator from a checkpoint's ``config["model"]`` dict (``ValueError`` if it does not fit)."""
    return TextureGenerator(TextureGeneratorConfig.model_validate(settings))


def downsample_known(colors: Tensor, known: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Mask-aware area shrinking of a texture.

    Args:
        colors: (B, 3, H, W) colours (values where unknown are ignored).
        known: (B, 1, H, W) in {0, 1}.
        size: (h, w) target size, at most (H, W).
    Returns:
        colours (B, 3, h, w): the mean of the known texels each target texel covers (0 where none);
        known (B, 1, h, w) in {0, 1}: 1 where at least half of the covered area is known.
    """
    known = known.to(colors.dtype)
    coverage = F.interpolate(known, size=size, mode="area")  # (B, 1, h, w) known fraction
    summed = F.interpolate(colors * known, size=size, mode="area")  # (B, 3, h, w)
    small = torch.where(coverage > 0, summed / coverage.clamp_min(1e-12), torch.zeros_like(summed))
    return small, (coverage >= 0.5).to(colors.dtype)


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """(h, w): (height, width) shrunk so that the longer side is at most ``working_size`` (never enlarged)."""
    scale = min(1.0, working_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


@torch.no_grad()
def complete_texture(
    generator: TextureGenerator,
    colors: np.ndarray,
    known: np.ndarray,
    device: torch.device | str,
    *,
    working_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The texture with every unknown texel generated and every known texel unchanged (module docstring).

    Args:
        generator: a ``TextureGenerator`` on ``device`` (its mode is left as it is; it has no batch norm).
        colors: (H, W, 3) float32 texture; values where ``known`` is False are ignored.
        known: (H, W) bool, True where the colour is known (photo or mirrored texels).
        device: where the generator runs.
        working_size: longest side the generator sees; None uses ``generator.config.working_size``.
        seed: seed of the noise channel (generators with ``config.noise``).
    Returns:
        (H, W, 3) float32 in [0, 1]; equal to ``colors`` wherever ``known`` (bit for bit).
    Raises:
        TypeError: ``known`` is not boolean.
        ValueError: shapes that do not fit, or non-finite known colours.
    """
    if colors.ndim != 3 or colors.shape[2] != 3:
        raise ValueError(f"colors must have shape (H, W, 3), got {colors.shape}")
    if known.dtype != np.bool_:
        raise TypeError(f"known must be a boolean array, got dtype {known.dtype}")
    if known.shape != colors.shape[:2]:
        raise ValueError(f"known has shape {known.shape}, colors {colors.shape[:2]}")
    colors = np.asarray(colors, dtype=np.float32)
    if not np.isfinite(colors[known]).all():
        raise ValueError("colors holds non-finite values at known texels")
    if working_size is not None and working_size < 8:
        raise ValueError(f"working_size must be at least 8, got {working_size}")
    if known.all():
        return colors.copy()
    height, width = known.shape
    device = torch.device(device)
    colors_t = torch.from_numpy(np.ascontiguousarray(colors)).to(device).permute(2, 0, 1)[None]  # (1,3,H,W)
    known_t = torch.from_numpy(np.ascontiguousarray(known)).to(device)[None, None].float()  # (1, 1, H, W)
    colors_t = torch.where(known_t > 0, colors_t, torch.zeros_like(colors_t))
    small_shape = working_shape(height, width, working_size or generator.config.working_size)
    if small_shape != (height, width):
        small_colors, small_known = downsample_known(colors_t, known_t, small_shape)  # (1,3,h,w), (1,1,h,w)
    else:
        small_colors, small_known = colors_t, known_t
    noise = None
    if generator.config.noise:
        cpu_generator = torch.Generator().manual_seed(seed)  # CPU noise, the same on every device
        noise = torch.randn((1, 1, *small_shape), generator=cpu_generator, device="cpu").to(device)
    weight = next(generator.parameters())
    generated = generator(small_colors.to(weight.dtype), small_known.to(weight.dtype), noise).float()
    small = small_known * small_colors + (1 - small_known) * generated  # (1, 3, h, w)
    if small_shape != (height, width):
        small = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    filled = small[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()  # (H, W, 3)
    return np.where(known[..., None], colors, filled).astype(np.float32)
