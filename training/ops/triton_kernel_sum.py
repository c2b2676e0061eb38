"""Triton kernels of the neighbour-limited kernel sum: one program per grid cell, no host synchronisation.

``triton_near_sums(points (M, N, 2), weights (M, N), theta, cutoff, grid: CellGrid) -> (M, N)`` is
``training.ops.pairwise.pairwise_kernel_sum(..., cutoff=cutoff)`` restricted to the grid points of
``grid`` (``training.ops.cell_grid``): ``sum_{j' != j} b_j' k(|p_j - p_j'|)`` with
``k(d) = exp(-d / theta) - exp(-KERNEL_CUTOFF)`` for ``d < min(cutoff, KERNEL_CUTOFF) * theta`` and 0
beyond, d floored at ``DISTANCE_EPS``; points outside the grid get 0 (and no gradient). Gradients reach
the points only, as in ``pairwise._PairwiseKernelSum``.

Each program owns one cell of one set: it loops over its sorted rows in blocks of ``BLOCK_ROWS`` and, for
each of the ``2 spread + 1`` runs of neighbouring cells, over the run's sorted columns in blocks of
``BLOCK_COLUMNS``, evaluating the (rows, columns) tile in registers; loop bounds are read on the device,
so the launch has fixed shapes (``M * n * n`` programs) and nothing waits for the host. Because the
neighbourhood of the cells is symmetric, the backward is the same gather: the gradient of row k is
``-1 / theta * sum_j' (g_k b_j' + b_k g_j') k_kj' / d_kj' (p_k - p_j')`` over its own candidates (no
atomics). Work: O(candidate pairs), memory O(M * N) (nothing per pair is stored).

Triton is optional: ``triton_available()`` says whether the kernels can run on a tensor (a CUDA tensor
with Triton installed, or any tensor under ``TRITON_INTERPRET=1``, which must be set before triton is
first imported: the tests run the interpreter on CPU tensors in a subprocess). Callers fall back to the
PyTorch path otherwise (``training.ops.neighbour_grid``), and also when a launch fails (a GPU Triton
cannot compile for: ``mark_triton_failed`` warns once and disables the kernels for the process).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from training.ops.cell_grid import CellGrid
from training.ops.pairwise import DISTANCE_EPS, KERNEL_CUTOFF

try:  # optional: the PyTorch path runs without it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

BLOCK_ROWS = 32
"""Rows of a cell evaluated together by one program."""

BLOCK_COLUMNS = 64
"""Columns of a run of neighbouring cells evaluated together."""


_FAILURES: list[str] = []
"""Why the kernels failed to compile or launch in this process (``mark_triton_failed``), if they did."""


def triton_available(points: Tensor) -> bool:
    """Whether the Triton kernels can run on ``points``: Triton imported, the kernels not failed before in
    this process, and the tensor on a CUDA device (or any device under ``TRITON_INTERPRET=1``)."""
    if triton is None or _FAILURES:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return points.is_cuda


def mark_triton_failed(error: BaseException) -> None:
    """Record that the kernels could not run here (e.g. a GPU Triton cannot compile for): warn once;
    ``triton_available`` is False from then on, and callers use the PyTorch path."""
    if not _FAILURES:
        warnings.warn(
            f"the Triton kernels of the effective loss failed ({error!r}); using the PyTorch path",
            RuntimeWarning,
            stacklevel=3,
        )
    _FAILURES.append(repr(error))


if triton is not None:

    @triton.jit
    def _pair_kernel(xr, yr, rows, xc, yc, cols, inv_theta, low_exponent, floor_value, EPS: tl.constexpr):
        """Offsets dx, dy (R, C), distances (R, C) (at least EPS) and the truncated kernel value
        ``exp(-d / theta) - floor`` of rows (R,) against columns (C,): 0 beyond the cutoff and on the
        diagonal (a point with itself)."""
        dx = xr[:, None] - xc[None, :]
        dy = yr[:, None] - yc[None, :]
        distance = tl.maximum(tl.sqrt(dx * dx + dy * dy), EPS)
        exponent = -distance * inv_theta
        keep = (exponent > low_exponent) & (rows[:, None] != cols[None, :])
        return dx, dy, distance, tl.where(keep, tl.exp(exponent) - floor_value, 0.0)

    @triton.jit
    def _cell_runs(cell_start, cell, cells, dy_index, SPREAD: tl.constexpr):
        """Sorted positions [start, end) of the run of cells ``dy_index - SPREAD`` rows from ``cell``."""
        per_set = cells * cells
        base = (cell // per_set) * per_set
        within = cell % per_set
        cy = within // cells
        cx = within % cells
        yy = cy + dy_index - SPREAD
        valid = (yy >= 0) & (yy < cells)
        row = tl.minimum(tl.maximum(yy, 0), cells - 1)
        first = tl.maximum(cx - SPREAD, 0)
        last = tl.minimum(cx + SPREAD, cells - 1)
        start = tl.load(cell_start + base + row * cells + first)
        end = tl.load(cell_start + base + row * cells + last + 1)
        return start, tl.where(valid, end, start)

    @triton.jit
    def _near_sums_kernel(
        xs, ys, ws, cell_start, params, out, cells,
        SPREAD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, EPS: tl.constexpr,
    ):  # fmt: skip
        """out[r] = sum over r's candidates c != r of ws[c] * k(r, c), rows of one cell per program."""
        cell = tl.program_id(0).to(tl.int64)
        inv_theta = tl.load(params)
        low_exponent = tl.load(params + 1)
        floor_value = tl.load(params + 2)
        row_start = tl.load(cell_start + cell)
        row_end = tl.load(cell_start + cell + 1)
        for r0 in range(row_start, row_end, BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            row_ok = rows < row_end
            xr = tl.load(xs + rows, mask=row_ok, other=0.0)
            yr = tl.load(ys + rows, mask=row_ok, other=0.0)
            acc = tl.zeros([BLOCK_R], dtype=xr.dtype)
            for dy_index in tl.static_range(2 * SPREAD + 1):
                c_start, c_end = _cell_runs(cell_start, cell, cells, dy_index, SPREAD)
                for c0 in range(c_start, c_end, BLOCK_C):
                    cols = c0 + tl.arange(0, BLOCK_C)
                    col_ok = cols < c_end
                    xc = tl.load(xs + cols, mask=col_ok, other=0.0)
                    yc = tl.load(ys + cols, mask=col_ok, other=0.0)
                    wc = tl.load(ws + cols, mask=col_ok, other=0.0)
                    _dx, _dy, _distance, kernel = _pair_kernel(
                        xr, yr, rows, xc, yc, cols, inv_theta, low_exponent, floor_value, EPS
                    )
                    acc += tl.sum(kernel * wc[None, :], axis=1)
            tl.store(out + rows, acc, mask=row_ok)

    @triton.jit
    def _near_grad_kernel(
        xs, ys, ws, gs, cell_start, params, out_x, out_y, cells,
        SPREAD: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, EPS: tl.constexpr,
    ):  # fmt: skip
        """out[r] = -inv_theta * sum_c (g_r w_c + w_r g_c) k(r, c) / d(r, c) * (p_r - p_c)."""
        cell = tl.program_id(0).to(tl.int64)
        inv_theta = tl.load(params)
        low_exponent = tl.load(params + 1)
        floor_value = tl.load(params + 2)
        row_start = tl.load(cell_start + cell)
        row_end = tl.load(cell_start + cell + 1)
        for r0 in range(row_start, row_end, BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            row_ok = rows < row_end
            xr = tl.load(xs + rows, mask=row_ok, other=0.0)
            yr = tl.load(ys + rows, mask=row_ok, other=0.0)
            wr = tl.load(ws + rows, mask=row_ok, other=0.0)
            gr = tl.load(gs + rows, mask=row_ok, other=0.0)
            acc_x = tl.zeros([BLOCK_R], dtype=xr.dtype)
            acc_y = tl.zeros([BLOCK_R], dtype=xr.dtype)
            for dy_index in tl.static_range(2 * SPREAD + 1):
                c_start, c_end = _cell_runs(cell_start, cell, cells, dy_index, SPREAD)
                for c0 in range(c_start, c_end, BLOCK_C):
                    cols = c0 + tl.arange(0, BLOCK_C)
                    col_ok = cols < c_end
                    xc = tl.load(xs + cols, mask=col_ok, other=0.0)
                    yc = tl.load(ys + cols, mask=col_ok, other=0.0)
                    wc = tl.load(ws + cols, mask=col_ok, other=0.0)
                    gc = tl.load(gs + cols, mask=col_ok, other=0.0)
                    dx, dy, distance, kernel = _pair_kernel(
                        xr, yr, rows, xc, yc, cols, inv_theta, low_exponent, floor_value, EPS
                    )
                    weight = gr[:, None] * wc[None, :] + wr[:, None] * gc[None, :]
                    coefficient = weight * kernel / distance
                    acc_x += tl.sum(coefficient * dx, axis=1)
                    acc_y += tl.sum(coefficient * dy, axis=1)
            tl.store(out_x + rows, -acc_x * inv_theta, mask=row_ok)
            tl.store(out_y + rows, -acc_y * inv_theta, mask=row_ok)


def triton_near_sums(points: Tensor, weights: Tensor, theta: float, cutoff: float, grid: CellGrid) -> Tensor:
    """The kernel sum over the grid's candidate pairs (module docstring), differentiable in the points.

    Args:
        points: (M, N, 2) floating point, on a device where ``triton_available`` holds.
        weights: (M, N) weights of the other points (detached here).
        theta: kernel decay, in the points' units.
        cutoff: pairs at ``d >= min(cutoff, KERNEL_CUTOFF) * theta`` count 0; the grid's reach must be
            at least that distance.
        grid: the points sorted by cell (``build_cell_grid``).

    Returns:
        (M, N); 0 for the points outside the grid.
    """
    if triton is None:
        raise RuntimeError("triton is not installed; use the PyTorch path of training.ops.neighbour_grid")
    result: Tensor = _TritonNearSums.apply(points, weights.detach().to(points.dtype), theta, cutoff, grid)
    return result


def _sorted_inputs(points: Tensor, weights: Tensor, grid: CellGrid) -> tuple[Tensor, Tensor, Tensor]:
    """x, y and weights (P,) each, contiguous, in the grid's sorted order (P = M * N)."""
    flat = points.detach().reshape(-1, 2)[grid.order]  # (P, 2)
    return flat[:, 0].contiguous(), flat[:, 1].contiguous(), weights.reshape(-1)[grid.order].contiguous()


def _params(theta: float, cutoff: float, like: Tensor) -> Tensor:
    """(3,) [1 / theta, -min(cutoff, KERNEL_CUTOFF), exp(-KERNEL_CUTOFF)] in the points' dtype."""
    params = torch.full((3,), 1.0 / theta, dtype=like.dtype, device=like.device)  # fills: no host copy
    params[1].fill_(-min(cutoff, KERNEL_CUTOFF))
    params[2].fill_(math.exp(-KERNEL_CUTOFF))
    return params


class _TritonNearSums(torch.autograd.Function):
    """Forward and backward by the two kernels above, in sorted order, scattered back to (M, N)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, points: Tensor, weights: Tensor, theta: float, cutoff: float, grid: CellGrid
    ) -> Tensor:
        xs, ys, ws = _sorted_inputs(points, weights, grid)  # (P,) each
        params = _params(theta, cutoff, xs)
        sorted_sums = torch.zeros_like(xs)  # (P,): the points outside the grid keep 0
        programs = grid.cell_start.numel() - 1
        if programs > 0 and xs.numel() > 0:
            _near_sums_kernel[(programs,)](
                xs, ys, ws, grid.cell_start, params, sorted_sums, grid.cells,
                SPREAD=grid.spread, BLOCK_R=BLOCK_ROWS, BLOCK_C=BLOCK_COLUMNS, EPS=DISTANCE_EPS,
            )  # fmt: skip
        sums = torch.empty_like(sorted_sums).index_copy_(0, grid.order, sorted_sums)  # (P,)
        ctx.save_for_backward(xs, ys, ws, params)
        ctx.grid = grid  # type: ignore[attr-defined]
        return sums.view_as(weights)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_sums: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        xs, ys, ws, params = ctx.saved_tensors
        grid: CellGrid = ctx.grid
        gs = grad_sums.reshape(-1)[grid.order].to(xs.dtype).contiguous()  # (P,)
        grad_x = torch.zeros_like(xs)  # (P,)
        grad_y = torch.zeros_like(xs)
        programs = grid.cell_start.numel() - 1
        if programs > 0 and xs.numel() > 0:
            _near_grad_kernel[(programs,)](
                xs, ys, ws, gs, grid.cell_start, params, grad_x, grad_y, grid.cells,
                SPREAD=grid.spread, BLOCK_R=BLOCK_ROWS, BLOCK_C=BLOCK_COLUMNS, EPS=DISTANCE_EPS,
            )  # fmt: skip
        sorted_grad = torch.stack([grad_x, grad_y], dim=-1)  # (P, 2)
        grad = torch.empty_like(sorted_grad).index_copy_(0, grid.order, sorted_grad)
        return grad.view(*grad_sums.shape, 2), None, None, None, None
