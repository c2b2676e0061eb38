"""The seed paper's effective loss (section 4.2, eq. 1-6): projected points should cover the silhouettes.

``effective_loss(points_ndc (B, G, N, 2), masks (B, G, H, W)) -> EffectiveLoss`` with
``total = mean over views and points of alpha * M1 + beta * L2`` (eq. 6), no rendering involved.

Terms (each a function of its own, per point and view):

- ``first_term``, M1 (eq. 3): ``|1 - pi^G(p)|`` with pi^G the processed silhouette of ``distance_field``
  read at p by ``sample_bilinear``. With ``distance_transform=False`` it is the plain eq. 1: the binary
  silhouette is read instead, and a point whose four nearest pixels are background gets no gradient.
- ``second_term``, L2 (eq. 4-5): ``w_j * mean over j' != j of w_j' * exp(-d(p_j, p_j') / theta + mu_j)``,
  computed by ``pairwise_kernel_sum`` in chunks (forward and backward), so N = 16000 fits on a CPU.
- ``boundary_bias``, mu (eq. 5): mean of bilinear reads of the binary silhouette at the corners of squares
  around the projection.

Our readings of the paper, which gives the equations but no code or hyperparameters:

1. **pi^G (eq. 2).** Foreground (mask > 0.5) is 1. A background pixel at Euclidean distance d (pixels,
   exact, ``squared_distance_to_foreground``) from the nearest foreground pixel gets
   ``1 - (d - d_min + 1) / (d_max - d_min + 2)``, d_min and d_max taken over that mask's background. That
   is eq. 2's ``1 - d`` min-max normalised into the open interval (0, 1) as the text asks: the nearest
   background pixels lie one step below 1 and the farthest one step above 0, so the field falls with the
   same slope across the boundary as everywhere outside (a plain min-max to [0, 1] would give the first
   background ring the foreground's value 1 and no gradient). Dividing d by the resolution first, as the
   paper does, changes nothing after the min-max. A mask with no foreground gives a field of zeros
   (M1 = 1, no gradient); a mask with no background gives ones.
2. **Reading at a point.** ``F.grid_sample`` bilinear, ``align_corners=False``, NDC with y up (grid
   ``(x, -y)``). For M1 the point is clamped to the rectangle of pixel centres and the value read there is
   lowered by 1 / max(H, W) (eq. 2's normalisation by the resolution) per pixel of distance beyond it:
   a point outside the image is pulled back toward it in both variants, never has exactly zero gradient,
   and the value is continuous at the image border. The binary reads of w and mu treat
   everything outside the image as background (``padding_mode="zeros"``).
3. **d (eq. 4)** is measured in units of the image side: ``d = |p_ndc - p'_ndc| / 2``, floored at
   ``DISTANCE_EPS`` so that coincident points have a finite (zero) gradient. The kernel is truncated,
   ``max(exp(-d / theta) - exp(-40), 0)`` (``KERNEL_CUTOFF``), a change of 4e-18 that makes it exactly
   0 beyond 40 theta: ``exp`` of arguments below about -87 (float32 underflow) is several times slower
   on CPUs, and the untruncated term took 3x longer at theta = 0.005.
4. **w, mu are weights.** Both are read from the binary silhouette and detached: the gradient of L2
   flows through d only, so the repulsion spreads projections apart and never drives them out of the
   silhouette by lowering w; a projection on the background (w = 0) neither repels nor is repelled
   (the paper's "skips projections within the background"), and M1 brings it back.
5. **mu.** For each scale s in ``scales`` (pixels, default 1, 2, 4) the binary silhouette is read at the
   four corners ``p + (+-s, +-s)`` pixels; mu is the mean of all these reads: 1 deep inside, smaller near
   the boundary, where ``exp(mu)`` weakens the repulsion (the paper's "multi-scale gradients").
6. **Normalisation.** The sum over j' of eq. 5 is divided by N (a mean over the other points), so the
   force on a point, and hence ``beta``, does not depend on the number of points.
7. **Defaults** (``DEFAULT_ALPHA``, ``DEFAULT_BETA``, ``DEFAULT_THETA``): the paper gives none. They were
   chosen on the Figure-5 setup of ``tests/training/losses/test_effective_figures.py`` (the 64 x 64
   bird-like blob, points uniform over the image, 2-D points optimised directly), measuring the share of
   points inside and the coefficient of variation of nearest-neighbour distances (nn_cv, lower = more
   even; M1 alone leaves 1.3-1.8). theta (Adam, lr 0.01, beta 1): 500 points: nn_cv 0.12 at 0.005,
   0.51 at 0.02, 1.06 at 0.05; 2000 points: 0.22 at 0.002, 0.18 at 0.005, 0.35 at 0.01, 0.61 at 0.02
   (a wide kernel piles points on the boundary like charges on a conductor), so theta = 0.005 image
   sides (0.3 px at 64 x 64; half to all of the spacing of 2000-8000 points on a silhouette). beta / alpha
   (plain SGD on N * loss, lr 0.01, theta 0.005, where the ratio matters; Adam hides it): 500 points:
   all inside for beta <= 10 (nn_cv 0.29 at 1, 0.21 at 3, 0.13 at 10), 77 % inside at 30, 37 % at 100;
   2000 points: 100 % / 0.29 at 3, 99.9 % / 0.23 at 10, 80 % at 30. beta = 3 spreads the points while
   staying a factor 3-10 below where the repulsion starts pushing a boundary layer out; alpha = 1.

Memory: the pairwise term never holds an N x N matrix. ``pairwise_kernel_sum`` is a custom autograd
function whose forward and backward both loop over blocks of ``chunk_size`` rows (several views per block
when ``chunk_size >= N``), recomputing the kernel in backward; peak memory is O(chunk_size * N).

Neighbour limit (``cutoff``, in units of theta; ``second_term``, ``effective_loss``, ``local_kernel_sum``):
pairs at distance ``d >= cutoff * theta`` are dropped, the kernel being kept as it is (reading 3) below.
Every dropped pair had a kernel below ``exp(-cutoff)`` of its peak (4.5e-5 at cutoff 10): a point's sum
of eq. 5 is off by less than ``exp(-cutoff)`` times the weight of the points it drops, its L2 (a mean over
N) by less than ``w exp(mu) exp(-cutoff)``, and the force of each dropped pair is below
``exp(-cutoff) / theta``. ``cutoff >= KERNEL_CUTOFF`` drops nothing the truncation did not already zero.
The weighted points of each view are binned into square cells of side ``cutoff * theta /
LOCAL_SUBDIVISION`` and sorted by (view, cell); a point's candidates are the points of the
``(2 s + 1)^2`` cells around its own (s = ``LOCAL_SUBDIVISION``), read as ``2 s + 1`` runs of consecutive
cells of the sorted order. The candidate pairs are processed as flat lists in blocks of about
``chunk_size * N`` pairs, forward and backward (scatter-adds of both points' gradients). Time and memory
are O(candidate pairs); when they exceed ``LOCAL_FALLBACK_SHARE`` of all pairs (points crowded in a few
cells) the chunked all-pairs path runs instead, with the same truncation at the cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

DEFAULT_ALPHA = 1.0
"""Weight of the first term M1 (eq. 6)."""

DEFAULT_BETA = 3.0
"""Weight of the second term L2 (eq. 6); chosen with ``DEFAULT_THETA`` on the Figure-5 setup."""

DEFAULT_THETA = 0.005
"""Decay of eq. 5's kernel ``exp(-d / theta)``, in units of the image side (0.32 px at 64 x 64)."""

DEFAULT_SCALES: tuple[float, ...] = (1.0, 2.0, 4.0)
"""Half sides, in pixels, of the squares whose corners give the boundary bias mu."""

DEFAULT_CHUNK_SIZE = 1024
"""Rows of the pairwise matrix handled at once by ``pairwise_kernel_sum``."""

DISTANCE_EPS = 1e-8
"""Floor of the pairwise distance, in image sides: ``d = max(|dp|, eps)`` (coincident points)."""

OUTSIDE_EPS = 1e-6
"""Smoothing, in pixels, of the distance of a point to the image (a finite gradient at distance 0)."""

KERNEL_CUTOFF = 40.0
"""The kernel is ``max(exp(-d / theta) - exp(-40), 0)``: exactly 0 beyond d = 40 theta (reading 3)."""

LOCAL_SUBDIVISION = 2
"""Cells per cutoff distance of the neighbour grid of ``local_kernel_sum`` (candidates in 5 x 5 cells)."""

LOCAL_GROUP_ROWS = 16
"""Rows of one grid cell handled together by ``local_kernel_sum`` (a cell's rows are split in groups)."""

LOCAL_FALLBACK_SHARE = 0.25
"""``local_kernel_sum`` runs the all-pairs path when its candidate pairs exceed this share of all pairs."""

_CELL_MARGIN = 1e-4
"""Relative enlargement of the grid cells: rounding never moves a pair closer than the cutoff out of reach."""

_EDT_BLOCK = 1 << 24
"""Elements of the (masks, H, W, W) block of the exact distance transform's second pass."""


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
    step = max(1, _EDT_BLOCK // max(height * width * width, 1))
    for start in range(0, masks, step):
        block = column[start : start + step] ** 2  # (m, H, W')
        candidates = block[:, :, None, :] + offsets  # (m, H, W, W')
        result[start : start + step] = candidates.amin(dim=-1)
    return result


def distance_field(mask: Tensor) -> Tensor:
    """The processed silhouette pi^G of eq. 2 (reading 1 of the module docstring).

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
    inf = torch.tensor(math.inf, dtype=dtype, device=mask.device)
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
    corners = [(sx * s * 2 / width, sy * s * 2 / height) for s in scales for sx in (-1, 1) for sy in (-1, 1)]
    offsets = torch.tensor(corners, dtype=points.dtype, device=points.device)  # (K, 2) NDC
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

    Returns:
        (B, G, N), 0 for projections on the background.
    """
    if not (theta > 0 and math.isfinite(theta)):
        raise ValueError(f"theta must be a positive finite number, got {theta}")
    _check_cutoff(cutoff)
    points, images = _flatten(points_ndc, masks)  # (M, N, 2), (M, H, W)
    count = points.shape[1]
    binary = (images > 0.5).to(points.dtype)
    weights = sample_bilinear(binary, points.detach())  # (M, N) w
    bias = boundary_bias(points_ndc, masks, scales=scales).reshape(weights.shape)  # (M, N) mu
    if cutoff is None:
        sums = pairwise_kernel_sum(points / 2, weights, theta, chunk_size=chunk_size)  # (M, N)
    else:  # rows on the background are skipped: their L2 is 0 and gets no gradient either way
        sums = _local_kernel_sum(points / 2, weights, theta, cutoff, chunk_size, weighted_rows_only=True)
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
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be >= 0, got {alpha} and {beta}")
    _check_cutoff(cutoff)
    first = first_term(points_ndc, masks, distance_transform=distance_transform, field=field).mean()
    if beta > 0:
        second = second_term(
            points_ndc, masks, theta=theta, scales=scales, chunk_size=chunk_size, cutoff=cutoff
        ).mean()
    else:
        second = torch.zeros((), dtype=points_ndc.dtype, device=points_ndc.device)
    return EffectiveLoss(total=alpha * first + beta * second, first=first, second=second)


def pairwise_kernel_sum(
    points: Tensor, weights: Tensor, theta: float, *, chunk_size: int, cutoff: float = KERNEL_CUTOFF
) -> Tensor:
    """``sum_{j' != j} weights_j' * exp(-|points_j - points_j'| / theta)`` for every j, chunked.

    The kernel is truncated at ``KERNEL_CUTOFF`` (module docstring, reading 3); with ``cutoff`` below it,
    pairs at ``d >= cutoff * theta`` are dropped too (still all pairs computed: ``local_kernel_sum``'s
    reference and fallback).

    Forward and backward loop over blocks of ``chunk_size`` rows; the backward recomputes the kernel of
    each block and gives the gradient of both points of every pair. ``weights`` gets no gradient.

    Args:
        points: (M, N, 2) points of M independent sets (the distance is ``max(|dp|, DISTANCE_EPS)``).
        weights: (M, N) weights of the other points (detached here).
        theta: kernel decay, in the points' units.
        chunk_size: rows per block (>= 1).
        cutoff: pairs at ``d >= cutoff * theta`` are dropped (in units of theta).

    Returns:
        (M, N).
    """
    _check_pairwise_arguments(points, weights, chunk_size)
    _check_cutoff(cutoff)
    return _pairwise_kernel_sum(points, weights, theta, chunk_size, cutoff)


def local_kernel_sum(
    points: Tensor, weights: Tensor, theta: float, *, cutoff: float, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Tensor:
    """``pairwise_kernel_sum(..., cutoff=cutoff)`` over the pairs closer than ``cutoff * theta`` only.

    Equal to the all-pairs sum with the kernel truncated at the cutoff (values and gradients), in time and
    memory O(candidate pairs) rather than O(N^2): neighbour grid of the module docstring. Points of
    weight 0 are no one's neighbours (they add nothing) but get their own sum and its gradient.

    Args:
        points: (M, N, 2) points of M independent sets (the distance is ``max(|dp|, DISTANCE_EPS)``).
        weights: (M, N) weights of the other points (detached here).
        theta: kernel decay, in the points' units.
        cutoff: pairs at ``d >= cutoff * theta`` are dropped; each had a kernel below ``exp(-cutoff)``.
        chunk_size: candidate pairs per block are about ``chunk_size * N`` (memory O(chunk_size * N)).

    Returns:
        (M, N).
    """
    _check_pairwise_arguments(points, weights, chunk_size)
    _check_cutoff(cutoff)
    return _local_kernel_sum(points, weights, theta, cutoff, chunk_size, weighted_rows_only=False)


def _check_pairwise_arguments(points: Tensor, weights: Tensor, chunk_size: int) -> None:
    if points.dim() != 3 or points.shape[-1] != 2 or weights.shape != points.shape[:-1]:
        raise ValueError(f"expected points (M, N, 2) and weights (M, N), got {tuple(points.shape)} and "
                         f"{tuple(weights.shape)}")  # fmt: skip
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def _check_cutoff(cutoff: float | None) -> None:
    if cutoff is not None and not (cutoff > 0 and math.isfinite(cutoff)):
        raise ValueError(f"cutoff must be None or a positive finite number (units of theta), got {cutoff}")


def _pairwise_kernel_sum(
    points: Tensor, weights: Tensor, theta: float, chunk_size: int, cutoff: float
) -> Tensor:
    result: Tensor = _PairwiseKernelSum.apply(
        points, weights.detach().to(points.dtype), theta, chunk_size, cutoff
    )
    return result


def _local_kernel_sum(
    points: Tensor, weights: Tensor, theta: float, cutoff: float, chunk_size: int, *, weighted_rows_only: bool
) -> Tensor:
    """``local_kernel_sum``; with ``weighted_rows_only`` the sums of points of weight 0 are left at 0."""
    weights = weights.detach().to(points.dtype)
    views, count = weights.shape
    flat_weights = weights.reshape(-1)
    if weighted_rows_only:
        rows = flat_weights.nonzero()[:, 0]  # (R,) flat indices
    else:
        rows = torch.arange(views * count, device=points.device)
    reach = min(cutoff, KERNEL_CUTOFF) * theta
    grid = _neighbour_grid(points.detach(), flat_weights, rows, reach, chunk_size * count)
    if grid is None:
        return _pairwise_kernel_sum(points, weights, theta, chunk_size, cutoff)
    result: Tensor = _LocalKernelSum.apply(points, weights, theta, cutoff, grid)
    return result


@dataclass
class _NeighbourGrid:
    """The rows of ``local_kernel_sum`` grouped by grid cell, and each cell's candidate runs of columns.

    Attributes:
        rows: (R,) flat point indices of the rows, sorted by (view, cell).
        row_starts, row_counts: (Q,) each occupied cell's slice of ``rows``.
        columns: (C,) flat indices of the weighted points, sorted by (view, cell).
        run_starts, run_counts: (Q, 2 s + 1) the slices of ``columns`` holding each cell's candidates.
        blocks: cells of each block (index tensors, cells of similar sizes together), with the block's
            padded rows per cell and candidates per cell.
    """

    rows: Tensor
    row_starts: Tensor
    row_counts: Tensor
    columns: Tensor
    run_starts: Tensor
    run_counts: Tensor
    blocks: list[tuple[Tensor, int, int]]


def _neighbour_grid(
    points: Tensor, weights: Tensor, rows: Tensor, reach: float, budget: int
) -> _NeighbourGrid | None:
    """Bin the points of each view into cells of side ``reach / s`` (s = ``LOCAL_SUBDIVISION``).

    The candidates of a cell are the weighted points of the ``(2 s + 1)^2`` cells around it: every pair
    closer than ``reach`` is among them. Keys ``(view, cell x, cell y)`` are sorted, so that the candidates
    are ``2 s + 1`` runs of consecutive keys (the cells of one x step). Rows farther than s cells outside
    the weighted points' box have no candidates and are pulled to s cells outside it (keys stay small).

    Args:
        points: (M, N, 2) detached.
        weights: (M * N,) flat weights; points of weight 0 are nobody's candidates.
        rows: (R,) flat indices of the points whose sums are wanted.
        reach: the cutoff distance, in the points' units.
        budget: elements of a block's (cells, rows, candidates) buffers, about.

    Returns:
        The grid, or None when the all-pairs path is cheaper (``LOCAL_FALLBACK_SHARE``) or the grid's keys
        would overflow 62 bits.
    """
    views, count = points.shape[:2]
    device = points.device
    s = LOCAL_SUBDIVISION
    columns = weights.nonzero()[:, 0]  # (C,)
    if columns.numel() == 0 or rows.numel() == 0:
        none = torch.zeros(0, dtype=torch.long, device=device)
        return _NeighbourGrid(none, none, none, none, none.view(0, 2 * s + 1), none.view(0, 2 * s + 1), [])
    cells = torch.floor(points.reshape(-1, 2).double() * (s / (reach * (1 + _CELL_MARGIN))))  # (M * N, 2)
    lowest = cells[columns].amin(dim=0)  # (2,) over the weighted points of all views
    highest = cells[columns].amax(dim=0)
    sides = [int(v) + 1 + 4 * s for v in (highest - lowest).tolist()]  # cells per axis, 2 s empty rings
    if views * sides[0] * sides[1] >= 1 << 62:
        return None
    index = (torch.minimum(torch.maximum(cells, lowest - s), highest + s) - lowest + 2 * s).long()
    view = torch.arange(views * count, device=device) // count
    keys = (view * sides[0] + index[:, 0]) * sides[1] + index[:, 1]  # (M * N,) int64
    column_keys, order = keys[columns].sort()
    columns = columns[order]
    row_keys, order = keys[rows].sort()
    rows = rows[order]
    cell_keys, cell_counts = torch.unique_consecutive(row_keys, return_counts=True)  # (Q',) occupied cells
    # groups of at most LOCAL_GROUP_ROWS rows of one cell: little padding when blocks mix cells
    cell_groups = torch.div(cell_counts + LOCAL_GROUP_ROWS - 1, LOCAL_GROUP_ROWS, rounding_mode="floor")
    group_cell = torch.repeat_interleave(cell_groups)  # (Q,) cell of each group
    first_group = cell_groups.cumsum(0) - cell_groups  # (Q',)
    within = torch.arange(group_cell.numel(), device=device) - first_group[group_cell]  # group's rank
    row_starts = (cell_counts.cumsum(0) - cell_counts)[group_cell] + within * LOCAL_GROUP_ROWS  # (Q,)
    row_counts = (cell_counts[group_cell] - within * LOCAL_GROUP_ROWS).clamp_(max=LOCAL_GROUP_ROWS)
    cell_keys = cell_keys[group_cell]
    offsets = torch.arange(-s, s + 1, device=device) * sides[1]  # (2 s + 1,) x steps
    first = cell_keys[:, None] + offsets - s  # (Q, 2 s + 1) first key of each run of 2 s + 1 cells
    run_starts = torch.searchsorted(column_keys, first)
    run_counts = torch.searchsorted(column_keys, first + 2 * s, right=True) - run_starts
    candidates = run_counts.sum(dim=1)  # (Q,)
    if float((row_counts * candidates).sum()) > LOCAL_FALLBACK_SHARE * views * count * count:
        return None
    # blocks: cells by decreasing candidates, cut where the padded (cells, rows, candidates) passes budget
    by_size = candidates.argsort(descending=True)
    sizes = torch.stack([row_counts[by_size], candidates[by_size]]).tolist()
    blocks: list[tuple[Tensor, int, int]] = []
    start, widest_rows = 0, 0
    for position, (row_count, width) in enumerate(zip(*sizes, strict=True)):
        width_first = sizes[1][start]
        if position > start and (position + 1 - start) * max(widest_rows, row_count) * width_first > budget:
            blocks.append((by_size[start:position], widest_rows, width_first))
            start, widest_rows = position, 0
        widest_rows = max(widest_rows, row_count)
        del width
    blocks.append((by_size[start:], widest_rows, sizes[1][start]))
    blocks = [block for block in blocks if block[2] > 0]
    return _NeighbourGrid(rows, row_starts, row_counts, columns, run_starts, run_counts, blocks)


def _block_tables(
    grid: _NeighbourGrid, block: tuple[Tensor, int, int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Padded flat indices of a block's rows (q, r) and candidates (q, t), with their validity masks."""
    cells, height, width = block
    device = cells.device
    row_slot = torch.arange(height, device=device)
    row_valid = row_slot < grid.row_counts[cells, None]  # (q, r)
    row_position = (grid.row_starts[cells, None] + row_slot).clamp_(max=grid.rows.numel() - 1)
    run_counts = grid.run_counts[cells]  # (q, 2 s + 1)
    run_ends = run_counts.cumsum(1)
    slot = torch.arange(width, device=device).expand(cells.numel(), width).contiguous()  # (q, t)
    run = torch.searchsorted(run_ends, slot, right=True).clamp_(max=run_counts.shape[1] - 1)  # (q, t)
    column_valid = slot < run_ends[:, -1:]
    column_position = grid.run_starts[cells].gather(1, run) + slot - (run_ends - run_counts).gather(1, run)
    column_position.clamp_(0, max(grid.columns.numel() - 1, 0))
    return grid.rows[row_position], row_valid, grid.columns[column_position], column_valid


def _block_kernel(
    points: Tensor, row_index: Tensor, column_index: Tensor, theta: float, cutoff: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx, dy, distance and truncated kernel (q, r, t) of a block; the kernel is 0 on self-pairs."""
    row_points = points[row_index]  # (q, r, 2)
    column_points = points[column_index]  # (q, t, 2)
    dx = row_points[:, :, None, 0] - column_points[:, None, :, 0]  # (q, r, t)
    dy = row_points[:, :, None, 1] - column_points[:, None, :, 1]
    distance = torch.hypot(dx, dy).clamp_min_(DISTANCE_EPS)
    exponent = distance * (-1.0 / theta)
    dropped = row_index[:, :, None] == column_index[:, None, :]
    if cutoff < KERNEL_CUTOFF:
        dropped |= exponent <= -cutoff
    kernel = exponent.clamp_(min=-KERNEL_CUTOFF).exp_().sub_(math.exp(-KERNEL_CUTOFF))
    return dx, dy, distance, kernel.masked_fill_(dropped, 0)


class _LocalKernelSum(torch.autograd.Function):
    """``_PairwiseKernelSum`` over the candidates of each grid cell, dense (cells, rows, candidates) blocks.

    Gradient: each pair (row k, candidate j') adds ``-g_k b_j' G_kj'`` to its row point and
    ``+g_k b_j' G_kj'`` to the candidate (``G`` as in ``_PairwiseKernelSum``), by scatter-adds: the
    candidate lists need not be symmetric. Padding slots have g = 0 (rows) and b = 0 (candidates).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, points: Tensor, weights: Tensor, theta: float, cutoff: float, grid: _NeighbourGrid
    ) -> Tensor:
        flat_points = points.detach().reshape(-1, 2)
        flat_weights = weights.reshape(-1)
        sums = torch.zeros_like(flat_weights)  # (M * N,)
        for block in grid.blocks:
            row_index, row_valid, column_index, column_valid = _block_tables(grid, block)
            kernel = _block_kernel(flat_points, row_index, column_index, theta, cutoff)[3]  # (q, r, t)
            column_weights = flat_weights[column_index] * column_valid  # (q, t)
            block_sums = torch.bmm(kernel, column_weights[:, :, None])[..., 0]  # (q, r)
            sums.index_add_(0, row_index[row_valid], block_sums[row_valid])
        ctx.save_for_backward(points, weights)
        ctx.theta = theta  # type: ignore[attr-defined]
        ctx.cutoff = cutoff  # type: ignore[attr-defined]
        ctx.grid = grid  # type: ignore[attr-defined]
        return sums.view_as(weights)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_sums: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        points, weights = ctx.saved_tensors
        theta: float = ctx.theta
        flat_points = points.reshape(-1, 2)
        flat_weights = weights.reshape(-1)
        flat_grad_sums = grad_sums.reshape(-1)
        grad = torch.zeros_like(flat_points)  # (M * N, 2)
        for block in ctx.grid.blocks:
            row_index, row_valid, column_index, column_valid = _block_tables(ctx.grid, block)
            dx, dy, distance, kernel = _block_kernel(flat_points, row_index, column_index, theta, ctx.cutoff)
            row_grads = flat_grad_sums[row_index] * row_valid  # (q, r)
            column_weights = flat_weights[column_index] * column_valid  # (q, t)
            coefficient = kernel.div_(distance).mul_(row_grads[:, :, None]).mul_(column_weights[:, None, :])
            coefficient.mul_(1.0 / theta)  # (q, r, t): g_k b_j' k / (theta d)
            force_x, force_y = dx.mul_(coefficient), dy.mul_(coefficient)  # (q, r, t) g_k b_j' G_kj'
            column_force = torch.stack([force_x.sum(dim=1), force_y.sum(dim=1)], dim=-1)  # (q, t, 2)
            row_force = torch.stack([force_x.sum(dim=2), force_y.sum(dim=2)], dim=-1)  # (q, r, 2)
            grad.index_add_(0, column_index[column_valid], column_force[column_valid])
            grad.index_add_(0, row_index[row_valid], row_force[row_valid].neg_())
        return grad.view_as(points), None, None, None, None


def _blocks(views: int, count: int, chunk_size: int) -> list[tuple[slice, slice]]:
    """(views, rows) slices covering (M, N): whole views when ``chunk_size >= N``, else row blocks."""
    if count == 0:
        return []
    per_block = chunk_size // count
    if per_block >= 1:
        return [(slice(v, v + per_block), slice(0, count)) for v in range(0, views, per_block)]
    return [
        (slice(v, v + 1), slice(r, r + chunk_size)) for v in range(views) for r in range(0, count, chunk_size)
    ]


def _block_differences(points: Tensor, views: slice, rows: slice) -> tuple[Tensor, Tensor]:
    """``p_j - p_j'`` of one block: x and y parts, (m, c, N) each (rows j, all columns j')."""
    block = points[views]  # (m, N, 2)
    row_points = block[:, rows]  # (m, c, 2)
    dx = row_points[:, :, None, 0] - block[:, None, :, 0]  # (m, c, N)
    dy = row_points[:, :, None, 1] - block[:, None, :, 1]  # (m, c, N)
    return dx, dy


def _kernel_(distance: Tensor, rows: slice, theta: float, cutoff: float = KERNEL_CUTOFF) -> Tensor:
    """The truncated kernel in place of a block's distances (m, c, N), 0 on the diagonal j' = j.

    With ``cutoff < KERNEL_CUTOFF`` it is also 0 at ``d >= cutoff * theta``.
    """
    exponent = distance.mul_(-1.0 / theta)
    dropped = exponent <= -cutoff if cutoff < KERNEL_CUTOFF else None
    kernel = exponent.clamp_(min=-KERNEL_CUTOFF).exp_().sub_(math.exp(-KERNEL_CUTOFF))  # (m, c, N)
    if dropped is not None:
        kernel.masked_fill_(dropped, 0)
    index = torch.arange(kernel.shape[1], device=kernel.device)
    kernel[:, index, index + rows.start] = 0
    return kernel


class _PairwiseKernelSum(torch.autograd.Function):
    """Chunked ``sum_{j' != j} b_j' k(p_j, p_j')``, k the truncated ``exp(-d / theta)``.

    With upstream gradients g (M, N) and ``G_jj' = k_jj' / (theta d_jj') (p_j - p_j')`` (so that
    ``dk_jj'/dp_j = -G_jj'`` and ``dk_jj'/dp_j' = +G_jj'``), the gradient of point k is
    ``-sum_j' (g_k b_j' + b_k g_j') G_kj'``: its own row and its appearances as the other point. The
    differences are kept explicit (no ``sum c p_j' - p_k sum c`` cancellation for close pairs), and
    ``-dk/dd = k / theta`` holds for the truncated kernel up to ``exp(-KERNEL_CUTOFF) / theta``. Each block
    is a handful of in-place passes over (m, c, N) buffers: memory traffic is what a block costs.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, points: Tensor, weights: Tensor, theta: float, chunk_size: int, cutoff: float
    ) -> Tensor:
        views, count = weights.shape
        sums = torch.zeros_like(weights)  # (M, N)
        with torch.no_grad():
            for view_slice, row_slice in _blocks(views, count, chunk_size):
                dx, dy = _block_differences(points, view_slice, row_slice)  # (m, c, N) each
                distance = torch.hypot(dx, dy, out=dx).clamp_min_(DISTANCE_EPS)  # (m, c, N)
                kernel = _kernel_(distance, row_slice, theta, cutoff)  # (m, c, N)
                sums[view_slice, row_slice] = torch.bmm(kernel, weights[view_slice, :, None])[..., 0]
        ctx.save_for_backward(points, weights)
        ctx.theta = theta  # type: ignore[attr-defined]
        ctx.chunk_size = chunk_size  # type: ignore[attr-defined]
        ctx.cutoff = cutoff  # type: ignore[attr-defined]
        return sums

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_sums: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        points, weights = ctx.saved_tensors
        theta: float = ctx.theta
        views, count = weights.shape
        grad = torch.zeros_like(points)  # (M, N, 2)
        for view_slice, row_slice in _blocks(views, count, ctx.chunk_size):
            dx, dy = _block_differences(points, view_slice, row_slice)  # (m, c, N) each
            distance = torch.hypot(dx, dy).clamp_min_(DISTANCE_EPS)  # (m, c, N)
            coefficient = grad_sums[view_slice, row_slice, None] * weights[view_slice, None, :]  # (m, c, N)
            coefficient.addcmul_(weights[view_slice, row_slice, None], grad_sums[view_slice, None, :])
            coefficient.div_(distance)
            coefficient.mul_(_kernel_(distance, row_slice, theta, ctx.cutoff))  # (g_k b_j' + b_k g_j') k / d
            grad[view_slice, row_slice, 0] = dx.mul_(coefficient).sum(-1)
            grad[view_slice, row_slice, 1] = dy.mul_(coefficient).sum(-1)
        return grad.mul_(-1.0 / theta), None, None, None, None


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
