"""The WGAN critic for renders (UMR's ``Discriminator``, without its gradient-reversal layer).

``Discriminator(in_channels, image_size, width)`` scores images (B, C, S, S) with one unbounded number
each (B,). Layers, as UMR: four 3x3 stride-2 convolutions with ``width``, ``2 * width``, ``width``,
``width`` channels (UMR: 32/64/32/32), ReLU after each, a 1x1 convolution to one channel, and a linear
layer over the (S/16)^2 cells. No batch norm: the gradient penalty (WGAN-GP) is defined per sample.
The trainer applies ``training.losses.adversarial.grad_reverse`` to the fakes itself (UMR's GRL).
"""

from __future__ import annotations

from torch import Tensor, nn


class Discriminator(nn.Module):
    """Critic of ``in_channels`` x ``image_size``^2 images (module docstring)."""

    def __init__(self, in_channels: int = 4, image_size: int = 64, width: int = 32) -> None:
        super().__init__()
        if image_size % 16 or image_size < 16:
            raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be positive, got {in_channels} and {width}")
        self.in_channels = in_channels
        self.image_size = image_size
        channels = (in_channels, width, 2 * width, width, width)
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(channels[i], channels[i + 1], 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, 1, 1))
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear((image_size // 16) ** 2, 1)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, S, S) -> critic scores (B,)."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.dim() != 4 or images.shape[1:] != expected:
            raise ValueError(
                f"expected images (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )
        score_map = self.convs(images)  # (B, 1, S/16, S/16)
        return self.fc(score_map.flatten(1)).squeeze(1)
