"""``build_cell_grid``: the sorted layout is a permutation with consistent cell slices, every pair closer than
the reach lies within ``spread`` cells (also for points clamped into the border cells), points outside the
grid come last, and the fixed window option."""

from __future__ import annotations

import pytest
import torch

from tests.training.ops.kernel_oracles import scattered_points
from training.ops.cell_grid import build_cell_grid


def _cells_of_sorted_positions(cell_start: torch.Tensor, count: int) -> torch.Tensor:
    """(P,) the cell of each sorted position below ``cell_start[-1]`` (a naive loop)."""
    cells = torch.full((count,), -1, dtype=torch.long)
    for cell in range(cell_start.numel() - 1):
        cells[int(cell_start[cell]) : int(cell_start[cell + 1])] = cell
    return cells


@pytest.mark.parametrize(("spread", "centre"), [(1, None), (2, None), (3, 0.0)])
def test_close_pairs_lie_within_spread_cells(spread: int, centre: float | None) -> None:
    points, weights = scattered_points(3, 300, seed=spread)  # a tenth outside, one very far away
    in_grid = weights > 0
    reach = 0.08
    grid = build_cell_grid(points, in_grid, reach, spread=spread, extent=0.5, centre=centre)
    views, count = in_grid.shape
    n = grid.cells
    assert grid.cell_start.shape == (views * n * n + 1,)
    assert torch.equal(grid.order.sort().values, torch.arange(views * count))  # a permutation
    assert bool((grid.cell_start[1:] >= grid.cell_start[:-1]).all())
    grid_points = int(in_grid.sum())
    assert int(grid.cell_start[-1]) == grid_points
    in_sorted = in_grid.reshape(-1)[grid.order]
    assert bool(in_sorted[:grid_points].all()) and not bool(in_sorted[grid_points:].any())  # outside last
    cells = _cells_of_sorted_positions(grid.cell_start, views * count)
    cell_of_point = torch.full((views * count,), -1, dtype=torch.long)
    cell_of_point[grid.order] = cells
    for view in range(views):
        inside = in_grid[view].nonzero()[:, 0]
        cell = cell_of_point[view * count + inside] - view * n * n  # within the view's cells
        assert bool((cell >= 0).all()) and bool((cell < n * n).all())
        cx, cy = cell % n, cell // n
        p = points[view, inside]
        close = (p[:, None] - p[None]).norm(dim=-1) < reach  # (K, K)
        apart = torch.maximum((cx[:, None] - cx[None]).abs(), (cy[:, None] - cy[None]).abs())
        assert int(close.sum()) > len(inside)  # close pairs exist beyond the diagonal
        assert bool((apart[close] <= spread).all())


def test_sets_without_grid_points_and_argument_checks() -> None:
    points = torch.rand(2, 6, 2, dtype=torch.float64)
    in_grid = torch.zeros(2, 6, dtype=torch.bool)
    in_grid[1, :3] = True
    grid = build_cell_grid(points, in_grid, 0.1, spread=2, extent=1.0)
    assert int(grid.cell_start[-1]) == 3
    assert set(grid.order[:3].tolist()) == {6, 7, 8}
    for reach, spread, extent in ((0.0, 1, 1.0), (float("inf"), 1, 1.0), (0.1, 0, 1.0), (0.1, 1, 0.0)):
        with pytest.raises(ValueError, match="reach"):
            build_cell_grid(points, in_grid, reach, spread=spread, extent=extent)
