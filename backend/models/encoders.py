"""Image encoders for small (64 x 64) inputs: the SoftRas conv encoder and the seed report's variants.

Each maps images (B, C, S, S) to a feature vector (B, D). S must be divisible by 8; all three reduce
the image to a (256, S/8, S/8) map with three stride-2 stages and end in the same fully connected
head (SoftRas: FC 1024 -> 1024 -> ``features``, ReLU after each).

- ``conv``: SoftRas's ShapeNet encoder: three 5x5 stride-2 convolutions (64/128/256 channels), each
  followed by batch norm and ReLU.
- ``resnet``: the seed report's "ResNet-like" variant: each stage is a residual block (two 3x3
  convolutions with batch norm, the first with stride 2, plus a 1x1 stride-2 projection shortcut).
- ``attention``: the seed report's "attention-involved" variant: the conv encoder's map, as
  (S/8)^2 tokens of 256 channels with a learned position embedding, through one Transformer encoder
  layer (4 heads, feed-forward 512, pre-norm), then the same head.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

EncoderKind = Literal["conv", "resnet", "attention"]
ENCODER_KINDS: tuple[str, ...] = ("conv", "resnet", "attention")
STAGE_CHANNELS = (64, 128, 256)


def _conv_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=5, stride=2, padding=2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualStage(nn.Module):
    """Two 3x3 convolutions (the first with stride 2) plus a 1x1 stride-2 projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, Cin, H, W) -> (B, Cout, H/2, W/2)
        return torch.relu(self.body(x) + self.shortcut(x))


class ImageEncoder(nn.Module):
    """``kind`` encoder (module docstring) of ``in_channels`` x ``image_size``^2 images to ``features``."""

    def __init__(
        self, kind: EncoderKind = "conv", in_channels: int = 4, image_size: int = 64, features: int = 512
    ) -> None:
        super().__init__()
        if kind not in ENCODER_KINDS:
            raise ValueError(f"encoder must be one of {ENCODER_KINDS}, got {kind!r}")
        if image_size % 8 or image_size < 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {image_size}")
        self.kind = kind
        self.image_size = image_size
        channels = (in_channels, *STAGE_CHANNELS)
        stage = ResidualStage if kind == "resnet" else _conv_stage
        self.stages = nn.Sequential(*(stage(channels[i], channels[i + 1]) for i in range(3)))
        side = image_size // 8
        self.attention: nn.TransformerEncoderLayer | None = None
        if kind == "attention":
            device = next(self.stages.parameters()).device  # with the other parameters
            self.position = nn.Parameter(torch.zeros(1, side * side, STAGE_CHANNELS[-1], device=device))
            nn.init.normal_(self.position, std=0.02)
            self.attention = nn.TransformerEncoderLayer(
                d_model=STAGE_CHANNELS[-1],
                nhead=4,
                dim_feedforward=512,
                dropout=0.0,
                batch_first=True,
                norm_first=True,
            )
        self.head = nn.Sequential(
            nn.Linear(STAGE_CHANNELS[-1] * side * side, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, features),
            nn.ReLU(inplace=True),
        )

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, S, S) -> features (B, D)."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected {self.image_size}x{self.image_size} images, got {tuple(images.shape[-2:])}"
            )
        grid = self.stages(images)  # (B, 256, S/8, S/8)
        if self.attention is not None:
            tokens = grid.flatten(2).transpose(1, 2) + self.position  # (B, (S/8)^2, 256)
            grid = self.attention(tokens).transpose(1, 2).reshape(grid.shape)
        return self.head(grid.flatten(1))
