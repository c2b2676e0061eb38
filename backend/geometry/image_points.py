"""Projected points against images: which points fall on a mask, which pixels a set of points covers.

Points are projections in normalised device coordinates (NDC: x right, y up, both in [-1, 1] across the
image, ``backend.geometry`` conventions); images have row 0 at the top. A point belongs to the pixel
``(row, column) = (floor((1 - y) / 2 H), floor((x + 1) / 2 W))``; points outside [-1, 1]^2 belong to no
pixel.

- ``points_in_mask``: (B, N) whether each point lands on a mask pixel (> 0.5), the ``inside`` metric of
  the point-cloud evaluation;
- ``splat_points``: (B, S, S) the pixels hit by at least one point, for pictures of point clouds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def points_in_mask(xy_ndc: Tensor, masks: Tensor) -> Tensor:
    """(B, N) bool: whether each projection (B, N, 2) (NDC, y up) falls on a mask pixel (B, H, W) > 0.5;
    projections outside the image are outside."""
    if xy_ndc.dim() != 3 or xy_ndc.shape[-1] != 2 or masks.dim() != 3 or len(masks) != len(xy_ndc):
        raise ValueError(
            f"expected projections (B, N, 2) and masks (B, H, W), got {tuple(xy_ndc.shape)} and "
            f"{tuple(masks.shape)}"
        )
    grid = torch.stack([xy_ndc[..., 0], -xy_ndc[..., 1]], dim=-1)[:, None]  # (B, 1, N, 2)
    values = F.grid_sample(masks[:, None].float(), grid, mode="nearest", align_corners=False)  # (B, 1, 1, N)
    return values[:, 0, 0] > 0.5


def splat_points(xy_ndc: Tensor, size: int) -> Tensor:
    """(B, size, size) bool: the pixels hit by projections (B, N, 2) (NDC, y up, row 0 at the top)."""
    if xy_ndc.dim() != 3 or xy_ndc.shape[-1] != 2 or size <= 0:
        raise ValueError(
            f"expected projections (B, N, 2) and a positive size, got {tuple(xy_ndc.shape)}, {size}"
        )
    columns = torch.floor((xy_ndc[..., 0] + 1) / 2 * size).long()  # (B, N)
    rows = torch.floor((1 - xy_ndc[..., 1]) / 2 * size).long()  # (B, N)
    keep = (columns >= 0) & (columns < size) & (rows >= 0) & (rows < size)
    batch = torch.arange(xy_ndc.shape[0], device=xy_ndc.device)[:, None].expand_as(columns)
    image = torch.zeros(xy_ndc.shape[0], size, size, dtype=torch.bool, device=xy_ndc.device)
    image[batch[keep], rows[keep], columns[keep]] = True
    return image
