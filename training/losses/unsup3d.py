"""Unsup3d's reconstruction losses (Wu, Rupprecht, Vedaldi 2020, eq. 2-3 and the perceptual term), per image.

- ``photometric_loss(reconstruction, target, sigma, mask) -> (B,)``: the negative log-likelihood of a
  Laplacian with confidence ``sigma`` of the per-pixel L1 distance ``l`` (mean over channels):
  ``l sqrt(2) / sigma + log sigma`` (plain ``l`` without sigma), averaged over the mask.
- ``perceptual_loss(features_reconstruction, features_target, sigma, mask) -> (B,)``: the Gaussian
  counterpart on the squared feature distance ``d^2`` (mean over channels): ``d^2 / (2 sigma^2) + log sigma``
  (plain ``d^2`` without sigma), averaged over the mask. The reference's features are VGG16's relu3_3
  (``backend.models.vgg.load_vgg16_features``).

As the reference: ``EPS = 1e-7`` is added to sigma in both terms (and to ``2 sigma^2``), and with a mask
the average is ``sum(mask * loss) / sum(mask)`` over the pixels (and channels) of each image, 0 for an
empty mask. The reference averages over the whole batch at once, ``sum_b sum(mask_b loss_b) / sum_b
sum(mask_b)``: the mean of these per-image values is that number when every mask has the same area. Its
images are in [-1, 1], so its L1 distances are twice those of the same images in [0, 1]; a trainer that
wants the reference's values passes ``2 x - 1`` images to ``photometric_loss``.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

EPS = 1e-7
"""Added to sigma (and to 2 sigma^2) as the reference does, and the smallest mask area divided by."""


def _check(name: str, value: Tensor | None, batch: int, size: tuple[int, int] | None) -> None:
    """Raise unless ``value`` is None or (B, 1, h, w) (with (h, w) = ``size`` when given)."""
    if value is None:
        return
    if value.dim() != 4 or value.shape[0] != batch or value.shape[1] != 1:
        raise ValueError(f"{name} must have shape ({batch}, 1, h, w), got {tuple(value.shape)}")
    if size is not None and tuple(value.shape[2:]) != size:
        raise ValueError(
            f"{name} must have shape ({batch}, 1, {size[0]}, {size[1]}), got {tuple(value.shape)}"
        )


def _masked_mean(loss: Tensor, mask: Tensor | None) -> Tensor:
    """Per-image mean (B,) of a per-pixel loss (B, 1, h, w), weighted by ``mask`` (B, 1, h, w) if given."""
    if mask is None:
        return loss.mean(dim=(1, 2, 3))
    mask = mask.to(loss.dtype)
    return (loss * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp_min(EPS)


def photometric_loss(
    reconstruction: Tensor, target: Tensor, sigma: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """Confidence-weighted L1 (B,) between images (B, C, H, W) (module docstring).

    Args:
        reconstruction, target: (B, C, H, W).
        sigma: (B, 1, H, W) > 0, or None for the plain L1.
        mask: (B, 1, H, W) weights in [0, 1] (1: the reconstruction covers the pixel), or None for all.
    Returns:
        (B,) per image; differentiable in the images and sigma.
    """
    if reconstruction.shape != target.shape or reconstruction.dim() != 4:
        raise ValueError(
            f"reconstruction and target must share a (B, C, H, W) shape, got {tuple(reconstruction.shape)} "
            f"and {tuple(target.shape)}"
        )
    batch, _, height, width = target.shape
    _check("sigma", sigma, batch, (height, width))
    _check("mask", mask, batch, (height, width))
    distance = (reconstruction - target).abs().mean(dim=1, keepdim=True)  # (B, 1, H, W)
    if sigma is not None:
        distance = distance * math.sqrt(2.0) / (sigma + EPS) + (sigma + EPS).log()
    return _masked_mean(distance, mask)


def perceptual_loss(
    features_reconstruction: Tensor,
    features_target: Tensor,
    sigma: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Confidence-weighted squared feature distance (B,) (module docstring).

    Args:
        features_reconstruction, features_target: (B, C, h, w).
        sigma: (B, 1, h, w) > 0, or None for the plain squared distance.
        mask: (B, 1, h, w), or (B, 1, k h, k w) at the image's resolution, which is average-pooled over
            k x k blocks to (h, w) as the reference does; None for all pixels.
    Returns:
        (B,) per image; differentiable in the features and sigma.
    """
    if features_reconstruction.shape != features_target.shape or features_target.dim() != 4:
        raise ValueError(
            "features_reconstruction and features_target must share a (B, C, h, w) shape, got "
            f"{tuple(features_reconstruction.shape)} and {tuple(features_target.shape)}"
        )
    batch, _, height, width = features_target.shape
    _check("sigma", sigma, batch, (height, width))
    _check("mask", mask, batch, None)
    if mask is not None and tuple(mask.shape[2:]) != (height, width):
        factor_h, factor_w = mask.shape[2] // height, mask.shape[3] // width
        if (
            factor_h < 1
            or factor_w < 1
            or (mask.shape[2], mask.shape[3]) != (factor_h * height, factor_w * width)
        ):
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} is not the features' ({height}, {width}) grid "
                "or a whole multiple of it"
            )
        mask = F.avg_pool2d(mask.to(features_target.dtype), kernel_size=(factor_h, factor_w))
    distance = (features_reconstruction - features_target).square().mean(dim=1, keepdim=True)  # (B, 1, h, w)
    if sigma is not None:
        distance = distance / (2.0 * sigma.square() + EPS) + (sigma + EPS).log()
    return _masked_mean(distance, mask)
