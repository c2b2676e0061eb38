"""The kernel sum of ``training.ops.pairwise`` over near pairs only, found with a grid of cells.

``local_kernel_sum(points (M, N, 2), weights (M, N), theta, *, cutoff, chunk_size) -> (M, N)`` equals
``pairwise_kernel_sum(..., cutoff=cutoff)`` (values and gradients) in time O(candidate pairs) rather than
O(N^2). Pairs at ``d >= cutoff * theta`` are dropped; each had a kernel below ``exp(-cutoff)`` of its peak
(4.5e-5 at cutoff 10): a point's sum is off by less than ``exp(-cutoff)`` times the weight of the points
it drops, and the force of each dropped pair is below ``exp(-cutoff) / theta``. ``cutoff >=
KERNEL_CUTOFF`` drops nothing the truncation did not already zero.

Both paths start from ``training.ops.cell_grid.build_cell_grid`` (fixed shapes, on the device): the
points of each set sorted by cells of side ``>= reach / LOCAL_SUBDIVISION``, a point's candidates being
``2 s + 1`` runs of consecutive sorted positions (s = ``LOCAL_SUBDIVISION``). With row weights b and
upstream gradients g, the gradient of point k is
``-1 / theta * sum_j' (g_k b_j' + b_k g_j') k_kj' / d_kj' (p_k - p_j')``.

- Triton (``training.ops.triton_kernel_sum``; CUDA tensors with Triton installed): one program per cell
  and all its candidates, loop bounds read on the device: no host synchronisation, fixed launch shapes,
  no per-pair memory; the candidate sets are symmetric, so the backward is the same gather (no
  atomics). A launch that fails (a GPU Triton cannot compile for) falls back to the PyTorch path.
- PyTorch (everything else; meant for CPUs): the occupied cell rows are read on the host (``nonzero``,
  one list of sizes) and cut into groups of at most ``LOCAL_GROUP_ROWS`` consecutive sorted rows. Each
  pair is evaluated once, in the group of its earlier point (``plan_blocks``: the forward half of the
  cell block, ``column > row``), and gives to both points; groups are evaluated in padded (groups, rows,
  candidates) blocks of about ``LOCAL_BLOCK_ELEMENTS`` pairs in reused buffers (cache-sized: passes over
  them are what a block costs). When the candidate pairs exceed ``LOCAL_FALLBACK_SHARE`` of all pairs
  (points crowded in a few cells) the chunked all-pairs path runs instead, truncated at the cutoff.

The self-pair (j' = j) is excluded: masked by the Triton kernels, never a candidate (``column > row``)
of the PyTorch blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from training.ops.cell_grid import CellGrid, build_cell_grid
from training.ops.pairwise import (
    DEFAULT_CHUNK_SIZE,
    DISTANCE_EPS,
    KERNEL_CUTOFF,
    all_pairs_kernel_sum,
    check_cutoff,
    check_pairwise_arguments,
)
from training.ops.triton_kernel_sum import mark_triton_failed, triton_available, triton_near_sums

LOCAL_SUBDIVISION = 2
"""Cells per cutoff distance of the neighbour grid (a point's candidates in 5 x 5 cells)."""

LOCAL_GROUP_ROWS = 8
"""Consecutive sorted rows of one cell row handled together by the PyTorch path."""

LOCAL_BLOCK_ELEMENTS = 1 << 18
"""Padded (groups, rows, candidates) elements per block of the PyTorch path (cache-sized buffers)."""

LOCAL_SAVED_ELEMENTS = 1 << 25
"""The PyTorch path keeps ``k / d`` of every padded pair for its backward up to this many pairs (one
number each), else the backward recomputes the kernel."""

SCALE = math.log2(math.e)
"""Coordinates times ``SCALE / theta``: the kernel is ``exp2(-d)`` (``_kernel_block``)."""

LOCAL_FALLBACK_SHARE = 0.25
"""The PyTorch path runs all pairs when its candidate pairs exceed this share of all pairs."""

GRID_EXTENT = 1.0
"""Default half side of the grid's window around each set's median, in the points' units
(``build_cell_grid``); any extent gives the right sums."""

Implementation = Literal["auto", "triton", "torch"]
"""``auto``: Triton where ``triton_available``, else PyTorch."""


def local_kernel_sum(
    points: Tensor,
    weights: Tensor,
    theta: float,
    *,
    cutoff: float,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    implementation: Implementation = "auto",
) -> Tensor:
    """``pairwise_kernel_sum(..., cutoff=cutoff)`` over the pairs closer than ``cutoff * theta`` only.

    Equal to the all-pairs sum with the kernel truncated at the cutoff (values and gradients): neighbour
    grid of the module docstring. Points of weight 0 are no one's neighbours' weight (they add nothing)
    but get their own sum and its gradient.

    Args:
        points: (M, N, 2) points of M independent sets (the distance is ``max(|dp|, DISTANCE_EPS)``).
        weights: (M, N) weights of the other points (detached here).
        theta: kernel decay, in the points' units.
        cutoff: pairs at ``d >= cutoff * theta`` are dropped; each had a kernel below ``exp(-cutoff)``.
        chunk_size: rows per block of the all-pairs fallback of the PyTorch path.
        implementation: ``auto``, ``triton`` or ``torch`` (module docstring).

    Returns:
        (M, N).
    """
    check_pairwise_arguments(points, weights, chunk_size)
    check_cutoff(cutoff)
    return near_pairs_kernel_sum(
        points, weights, theta, cutoff, chunk_size, weighted_rows_only=False, implementation=implementation
    )


def near_pairs_kernel_sum(
    points: Tensor,
    weights: Tensor,
    theta: float,
    cutoff: float,
    chunk_size: int,
    *,
    weighted_rows_only: bool,
    implementation: Implementation = "auto",
    extent: float = GRID_EXTENT,
    centre: float | None = None,
) -> Tensor:
    """``local_kernel_sum`` without the argument checks; with ``weighted_rows_only`` the sums of points of
    weight 0 are left at 0 (and get no gradient). ``extent`` and ``centre``: the grid's window
    (``build_cell_grid``; any window gives the same sums, a tight one is faster)."""
    if implementation not in ("auto", "triton", "torch"):
        raise ValueError(f"implementation must be 'auto', 'triton' or 'torch', got {implementation!r}")
    weights = weights.detach().to(points.dtype)
    reach = min(cutoff, KERNEL_CUTOFF) * theta
    in_grid = weights > 0 if weighted_rows_only else torch.ones_like(weights, dtype=torch.bool)  # (M, N)
    use_triton = implementation == "triton" or (implementation == "auto" and triton_available(points))
    if use_triton and not triton_available(points):
        raise RuntimeError(f"the Triton kernels cannot run on a {points.device.type} tensor here")
    if points.numel() == 0:
        return torch.zeros_like(weights) + points.sum() * 0
    grid = build_cell_grid(
        points.detach(), in_grid, reach, spread=LOCAL_SUBDIVISION, extent=extent, centre=centre
    )
    if use_triton:
        try:
            return triton_near_sums(points, weights, theta, cutoff, grid)
        except Exception as error:  # compile or launch failure: the PyTorch path, unless asked for Triton
            if implementation == "triton":
                raise
            mark_triton_failed(error)
    plan = plan_blocks(grid, weights.shape[0], weights.shape[1])
    if plan is None:
        sums = all_pairs_kernel_sum(points, weights, theta, chunk_size, cutoff)
        return sums * in_grid if weighted_rows_only else sums
    result: Tensor = _LocalKernelSum.apply(points, weights, theta, cutoff, plan)
    return result


@dataclass
class BlockPlan:
    """Row groups of the occupied cells and their forward candidate runs, cut into padded blocks.

    Attributes:
        grid: the sorted layout.
        row_counts: (Q,) rows of each group (at most LOCAL_GROUP_ROWS).
        candidates: (Q,) candidate columns of each group (before the ``column > row`` mask).
        blocks: per block, sorted positions ``rows (q, r)``, ``columns (q, t)`` (padding slots repeat a
            valid position) and their validity ``row_valid (q, r)``, ``column_valid (q, t)`` (bool).
    """

    grid: CellGrid
    row_counts: Tensor
    candidates: Tensor
    blocks: list[tuple[Tensor, Tensor, Tensor, Tensor]]

    @property
    def padded_pairs(self) -> int:
        """Elements of all blocks' (q, r, t) buffers."""
        return sum(map(block_elements, self.blocks))


def plan_blocks(grid: CellGrid, views: int, count: int) -> BlockPlan | None:
    """The PyTorch path's blocks (host-side sizes: meant for CPUs), or None when all pairs are cheaper.

    Groups are up to ``LOCAL_GROUP_ROWS`` consecutive sorted rows of one cell row, spanning cells
    ``x0..x1``. Each pair of grid points closer than the reach is evaluated once, in the group of its
    earlier point in the sorted order: a group's candidates are ``s + 1`` runs, its own cell row from its
    first row to the end of cell ``x1 + s``, and cells ``x0 - s .. x1 + s`` of each of the s following
    cell rows; ``column > row`` is masked in the kernel.

    Args:
        grid: ``build_cell_grid``'s layout of (views, count) points.
        views, count: M and N.
    """
    device = grid.cell_start.device
    n, s = grid.cells, grid.spread
    # segments: the sorted positions of one cell row of one set, cut into groups of LOCAL_GROUP_ROWS
    segment_first = grid.cell_start[:-1:n]  # (M * n,) first position of each (set, cell row)
    segment_length = grid.cell_start[n::n] - segment_first
    occupied = segment_length.nonzero()[:, 0]  # (S',) host sync: the PyTorch path plans on the host
    lengths = segment_length[occupied]
    segment_groups = torch.div(lengths + LOCAL_GROUP_ROWS - 1, LOCAL_GROUP_ROWS, rounding_mode="floor")
    group_segment = torch.repeat_interleave(segment_groups)  # (Q,) occupied-segment rank of each group
    first_group = segment_groups.cumsum(0) - segment_groups
    within = torch.arange(group_segment.numel(), device=device) - first_group[group_segment]
    segment = occupied[group_segment]  # (Q,) segment ids: set * n + cell row
    row_starts = segment_first[segment] + within * LOCAL_GROUP_ROWS  # (Q,)
    row_counts = (lengths[group_segment] - within * LOCAL_GROUP_ROWS).clamp_(max=LOCAL_GROUP_ROWS)
    row_first_cell = segment * n  # (Q,) cell id of x = 0 in the group's cell row
    # cells of the group's first and last rows (the last cell starting at or before a position)
    first_x = torch.searchsorted(grid.cell_start, row_starts, right=True) - 1 - row_first_cell
    last_x = torch.searchsorted(grid.cell_start, row_starts + row_counts - 1, right=True) - 1 - row_first_cell
    low_x = (first_x - s).clamp_(min=0)[:, None]  # (Q, 1)
    high_x = (last_x + s).clamp_(max=n - 1)[:, None]
    cy = segment % n
    yy = cy[:, None] + torch.arange(0, s + 1, device=device)  # (Q, s + 1) cell rows of the runs
    row = (segment - cy)[:, None] * n + yy.clamp(max=n - 1) * n  # (Q, s + 1) cell id of x = 0
    run_starts = grid.cell_start[row + low_x]  # (Q, s + 1)
    run_starts[:, 0] = row_starts  # own cell row: from the group's first row on
    run_ends = grid.cell_start[row + high_x + 1]
    run_counts = torch.where(yy < n, run_ends - run_starts, torch.zeros_like(run_starts))
    candidates = run_counts.sum(dim=1)  # (Q,)
    if float((row_counts * candidates).sum()) > LOCAL_FALLBACK_SHARE * views * count * count / 2:
        return None
    # blocks: groups by decreasing (rows, candidates); a block holds groups of one row count, as many as
    # the budget allows at the width of its first (widest) group
    by_size = (row_counts * (count + 1) + candidates).argsort(descending=True)
    sorted_rows = row_counts[by_size]
    class_ends = torch.unique_consecutive(sorted_rows, return_counts=True)[1].cumsum(0).tolist()
    widths = candidates[by_size].tolist()
    heights = sorted_rows.tolist()
    bounds: list[tuple[int, int, int, int]] = []  # (first, end, rows, width) in by_size
    start = 0
    for class_end in class_ends:
        while start < class_end:
            height, width = heights[start], widths[start]
            end = min(class_end, start + max(1, LOCAL_BLOCK_ELEMENTS // max(height * width, 1)))
            bounds.append((start, end, height, width))
            start = end
    tables = [row_starts[by_size], sorted_rows, run_starts[by_size], run_counts[by_size]]  # by size
    starts, counts, group_run_starts, group_run_counts = tables
    blocks = [
        _block_tables(
            starts[first:end],
            counts[first:end],
            group_run_starts[first:end],
            group_run_counts[first:end],
            height,
            width,
        )
        for first, end, height, width in bounds
        if width > 0
    ]
    return BlockPlan(grid, row_counts, candidates, blocks)


def _block_tables(
    row_starts: Tensor, row_counts: Tensor, run_starts: Tensor, run_counts: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Padded sorted positions of a block's rows (q, r) and candidates (q, t), with validity masks, from
    its groups' (q,) row starts and counts and (q, runs) run starts and counts; padding slots repeat a
    valid position."""
    device = row_starts.device
    row_slot = torch.arange(height, device=device)
    counts = row_counts[:, None]  # (q, 1)
    row_valid = row_slot < counts  # (q, r)
    rows = row_starts[:, None] + torch.minimum(row_slot, counts - 1)
    group_runs = run_counts  # (q, runs)
    group_starts = run_starts
    run_ends = group_runs.cumsum(1)  # (q, runs)
    total = run_ends[:, -1:]  # (q, 1)
    slot = torch.arange(width, device=device)
    column_valid = slot < total  # (q, t)
    slot = torch.minimum(slot, total - 1)  # padding repeats the last candidate
    columns = group_starts[:, :1] + slot  # (q, t), first run
    for run in range(1, group_runs.shape[1]):  # later runs: where the slot is past the earlier runs
        previous_end = run_ends[:, run - 1 : run]  # (q, 1)
        columns = torch.where(
            slot >= previous_end, group_starts[:, run : run + 1] + slot - previous_end, columns
        )
    return rows, row_valid, columns, column_valid


def _take(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for a 1-D ``values`` (index_select on the flat index)."""
    return values.index_select(0, index.reshape(-1)).view(index.shape)


class _Workspace:
    """Reused (LOCAL_BLOCK_ELEMENTS,) buffers of one call: blocks take (q, r, t) views of them (no
    allocation per block, the buffers stay in the CPU caches)."""

    def __init__(self, like: Tensor, size: int) -> None:
        self.buffers = [torch.empty(size, dtype=like.dtype, device=like.device) for _ in range(4)]

    def views(self, shape: tuple[int, int, int]) -> list[Tensor]:
        count = shape[0] * shape[1] * shape[2]
        return [buffer[:count].view(shape) for buffer in self.buffers]


def _differences(
    xs: Tensor, ys: Tensor, rows: Tensor, columns: Tensor, dx: Tensor, dy: Tensor
) -> tuple[Tensor, Tensor]:
    """``p_r - p_c`` of a block into the (q, r, t) buffers dx and dy."""
    torch.sub(_take(xs, rows)[:, :, None], _take(xs, columns)[:, None, :], out=dx)
    torch.sub(_take(ys, rows)[:, :, None], _take(ys, columns)[:, None, :], out=dy)
    return dx, dy


def _kernel_block(
    xs: Tensor, ys: Tensor, rows: Tensor, columns: Tensor, cutoff: float, eps: float, buffers: list[Tensor]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx, dy, distance and kernel (q, r, t) of a block, written into ``buffers``; coordinates and
    distances in units of ``theta / log2(e)`` (``xs``, ``ys`` scaled by ``SCALE / theta``, ``eps =
    DISTANCE_EPS * SCALE / theta``), so that the kernel is ``exp2(-d)`` (``exp2`` is about 3x cheaper
    than ``exp`` on CPUs; in float32 the result differs by about ``d * 2**-24`` relative).

    The kernel is ``exp2(-d) - exp(-KERNEL_CUTOFF)`` where ``exp2(-d) > exp(-cutoff')``,
    ``cutoff' = min(cutoff, KERNEL_CUTOFF)``, else 0, and 0 where ``column <= row``. In float32 with
    ``cutoff' <= 20`` the subtraction is skipped: it is below half an ulp of every kept value.
    """
    dx, dy, distance, kernel = buffers
    _differences(xs, ys, rows, columns, dx, dy)
    torch.mul(dx, dx, out=distance).addcmul_(dy, dy).sqrt_().clamp_min_(eps)
    torch.neg(distance, out=kernel)
    reach = min(cutoff, KERNEL_CUTOFF)
    if reach > 20:  # far candidates: keep exp2 out of its slow underflow range
        kernel.clamp_(min=-(KERNEL_CUTOFF + 1) * SCALE)
    kernel.exp2_()
    floor = math.exp(-KERNEL_CUTOFF)
    if xs.dtype == torch.float32 and reach <= 20:
        torch.threshold_(kernel, math.exp(-reach), 0.0)
    else:
        torch.threshold_(kernel.sub_(floor), math.exp(-reach) - floor, 0.0)
    # columns past the rows' own slots are later in the sorted order: only the first r can be <= a row
    head = min(rows.shape[1], columns.shape[1])
    kernel[:, :, :head].masked_fill_(columns[:, None, :head] <= rows[:, :, None], 0.0)
    return dx, dy, distance, kernel


class _LocalKernelSum(torch.autograd.Function):
    """The PyTorch path: every candidate pair once (``column > row``), in padded blocks, both directions.

    Forward: per block, ``sums_r += sum_c b_c k_rc`` and ``sums_c += sum_r b_r k_rc``; it keeps ``k / d``
    for the backward (``LOCAL_SAVED_ELEMENTS``; else the backward recomputes it). Backward: with
    ``A = k / d * (p_r - p_c)`` (any units: the scale cancels), pair (r, c) adds ``(g_r b_c + b_r g_c) A``
    to r and subtracts it from c, all times ``-1 / theta`` (sums of the (q, r, t) products over t and over
    r). Padding slots have b = g = 0. Everything is in the grid's sorted order and scattered back at the
    end; the points outside the grid get 0 and no gradient.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, points: Tensor, weights: Tensor, theta: float, cutoff: float, plan: BlockPlan
    ) -> Tensor:
        order = plan.grid.order
        scaled = points.detach().reshape(-1, 2)[order] * (SCALE / theta)  # (P, 2) sorted, exp2 units
        xs, ys = scaled[:, 0].contiguous(), scaled[:, 1].contiguous()
        ws = weights.reshape(-1)[order].contiguous()  # (P,)
        sorted_sums = torch.zeros_like(ws)  # (P,)
        workspace = _Workspace(xs, max(map(block_elements, plan.blocks), default=0))
        needs_grad: bool = ctx.needs_input_grad[0]  # type: ignore[attr-defined]
        total = plan.padded_pairs
        keep = needs_grad and total <= LOCAL_SAVED_ELEMENTS
        kept = torch.empty(total if keep else 0, dtype=xs.dtype, device=xs.device)  # k / d of every block
        offset = 0
        for rows, row_valid, columns, column_valid in plan.blocks:
            shape = (rows.shape[0], rows.shape[1], columns.shape[1])
            buffers = workspace.views(shape)
            _, _, distance, kernel = _kernel_block(
                xs, ys, rows, columns, cutoff, DISTANCE_EPS * SCALE / theta, buffers
            )  # (q, r, t) each; the differences' buffers are free again
            row_weights = _take(ws, rows) * row_valid  # (q, r)
            column_weights = _take(ws, columns) * column_valid  # (q, t)
            # products and sums rather than (q,) batches of tiny matrix products: faster on CPUs
            row_sums = torch.mul(kernel, column_weights[:, None, :], out=buffers[0]).sum(-1)  # (q, r)
            column_sums = torch.mul(kernel, row_weights[:, :, None], out=buffers[1]).sum(1)  # (q, t)
            sorted_sums.index_add_(0, rows.reshape(-1), (row_sums * row_valid).reshape(-1))
            sorted_sums.index_add_(0, columns.reshape(-1), (column_sums * column_valid).reshape(-1))
            if keep:
                count = shape[0] * shape[1] * shape[2]
                torch.div(kernel, distance, out=kept[offset : offset + count].view(shape))
                offset += count
        sums = torch.empty_like(sorted_sums).index_copy_(0, order, sorted_sums)
        ctx.save_for_backward(xs, ys, ws, kept)
        ctx.theta = theta  # type: ignore[attr-defined]
        ctx.cutoff = cutoff  # type: ignore[attr-defined]
        ctx.plan = plan  # type: ignore[attr-defined]
        ctx.keep = keep  # type: ignore[attr-defined]
        return sums.view_as(weights)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_sums: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        xs, ys, ws, kept = ctx.saved_tensors
        plan: BlockPlan = ctx.plan
        theta: float = ctx.theta
        order = plan.grid.order
        gs = grad_sums.reshape(-1)[order].to(xs.dtype).contiguous()  # (P,) sorted
        sorted_grad = torch.zeros(2, xs.numel(), dtype=xs.dtype, device=xs.device)  # (2, P): x, y
        workspace = _Workspace(xs, max(map(block_elements, plan.blocks), default=0))
        offset = 0
        for rows, row_valid, columns, column_valid in plan.blocks:
            shape = (rows.shape[0], rows.shape[1], columns.shape[1])
            buffers = workspace.views(shape)
            if ctx.keep:  # k / d from the forward; the differences again
                count = shape[0] * shape[1] * shape[2]
                coefficient = kept[offset : offset + count].view(shape)  # (q, r, t) k / d
                offset += count
                dx, dy = _differences(xs, ys, rows, columns, buffers[0], buffers[1])
            else:
                dx, dy, distance, kernel = _kernel_block(
                    xs, ys, rows, columns, ctx.cutoff, DISTANCE_EPS * SCALE / theta, buffers
                )
                coefficient = kernel.div_(distance)  # (q, r, t) k / d
            row_w, row_g = _take(ws, rows) * row_valid, _take(gs, rows) * row_valid  # (q, r)
            column_w = _take(ws, columns) * column_valid  # (q, t)
            column_g = _take(gs, columns) * column_valid
            # (g_r b_c + b_r g_c) k / d, then times dx or dy: summed over c for r, over r for c
            pair = torch.mul(row_g[:, :, None], column_w[:, None, :], out=buffers[2])  # (q, r, t)
            pair.addcmul_(row_w[:, :, None], column_g[:, None, :]).mul_(coefficient)
            row_index, column_index = rows.reshape(-1), columns.reshape(-1)
            for axis, difference in enumerate((dx, dy)):
                force = difference.mul_(pair)  # (q, r, t)
                sorted_grad[axis].index_add_(0, row_index, force.sum(-1).view(-1))
                sorted_grad[axis].index_add_(0, column_index, force.sum(1).view(-1), alpha=-1)
        sorted_grad.mul_(-1.0 / theta)
        grad = torch.empty_like(sorted_grad.T).index_copy_(0, order, sorted_grad.T)  # (P, 2)
        return grad.view(*grad_sums.shape, 2), None, None, None, None


def block_elements(block: tuple[Tensor, Tensor, Tensor, Tensor]) -> int:
    """q * r * t of a block."""
    return block[0].shape[0] * block[0].shape[1] * block[2].shape[1]
