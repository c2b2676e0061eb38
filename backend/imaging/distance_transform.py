"""Exact Euclidean distance transform of boolean masks, in torch on the masks' device.

``squared_distance_to_foreground(foreground (M, H, W) bool) -> (M, H, W) float32``: the exact squared
distance, in pixels^2, from every pixel to the nearest foreground pixel of its mask; 0 on the foreground,
at least ``(H + W)^2`` everywhere in a mask without foreground. Not differentiable (integer distances).
Peak memory of the second pass is about ``EDT_BLOCK`` elements (masks are processed in groups).

``distance_to_foreground(foreground (H, W) bool ndarray) -> (H, W) float32 ndarray``: its square root
(pixels), correctly rounded, on the CPU: the same bits on every call and machine. Use it instead of
OpenCV's ``distanceTransform(DIST_L2, DIST_MASK_PRECISE)``, whose values are an ulp off in some pixels
in a pattern that changes with where its buffers lie in the heap (issue 20).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

EDT_BLOCK = 1 << 24
"""Elements of the (masks, H, W, W) block of the exact distance transform's second pass."""


def squared_distance_to_foreground(foreground: Tensor) -> Tensor:
    """Exact squared Euclidean distance (pixels^2) of every pixel to the nearest foreground pixel.

    Two separable passes (Meijster/Felzenszwalb's decomposition, done by brute force per row): the
    distance along each column to the nearest foreground pixel with cumulative maxima, then the minimum
    over columns of ``column_distance^2 + (dx)^2``. Runs on the mask's device.

    Args:
        foreground: (M, H, W) bool.

    Returns:
        (M, H, W) float32, 0 on the foreground; at least ``(H + W)^2`` in a mask without foreground.
    """
    if foreground.dim() != 3 or foreground.dtype != torch.bool:
        raise ValueError(f"foreground must be a (M, H, W) bool tensor, got {foreground.dtype} "
                         f"{tuple(foreground.shape)}")  # fmt: skip
    masks, height, width = foreground.shape
    far = float(height + width)  # more than any column distance; "no foreground in this column"
    fill = torch.full((1, 1, 1), -2 * far, device=foreground.device)  # a fake row far outside the image
    rows = torch.arange(height, device=foreground.device, dtype=torch.float32)[None, :, None]  # (1, H, 1)
    above = torch.where(foreground, rows, fill).cummax(dim=1).values  # (M, H, W) nearest row at or above
    flipped = torch.where(foreground, -rows, fill).flip(1)
    below = -flipped.cummax(dim=1).values.flip(1)  # (M, H, W) nearest row at or below
    column = torch.minimum(rows - above, below - rows).clamp(max=far)  # (M, H, W)
    columns = torch.arange(width, device=foreground.device, dtype=torch.float32)
    offsets = (columns[:, None] - columns[None, :]) ** 2  # (W, W): (x - x')^2
    result = torch.empty(masks, height, width, device=foreground.device)
    step = max(1, EDT_BLOCK // max(height * width * width, 1))
    for start in range(0, masks, step):
        block = column[start : start + step] ** 2  # (m, H, W')
        candidates = block[:, :, None, :] + offsets  # (m, H, W, W')
        result[start : start + step] = candidates.amin(dim=-1)
    return result


def distance_to_foreground(foreground: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (pixels) of every pixel of an (H, W) bool array to its nearest True pixel.

    Returns:
        (H, W) float32: numpy's correctly rounded square root of ``squared_distance_to_foreground``'s
        exact integers, so reproducible to the bit; 0 on the foreground, at least ``H + W`` everywhere
        when nothing is foreground. (torch's CPU float32 sqrt is not correctly rounded in every build.)
    """
    if foreground.ndim != 2 or foreground.dtype != np.bool_:
        raise ValueError(
            f"foreground must be an (H, W) bool array, got {foreground.dtype} {foreground.shape}"
        )
    squared = squared_distance_to_foreground(torch.from_numpy(np.ascontiguousarray(foreground))[None])
    return np.sqrt(squared[0].numpy())  # (H, W) float32
