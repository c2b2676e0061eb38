"""The seed paper's effective loss (section 4.2, eq. 1-6): projected points should cover the silhouettes.

``effective_loss(points_ndc (B, G, N, 2), masks (B, G, H, W)) -> EffectiveLoss`` with
``total = mean over views and points of alpha * M1 + beta * L2`` (eq. 6), no rendering involved.

Terms (each a function of its own, per point and view):

- ``first_term``, M1 (eq. 3): ``|1 - pi^G(p)|`` with pi^G the processed silhouette of ``distance_field``
  (eq. 2, on ``backend.imaging.distance_transform``) read at p by ``sample_bilinear``. With
  ``distance_transform=False`` it is the plain eq. 1: the binary silhouette is read instead, and a point
  whose four nearest pixels are background gets no gradient.
- ``second_term``, L2 (eq. 4-5): ``w_j * mean over j' != j of w_j' * exp(-d(p_j, p_j') / theta + mu_j)``
  with d in image sides; the kernel sums are ``training.ops.pairwise.pairwise_kernel_sum`` (all pairs,
  memory O(chunk_size * N), so N = 16000 fits on a CPU) or, with ``cutoff``, the sum over pairs closer
  than ``cutoff * theta`` of ``training.ops.neighbour_grid`` (a grid of cells: Triton kernels on CUDA,
  blocked PyTorch elsewhere, O(near pairs); ``pairs="reference"`` sums every pair truncated at the
  cutoff instead). w and mu are detached weights: the gradient flows through d only.
- ``boundary_bias``, mu (eq. 5): mean of bilinear reads of the binary silhouette at the corners of squares
  around the projection.

The paper gives no code or hyperparameters; our readings of it (numbered, cited below as "reading N")
and the tuning log of the defaults are in docs/effective_loss_tuning.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.imaging.distance_transform import squared_distance_to_foreground
from training.ops.neighbour_grid import near_pairs_kernel_sum
from training.ops.pairwise import DEFAULT_CHUNK_SIZE, all_pairs_kernel_sum, check_cutoff, pairwise_kernel_sum

PairsImplementation = Literal["auto", "triton", "torch", "reference"]
"""How ``second_term`` sums the pairs closer than the cutoff: ``auto`` (Triton kernels on CUDA where Triton
runs, else the PyTorch neighbour grid), ``triton``, ``torch`` (``training.ops.neighbour_grid``), or
``reference``: every pair, truncated at the cutoff (``pairwise_kernel_sum``; the oracle, O(N^2))."""

DEFAULT_ALPHA = 1.0
"""Weight of the first term M1 (eq. 6)."""

DEFAULT_BETA = 3.0
"""Weight of the second term L2 (eq. 6); chosen with ``DEFAULT_THETA`` on the Figure-5 setup."""

DEFAULT_THETA = 0.005
"""Decay of eq. 5's kernel ``exp(-d / theta)``, in units of the image side (0.32 px at 64 x 64)."""

DEFAULT_SCALES: tuple[float, ...] = (1.0, 2.0, 4.0)
"""Half sides, in pixels, of the squares whose corners give the boundary bias mu."""

OUTSIDE_EPS = 1e-6
"""Smoothing, in pixels, of the distance of a point to the image (a finite gradient at distance 0)."""


@dataclass
class EffectiveLoss:
    """Eq. 6 and its two terms, scalars (0-dim tensors) carrying gradients to the points.

    Attributes:
        total: ``alpha * first + beta * second``.
        first: mean of M1 (eq. 3, or eq. 1 without the distance transform) over points and views.
        second: mean of L2 (eq. 5) over points and views; 0 when ``beta`` is 0 (not computed).
    """

    total: Tensor
    first: Tensor
    second: Tensor


def distance_field(mask: Tensor) -> Tensor:
    """The processed silhouette pi^G of eq. 2 (reading 1, docs/effective_loss_tuning.md).

    Args:
        mask: (B, H, W) silhouettes in {0, 1} (values > 0.5 are foreground).

    Returns:
        (B, H, W) on the mask's device (float dtype of the mask, float32 otherwise): 1 on the foreground,
        in (0, 1) on the background, decreasing with the distance to the foreground.
    """
    if mask.dim() != 3:
        raise ValueError(f"mask must have shape (B, H, W), got {tuple(mask.shape)}")
    dtype = mask.dtype if mask.is_floating_point() else torch.float32
    foreground = mask > 0.5  # (B, H, W)
    background = ~foreground
    distance = squared_distance_to_foreground(foreground).sqrt().to(dtype)  # (B, H, W) pixels
    inf = torch.full((), math.inf, dtype=dtype, device=mask.device)
    nearest = torch.where(background, distance, inf).amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    farthest = torch.where(background, distance, -inf).amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    ramp = 1 - (distance - nearest + 1) / (farthest - nearest + 2)  # (B, H, W), in (0, 1) on background
    field = torch.where(foreground, torch.ones_like(distance), ramp)
    empty = ~foreground.flatten(1).any(dim=1)  # (B,) masks without foreground
    return torch.where(empty[:, None, None], torch.zeros_like(field), field)


def sample_bilinear(images: Tensor, points_ndc: Tensor, *, outside_slope: float | None = None) -> Tensor:
    """Bilinear reads of images at NDC points (x right, y up; ``align_corners=False``).

    Args:
        images: (M, H, W).
        points_ndc: (M, N, 2).
        outside_slope: None: everything outside the image reads 0 (``padding_mode="zeros"``). A number:
            the point is clamped to the rectangle of pixel centres and the value read there is lowered by
            ``outside_slope`` per pixel of distance from the point to that rectangle (reading 2).

    Returns:
        (M, N), differentiable in the points (and the images).
    """
    if images.dim() != 3 or points_ndc.dim() != 3 or points_ndc.shape[-1] != 2:
        raise ValueError(f"expected images (M, H, W) and points (M, N, 2), got {tuple(images.shape)} and "
                         f"{tuple(points_ndc.shape)}")  # fmt: skip
    if images.shape[0] != points_ndc.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {points_ndc.shape[0]} point sets")
    height, width = images.shape[-2:]
    x, y = points_ndc.unbind(-1)  # (M, N) each
    if outside_slope is not None:
        x_in = x.clamp(-1 + 1 / width, 1 - 1 / width)
        y_in = y.clamp(-1 + 1 / height, 1 - 1 / height)
    else:
        x_in, y_in = x, y
    grid = torch.stack([x_in, -y_in], dim=-1)[:, None]  # (M, 1, N, 2), grid y points down
    values = F.grid_sample(images[:, None].to(points_ndc.dtype), grid, mode="bilinear",
                           padding_mode="zeros" if outside_slope is None else "border",
                           align_corners=False)[:, 0, 0]  # fmt: skip  # (M, N)
    if outside_slope is None:
        return values
    dx_px = (x - x_in) * (width / 2)  # (M, N)
    dy_px = (y - y_in) * (height / 2)
    outside_px = (dx_px**2 + dy_px**2 + OUTSIDE_EPS**2).sqrt() - OUTSIDE_EPS  # (M, N)
    return values - outside_slope * outside_px


def first_term(
    points_ndc: Tensor, masks: Tensor, *, distance_transform: bool = True, field: Tensor | None = None
) -> Tensor:
    """M1 (eq. 3) per point and view, or the plain eq. 1 with ``distance_transform=False``.

    Args:
        points_ndc: (B, G, N, 2) projections of N points in G views.
        masks: (B, G, H, W) binary silhouettes.
        distance_transform: read the processed silhouette pi^G (eq. 3) rather than the binary one (eq. 1).
        field: optional (B, G, H, W) precomputed ``distance_field`` of the masks (a trainer may cache it).

    Returns:
        (B, G, N) ``|1 - pi(p)|``, 0 inside the silhouette.
    """
    points, images = _flatten(points_ndc, masks)  # (M, N, 2), (M, H, W)
    if not distance_transform:
        image = (images > 0.5).to(points.dtype)
    elif field is not None:
        if field.shape != masks.shape:
            raise ValueError(
                f"field must have the masks' shape {tuple(masks.shape)}, got {tuple(field.shape)}"
            )
        image = field.reshape(images.shape).to(device=points.device, dtype=points.dtype)
    else:
        image = distance_field(images).to(points.dtype)
    slope = 1.0 / max(images.shape[-2:])
    values = sample_bilinear(image, points, outside_slope=slope)  # (M, N)
    return (1 - values).abs().reshape(points_ndc.shape[:-1])


def boundary_bias(points_ndc: Tensor, masks: Tensor, *, scales: Sequence[float] = DEFAULT_SCALES) -> Tensor:
    """mu of eq. 5: the mean binary-silhouette read at the corners of squares around each point.

    Args:
        points_ndc: (B, G, N, 2).
        masks: (B, G, H, W) binary silhouettes.
        scales: half sides of the squares in pixels: corners at ``p + (+-s, +-s)`` pixels.

    Returns:
        (B, G, N) in [0, 1] (detached): 1 deep inside the silhouette, smaller near its boundary.
    """
    if len(scales) == 0 or any(not (float(s) > 0 and math.isfinite(float(s))) for s in scales):
        raise ValueError(f"scales must be positive pixel sizes, got {tuple(scales)}")
    points, images = _flatten(points_ndc, masks)
    points = points.detach()
    height, width = images.shape[-2:]
    # (K, 2) NDC offsets (+-s, +-s) px, K = 4 per scale, built on the device (no host-to-device copy)
    sizes = torch.cat([torch.full((4,), float(s), dtype=points.dtype, device=points.device) for s in scales])
    corner = torch.arange(sizes.numel(), device=points.device)
    sign_x = torch.div(corner, 2, rounding_mode="floor").remainder(2) * 2 - 1  # -1, -1, 1, 1, ...
    sign_y = corner.remainder(2) * 2 - 1  # -1, 1, -1, 1, ...
    offsets = torch.stack([sign_x * sizes * (2 / width), sign_y * sizes * (2 / height)], dim=-1)
    shifted = points[:, :, None, :] + offsets  # (M, N, K, 2)
    binary = (images > 0.5).to(points.dtype)
    reads = sample_bilinear(binary, shifted.flatten(1, 2))  # (M, N * K)
    return reads.view(*shifted.shape[:-1]).mean(dim=-1).reshape(points_ndc.shape[:-1])


def second_term(
    points_ndc: Tensor,
    masks: Tensor,
    *,
    theta: float = DEFAULT_THETA,
    scales: Sequence[float] = DEFAULT_SCALES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    cutoff: float | None = None,
    pairs: PairsImplementation = "auto",
) -> Tensor:
    """L2 (eq. 5) per point and view, normalised by N (reading 6).

    ``L2_j = w_j * exp(mu_j) / N * sum_{j' != j} w_j' * exp(-d(p_j, p_j') / theta)``, w the bilinear read of
    the binary silhouette, mu ``boundary_bias``, d in image sides (reading 3); w and mu are detached.

    Args:
        points_ndc: (B, G, N, 2).
        masks: (B, G, H, W) binary silhouettes.
        theta: kernel decay in image sides.
        scales: ``boundary_bias`` scales in pixels.
        chunk_size: rows of the pairwise matrix per block (memory O(chunk_size * N)).
        cutoff: None: all pairs. A number: pairs farther apart than ``cutoff * theta`` are dropped
            (``local_kernel_sum``; each dropped pair's kernel is below ``exp(-cutoff)``).
        pairs: with ``cutoff``, how the near pairs are summed (``PairsImplementation``); all give the same
            values and gradients up to rounding.

    Returns:
        (B, G, N), 0 for projections on the background.
    """
    if not (theta > 0 and math.isfinite(theta)):
        raise ValueError(f"theta must be a positive finite number, got {theta}")
    check_cutoff(cutoff)
    if pairs not in ("auto", "triton", "torch", "reference"):
        raise ValueError(f"pairs must be 'auto', 'triton', 'torch' or 'reference', got {pairs!r}")
    points, images = _flatten(points_ndc, masks)  # (M, N, 2), (M, H, W)
    count = points.shape[1]
    binary = (images > 0.5).to(points.dtype)
    weights = sample_bilinear(binary, points.detach())  # (M, N) w
    bias = boundary_bias(points_ndc, masks, scales=scales).reshape(weights.shape)  # (M, N) mu
    if cutoff is None:
        sums = pairwise_kernel_sum(points / 2, weights, theta, chunk_size=chunk_size)  # (M, N)
    elif pairs == "reference":
        sums = all_pairs_kernel_sum(points / 2, weights, theta, chunk_size, cutoff)
    else:  # rows on the background are skipped: their L2 is 0 and gets no gradient either way
        # weighted points lie in the image ([-0.5, 0.5]^2 image sides, up to half a pixel beyond)
        sums = near_pairs_kernel_sum(
            points / 2, weights, theta, cutoff, chunk_size, weighted_rows_only=True,
            implementation=pairs, extent=0.5, centre=0.0,
        )  # fmt: skip
    values = weights * torch.exp(bias) / count * sums  # (M, N)
    return values.reshape(points_ndc.shape[:-1])


def effective_loss(
    points_ndc: Tensor,
    masks: Tensor,
    *,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    theta: float = DEFAULT_THETA,
    distance_transform: bool = True,
    scales: Sequence[float] = DEFAULT_SCALES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    field: Tensor | None = None,
    cutoff: float | None = None,
    pairs: PairsImplementation = "auto",
) -> EffectiveLoss:
    """Eq. 6: ``mean over views and points of alpha * M1 + beta * L2``.

    Args:
        points_ndc: (B, G, N, 2) projections (NDC, y up) of each object's N points in its G views.
        masks: (B, G, H, W) binary silhouettes of those views.
        alpha, beta: weights of the two terms (``beta = 0`` skips the second term).
        theta: decay of the second term's kernel, in image sides.
        distance_transform: M1 reads the processed silhouette (eq. 3); False gives the plain eq. 1.
        scales: ``boundary_bias`` square half sides in pixels.
        chunk_size: rows of the pairwise matrix per block.
        field: optional (B, G, H, W) precomputed ``distance_field`` of the masks.
        cutoff: None: the second term sums all pairs; a number: only pairs closer than ``cutoff * theta``
            (``second_term``).
        pairs: with ``cutoff``, how the near pairs are summed (``PairsImplementation``).
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha} and {beta}")
    check_cutoff(cutoff)
    first = first_term(points_ndc, masks, distance_transform=distance_transform, field=field).mean()
    if beta > 0:
        second = second_term(
            points_ndc, masks, theta=theta, scales=scales, chunk_size=chunk_size, cutoff=cutoff, pairs=pairs
        ).mean()
    else:
        second = torch.zeros((), dtype=points_ndc.dtype, device=points_ndc.device)
    return EffectiveLoss(total=alpha * first + beta * second, first=first, second=second)


def _flatten(points_ndc: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Validate (B, G, N, 2) points and (B, G, H, W) masks; return (M, N, 2) and (M, H, W), M = B * G."""
    if not isinstance(points_ndc, Tensor) or not isinstance(masks, Tensor):
        raise TypeError("points_ndc and masks must be tensors")
    if points_ndc.dim() != 4 or points_ndc.shape[-1] != 2:
        raise ValueError(f"points_ndc must have shape (B, G, N, 2), got {tuple(points_ndc.shape)}")
    if not points_ndc.is_floating_point():
        raise TypeError(f"points_ndc must be floating point, got {points_ndc.dtype}")
    if masks.dim() != 4 or masks.shape[:2] != points_ndc.shape[:2]:
        raise ValueError(f"masks must have shape (B, G, H, W) with (B, G) = {tuple(points_ndc.shape[:2])}, "
                         f"got {tuple(masks.shape)}")  # fmt: skip
    points = points_ndc.reshape(-1, *points_ndc.shape[2:])  # (M, N, 2)
    images = masks.reshape(-1, *masks.shape[2:]).to(device=points.device)  # (M, H, W)
    if not images.is_floating_point():
        images = images.to(points.dtype)
    return points, images
