"""The RGBA input convention of the image -> shape networks (``softras`` and ``pointcloud``).

``model_input(image, mask)`` turns images (B, 3, S, S) and masks (B, 1, S, S) in [0, 1] into the
(B, 4, S, S) tensor those networks take: the RGB multiplied by the mask (a black background, as in the
SoftRas ShapeNet renderings) and the mask as alpha. The trainers and the backend's checkpointed methods
build every network input with it, so training and inference agree on one convention.
"""

from __future__ import annotations

import torch
from torch import Tensor


def model_input(image: Tensor, mask: Tensor) -> Tensor:
    """Network input from images (B, 3, S, S) and masks (B, 1, S, S) in [0, 1]: (B, 4, S, S) RGBA with
    the RGB multiplied by the mask (the SoftRas renderings have a black background)."""
    return torch.cat([image * mask, mask], dim=1)
