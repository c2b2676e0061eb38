"""Chunked sums of a truncated exponential kernel over all pairs of 2-D points, with a custom backward.

``pairwise_kernel_sum(points (M, N, 2), weights (M, N), theta, *, chunk_size, cutoff) -> (M, N)``: for
every point j of each of M independent sets, ``sum_{j' != j} weights_j' * k(|p_j - p_j'|)`` with
``k(d) = max(exp(-d / theta) - exp(-KERNEL_CUTOFF), 0)`` and d floored at ``DISTANCE_EPS``; with
``cutoff`` below ``KERNEL_CUTOFF``, pairs at ``d >= cutoff * theta`` count 0 too. Gradients reach the
points (both points of every pair), never the weights. The repulsion term of the effective loss
(``training.losses.effective.second_term``, eq. 5) is its user; ``training.ops.neighbour_grid`` sums the
same kernel over near pairs only and falls back to this.

The truncation (docs/effective_loss_tuning.md, reading 3) changes the kernel by 4e-18 and makes it exactly
0 beyond 40 theta: ``exp`` of arguments below about -87 (float32 underflow) is several times slower on
CPUs. Memory: no N x N matrix is held. ``_PairwiseKernelSum`` is a custom autograd function whose forward
and backward both loop over blocks of ``chunk_size`` rows (several sets per block when
``chunk_size >= N``), recomputing the kernel in backward; peak memory is O(chunk_size * N).
``points_only_backward`` is the backward it shares with ``neighbour_grid``'s kernel sum: the points'
gradient when they need one, none for the weights and the settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

DEFAULT_CHUNK_SIZE = 1024
"""Rows of the pairwise matrix handled at once by ``pairwise_kernel_sum``."""

DISTANCE_EPS = 1e-8
"""Floor of the pairwise distance: ``d = max(|dp|, eps)`` (coincident points get a zero gradient)."""

KERNEL_CUTOFF = 40.0
"""The kernel is ``max(exp(-d / theta) - exp(-40), 0)``: exactly 0 beyond d = 40 theta (reading 3)."""


def pairwise_kernel_sum(
    points: Tensor, weights: Tensor, theta: float, *, chunk_size: int, cutoff: float = KERNEL_CUTOFF
) -> Tensor:
    """``sum_{j' != j} weights_j' * exp(-|points_j - points_j'| / theta)`` for every j, chunked.

    The kernel is truncated at ``KERNEL_CUTOFF`` (module docstring); with ``cutoff`` below it,
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
    check_pairwise_arguments(points, weights, chunk_size)
    check_cutoff(cutoff)
    return all_pairs_kernel_sum(points, weights, theta, chunk_size, cutoff)


def check_pairwise_arguments(points: Tensor, weights: Tensor, chunk_size: int) -> None:
    """``ValueError`` unless points are (M, N, 2), weights (M, N) and chunk_size a positive int."""
    if points.dim() != 3 or points.shape[-1] != 2 or weights.shape != points.shape[:-1]:
        raise ValueError(f"expected points (M, N, 2) and weights (M, N), got {tuple(points.shape)} and "
                         f"{tuple(weights.shape)}")  # fmt: skip
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def check_cutoff(cutoff: float | None) -> None:
    """``ValueError`` unless cutoff is None or a positive finite number (units of theta)."""
    if cutoff is not None and not (cutoff > 0 and math.isfinite(cutoff)):
        raise ValueError(f"cutoff must be None or a positive finite number (units of theta), got {cutoff}")


def all_pairs_kernel_sum(
    points: Tensor, weights: Tensor, theta: float, chunk_size: int, cutoff: float
) -> Tensor:
    """``pairwise_kernel_sum`` without the argument checks (callers that have checked them)."""
    result: Tensor = _PairwiseKernelSum.apply(
        points, weights.detach().to(points.dtype), theta, chunk_size, cutoff
    )
    return result


def points_only_backward(
    ctx: Any, grad_sums: Tensor, points_gradient: Callable[[Any, Tensor, Tensor, Tensor], Tensor]
) -> tuple[Tensor | None, None, None, None, None]:
    """The backward of a kernel sum ``forward(ctx, points, weights, theta, a, b)`` that saved ``points`` and
    ``weights``: ``points_gradient(ctx, points, weights, grad_sums)`` for the points when they need one,
    nothing for the weights and the settings."""
    if not ctx.needs_input_grad[0]:
        return None, None, None, None, None
    points, weights = ctx.saved_tensors
    return points_gradient(ctx, points, weights, grad_sums), None, None, None, None


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


def _pairwise_points_gradient(ctx: Any, points: Tensor, weights: Tensor, grad_sums: Tensor) -> Tensor:
    """The points' gradient of ``_PairwiseKernelSum`` (its docstring), block by block."""
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
    return grad.mul_(-1.0 / theta)


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
        return points_only_backward(ctx, grad_sums, _pairwise_points_gradient)
