"""Unsup3d's depth metrics on data with ground truth: SIDE and MAD, as the reference computes them.

Contract (the reference's ``model.py`` with ``load_gt_depth``, on its synthetic faces):

- ``erode(mask)``: a pixel stays only if its whole 3 x 3 neighbourhood is in the mask (a 3 x 3 mean with
  zero padding above 0.99), so the outermost pixels of the image always go.
- ``evaluation_mask(mask_gt, mask_view)``: ``erode(mask_gt) * erode(mask_view)``: the ground truth's
  object (not the background) where the reconstruction covers the pixel.
- ``side(depth, depth_gt, mask) -> (B,)``: the scale-invariant depth error ``sqrt(mean_mask((dlog -
  mean_mask dlog)^2))`` with ``dlog = log depth - log depth_gt``, per image. A depth off by a constant
  factor scores 0.
- ``mad(depth, depth_gt, mask, fov) -> (B,)``: the mean angle in degrees between the normals of the two
  depth maps (``backend.models.unsup3d.depth_normals``: central differences of the unprojected grid, the
  same camera for both), per image.
- Images with an empty mask give NaN (the reference divides by zero too); the trainer averages the
  others (``training.evaluation.finite_mean``). The reference reports the mean over the test images
  (SIDE often x 10^-2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.models.unsup3d import depth_normals


def erode(mask: Tensor) -> Tensor:
    """Masks (B, H, W) in {0, 1} eroded by one pixel (module docstring), float."""
    pooled = F.avg_pool2d(mask[:, None].float(), kernel_size=3, stride=1, padding=1)  # zero padding counted
    return (pooled[:, 0] > 0.99).float()


def evaluation_mask(mask_gt: Tensor, mask_view: Tensor) -> Tensor:
    """The pixels scored (B, H, W): the eroded ground-truth mask (B, H, W) times the eroded coverage of the
    reconstruction (B, H, W)."""
    return erode(mask_gt) * erode(mask_view)


def _check(depth: Tensor, depth_gt: Tensor, mask: Tensor) -> None:
    if depth.dim() != 3 or depth.shape != depth_gt.shape or mask.shape != depth.shape:
        raise ValueError(
            f"depth, depth_gt and mask must share a (B, H, W) shape, got {tuple(depth.shape)}, "
            f"{tuple(depth_gt.shape)} and {tuple(mask.shape)}"
        )


def side(depth: Tensor, depth_gt: Tensor, mask: Tensor) -> Tensor:
    """Scale-invariant depth error (B,) of depths (B, H, W) > 0 against the ground truth (B, H, W) over
    ``mask`` (B, H, W) (module docstring); NaN for an empty mask."""
    _check(depth, depth_gt, mask)
    mask = mask.to(depth.dtype)
    area = mask.sum(dim=(1, 2))  # (B,)
    difference = (depth.log() - depth_gt.log()) * mask  # (B, H, W)
    mean = difference.sum(dim=(1, 2)) / area  # (B,)
    squares = (difference - mean[:, None, None]).square() * mask
    return (squares.sum(dim=(1, 2)) / area).sqrt()


def mad(depth: Tensor, depth_gt: Tensor, mask: Tensor, fov: float) -> Tensor:
    """Mean angular distance in degrees (B,) between the normals of depths (B, H, W) and of the ground
    truth (B, H, W) over ``mask`` (B, H, W), camera field of view ``fov`` degrees; NaN for an empty mask."""
    _check(depth, depth_gt, mask)
    mask = mask.to(depth.dtype)
    cosine = (depth_normals(depth, fov) * depth_normals(depth_gt, fov)).sum(dim=1)  # (B, H, W)
    angle = torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0)))
    return (angle * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))
