"""The kernel sum of ``training.ops.pairwise`` over near pairs only, found with a grid of cells.

``local_kernel_sum(points (M, N, 2), weights (M, N), theta, *, cutoff, chunk_size) -> (M, N)`` equals
``pairwise_kernel_sum(..., cutoff=cutoff)`` (values and gradients) in time and memory O(candidate pairs)
rather than O(N^2). Pairs at ``d >= cutoff * theta`` are dropped; each had a kernel below ``exp(-cutoff)``
of its peak (4.5e-5 at cutoff 10): a point's sum is off by less than ``exp(-cutoff)`` times the weight of
the points it drops, and the force of each dropped pair is below ``exp(-cutoff) / theta``.
``cutoff >= KERNEL_CUTOFF`` drops nothing the truncation did not already zero.

The weighted points of each set are binned into square cells of side ``cutoff * theta /
LOCAL_SUBDIVISION`` and sorted by (set, cell); a point's candidates are the points of the
``(2 s + 1)^2`` cells around its own (s = ``LOCAL_SUBDIVISION``), read as ``2 s + 1`` runs of consecutive
cells of the sorted order. The candidate pairs are processed in padded (cells, rows, candidates) blocks of
about ``chunk_size * N`` pairs, forward and backward (``_LocalKernelSum``: scatter-adds of both points'
gradients). When the candidate pairs exceed ``LOCAL_FALLBACK_SHARE`` of all pairs (points crowded in a few
cells) the chunked all-pairs path runs instead, with the same truncation at the cutoff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from training.ops.pairwise import (
    DEFAULT_CHUNK_SIZE,
    DISTANCE_EPS,
    KERNEL_CUTOFF,
    all_pairs_kernel_sum,
    check_cutoff,
    check_pairwise_arguments,
    points_only_backward,
)

LOCAL_SUBDIVISION = 2
"""Cells per cutoff distance of the neighbour grid of ``local_kernel_sum`` (candidates in 5 x 5 cells)."""

LOCAL_GROUP_ROWS = 16
"""Rows of one grid cell handled together by ``local_kernel_sum`` (a cell's rows are split in groups)."""

LOCAL_FALLBACK_SHARE = 0.25
"""``local_kernel_sum`` runs the all-pairs path when its candidate pairs exceed this share of all pairs."""

_CELL_MARGIN = 1e-4
"""Relative enlargement of the grid cells: rounding never moves a pair closer than the cutoff out of reach."""


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
    check_pairwise_arguments(points, weights, chunk_size)
    check_cutoff(cutoff)
    return near_pairs_kernel_sum(points, weights, theta, cutoff, chunk_size, weighted_rows_only=False)


def near_pairs_kernel_sum(
    points: Tensor, weights: Tensor, theta: float, cutoff: float, chunk_size: int, *, weighted_rows_only: bool
) -> Tensor:
    """``local_kernel_sum`` without the argument checks; with ``weighted_rows_only`` the sums of points of
    weight 0 are left at 0 (and get no gradient)."""
    weights = weights.detach().to(points.dtype)
    views, count = weights.shape
    flat_weights = weights.reshape(-1)
    if weighted_rows_only:
        rows = flat_weights.nonzero()[:, 0]  # (R,) flat indices
    else:
        rows = torch.arange(views * count, device=points.device)
    reach = min(cutoff, KERNEL_CUTOFF) * theta
    grid = neighbour_grid(points.detach(), flat_weights, rows, reach, chunk_size * count)
    if grid is None:
        return all_pairs_kernel_sum(points, weights, theta, chunk_size, cutoff)
    result: Tensor = _LocalKernelSum.apply(points, weights, theta, cutoff, grid)
    return result


@dataclass
class NeighbourGrid:
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


def neighbour_grid(
    points: Tensor, weights: Tensor, rows: Tensor, reach: float, budget: int
) -> NeighbourGrid | None:
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
        return NeighbourGrid(none, none, none, none, none.view(0, 2 * s + 1), none.view(0, 2 * s + 1), [])
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
    return NeighbourGrid(rows, row_starts, row_counts, columns, run_starts, run_counts, blocks)


def _block_tables(
    grid: NeighbourGrid, block: tuple[Tensor, int, int]
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


def _local_points_gradient(ctx: Any, points: Tensor, weights: Tensor, grad_sums: Tensor) -> Tensor:
    """The points' gradient of ``_LocalKernelSum`` (its docstring), block by block."""
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
    return grad.view_as(points)


class _LocalKernelSum(torch.autograd.Function):
    """``_PairwiseKernelSum`` over the candidates of each grid cell, dense (cells, rows, candidates) blocks.

    Gradient: each pair (row k, candidate j') adds ``-g_k b_j' G_kj'`` to its row point and
    ``+g_k b_j' G_kj'`` to the candidate (``G`` as in ``_PairwiseKernelSum``), by scatter-adds: the
    candidate lists need not be symmetric. Padding slots have g = 0 (rows) and b = 0 (candidates).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, points: Tensor, weights: Tensor, theta: float, cutoff: float, grid: NeighbourGrid
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
        return points_only_backward(ctx, grad_sums, _local_points_gradient)
