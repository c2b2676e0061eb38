"""Points of M independent 2-D sets sorted by grid cell, with fixed shapes and no host synchronisation.

``build_cell_grid(points (M, N, 2), in_grid (M, N) bool, reach, *, spread, extent) -> CellGrid``: each set
is binned into ``n x n`` square cells of side ``>= reach / spread`` and its points are sorted by
``(set, cell y, cell x)``; ``cell_start (M * n * n + 1,)`` gives each cell's slice of the sorted order.
Every pair of a set closer than ``reach`` lies in cells at most ``spread`` apart along each axis, so a
point's neighbours are the ``2 spread + 1`` runs of consecutive sorted positions that cover the cells of
its ``(2 spread + 1)^2`` block (one run per cell row). This is the layout of the neighbour-limited kernel
sums (``training.ops.neighbour_grid``: its Triton kernels loop over these runs on the device, its
PyTorch path plans padded blocks from them).

Fixed shapes: ``n = ceil(2 extent spread / reach)`` cells per axis (capped at ``MAX_CELLS``) of side
``max(reach / spread, 2 extent / n)`` (Python numbers), centred on the median of each set's grid points
(a device tensor, robust to a few far points) or on a given ``centre``; points beyond the window are
clamped into its border cells, which keeps every close pair within ``spread`` cells (clamping never
moves two indices apart): correct for any input, efficient when the points lie within ``extent`` of the
centre. Points outside the grid (``in_grid`` False) are sorted after all cells (key ``M * n * n``): they are
nobody's neighbours and own no cell. All on the points' device: sort, searchsorted, no ``nonzero``/item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_CELLS = 256
"""Most cells per axis of a set's grid."""

CELL_MARGIN = 1e-4
"""Relative enlargement of the cells: rounding never moves a pair closer than ``reach`` out of reach."""


@dataclass
class CellGrid:
    """The sorted layout of ``build_cell_grid``.

    Attributes:
        order: (M * N,) int64 flat point indices (into ``points.reshape(-1, 2)``) in sorted order: grid
            points by (set, cell y, cell x), then the points outside the grid.
        cell_start: (M * n * n + 1,) int64: the sorted positions of cell c are
            ``cell_start[c]:cell_start[c + 1]``; ``cell_start[-1]`` is the number of grid points.
        cells: n, cells per axis of each set.
        spread: neighbours lie within ``spread`` cells along each axis.
    """

    order: Tensor
    cell_start: Tensor
    cells: int
    spread: int


def build_cell_grid(
    points: Tensor, in_grid: Tensor, reach: float, *, spread: int, extent: float, centre: float | None = None
) -> CellGrid:
    """Sort the points of each set by grid cell (module docstring).

    Args:
        points: (M, N, 2) detached.
        in_grid: (M, N) bool: the points that are rows and neighbours; the others are sorted last.
        reach: pairs closer than this must be within ``spread`` cells (a positive finite number).
        spread: cells per ``reach`` (>= 1).
        extent: the expected half side of the window around a set's median, in the points' units.
        centre: the window's centre on both axes for every set, instead of the medians (a caller that
            knows where its points lie, e.g. the image).

    Returns:
        The ``CellGrid``.
    """
    if not (reach > 0 and math.isfinite(reach)) or spread < 1 or not extent > 0:
        raise ValueError(f"need reach > 0, spread >= 1 and extent > 0, got {reach}, {spread}, {extent}")
    views = in_grid.shape[0]
    device = points.device
    cells = int(min(MAX_CELLS, max(1, math.ceil(2 * extent * spread / reach))))
    side = max(reach * (1 + CELL_MARGIN) / spread, 2 * extent / cells)
    flat = points.detach().to(torch.float64)  # (M, N, 2): cells from doubles (rounding, see CELL_MARGIN)
    if centre is None:
        nan = torch.full((), math.nan, dtype=torch.float64, device=device)
        median = torch.where(in_grid[..., None], flat, nan).nanmedian(dim=1).values  # (M, 2), robust
        middle = torch.where(median.isnan(), torch.zeros_like(median), median)  # sets without grid points
    else:
        middle = torch.full((views, 2), float(centre), dtype=torch.float64, device=device)
    origin = middle - cells * side / 2  # (M, 2)
    index = torch.floor((flat - origin[:, None, :]) / side)  # (M, N, 2)
    index = index.clamp_(0, cells - 1).long()
    set_index = torch.arange(views, device=device)[:, None]  # (M, 1)
    keys = (set_index * cells + index[..., 1]) * cells + index[..., 0]  # (M, N) set, cell y, cell x
    keys = torch.where(in_grid, keys, torch.full_like(keys, views * cells * cells)).reshape(-1)
    sorted_keys, order = torch.sort(keys)  # (M * N,) each
    boundaries = torch.arange(views * cells * cells + 1, device=device)  # (M * n * n + 1,)
    cell_start = torch.searchsorted(sorted_keys, boundaries)
    return CellGrid(order=order, cell_start=cell_start, cells=cells, spread=spread)
