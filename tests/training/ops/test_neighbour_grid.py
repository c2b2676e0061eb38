"""``local_kernel_sum``, the kernel sum over pairs closer than a cutoff (neighbour grid): against the dense
truncated sum and the all-pairs path (values and gradients), gradcheck, the fallback when points crowd
into a few cells, and edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from tests.training.ops.kernel_oracles import grad, scattered_points, truncated_kernel_sum
from training.losses.effective import DEFAULT_THETA
from training.ops import neighbour_grid
from training.ops.cell_grid import build_cell_grid
from training.ops.neighbour_grid import BlockPlan, local_kernel_sum, near_pairs_kernel_sum, plan_blocks
from training.ops.pairwise import pairwise_kernel_sum


@pytest.mark.parametrize(("cutoff", "chunk_size"), [(3.0, 1), (3.0, 1024), (10.0, 2), (25.0, 64)])
def test_local_kernel_sum_equals_the_dense_truncated_sum_with_gradients(
    cutoff: float, chunk_size: int
) -> None:
    points, weights = scattered_points(3, 400, seed=int(cutoff))
    points.requires_grad_(True)
    upstream = torch.randn(3, 400, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    theta = 0.004
    local = local_kernel_sum(points, weights, theta, cutoff=cutoff, chunk_size=chunk_size)
    dense = truncated_kernel_sum(points, weights, theta, cutoff)
    assert float(dense.detach().abs().max()) > 0.1  # close pairs exist
    torch.testing.assert_close(local, dense, rtol=1e-12, atol=1e-14)
    local_grad = grad((local * upstream).sum(), points)
    dense_grad = grad((dense * upstream).sum(), points)
    assert float(dense_grad.abs().max()) > 1.0
    torch.testing.assert_close(local_grad, dense_grad, rtol=1e-10, atol=1e-9)
    # the all-pairs path truncated at the same cutoff (the fallback) agrees too
    all_pairs = pairwise_kernel_sum(points, weights, theta, chunk_size=chunk_size, cutoff=cutoff)
    torch.testing.assert_close(local, all_pairs, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad((all_pairs * upstream).sum(), points), dense_grad, rtol=1e-10, atol=1e-9)


def test_local_kernel_sum_at_cutoff_40_equals_the_all_pairs_sum() -> None:
    points, weights = scattered_points(2, 500, seed=7)
    points = (points * 2).requires_grad_(True)  # sparse enough at theta = 0.005 for the local path
    upstream = torch.randn(2, 500, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    local = local_kernel_sum(points, weights, DEFAULT_THETA, cutoff=40.0)
    all_pairs = pairwise_kernel_sum(points, weights, DEFAULT_THETA, chunk_size=100)
    assert int((local > 1e-3).sum()) > 10
    assert _plan(points, 40 * DEFAULT_THETA) is not None  # the grid, not the all-pairs fallback
    torch.testing.assert_close(local, all_pairs, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(
        grad((local * upstream).sum(), points),
        grad((all_pairs * upstream).sum(), points),
        rtol=1e-10,
        atol=1e-9,
    )


@pytest.mark.parametrize("kept", [True, False])
def test_local_kernel_sum_gradcheck(kept: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not kept:  # the backward recomputes the kernel
        monkeypatch.setattr(neighbour_grid, "LOCAL_SAVED_ELEMENTS", 0)
    generator = torch.Generator().manual_seed(8)
    points = (torch.rand(2, 12, 2, dtype=torch.float64, generator=generator) * 0.6).requires_grad_(True)
    weights = torch.rand(2, 12, dtype=torch.float64, generator=generator)
    weights[0, 3] = 0
    theta, cutoff = 0.05, 3.0
    distance = (points[:, :, None] - points[:, None]).norm(dim=-1).detach()
    assert float((distance / (cutoff * theta) - 1).abs().min()) > 1e-3  # no pair at the cutoff's jump
    assert bool(((distance > 0) & (distance < cutoff * theta)).any())
    assert bool((distance > cutoff * theta).any())
    assert torch.autograd.gradcheck(
        lambda p: local_kernel_sum(p, weights, theta, cutoff=cutoff, chunk_size=1), points
    )


def test_local_kernel_sum_falls_back_to_all_pairs_when_crowded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neighbour_grid, "LOCAL_BLOCK_ELEMENTS", 2000)  # several blocks below
    generator = torch.Generator().manual_seed(9)
    points = (torch.rand(2, 300, 2, dtype=torch.float64, generator=generator) * 0.01).requires_grad_(True)
    weights = torch.rand(2, 300, dtype=torch.float64, generator=generator)
    upstream = torch.randn(2, 300, dtype=torch.float64, generator=generator)
    assert _plan(points, 0.05) is None  # all pairs
    sparse = _plan(points * 100, 0.05)
    assert sparse is not None and len(sparse.blocks) > 1  # spread out: the grid, in several blocks
    local = local_kernel_sum(points, weights, 0.005, cutoff=10.0, chunk_size=16)  # all in one cell
    dense = truncated_kernel_sum(points, weights, 0.005, 10.0)
    torch.testing.assert_close(local, dense, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        grad((local * upstream).sum(), points),
        grad((dense * upstream).sum(), points),
        rtol=1e-10,
        atol=1e-9,
    )


def test_local_kernel_sum_edge_cases() -> None:
    points = torch.rand(2, 5, 2, dtype=torch.float64, requires_grad=True)
    zero = local_kernel_sum(points, torch.zeros(2, 5, dtype=torch.float64), 0.1, cutoff=5.0)
    assert torch.equal(zero, torch.zeros(2, 5, dtype=torch.float64))
    assert torch.equal(grad(zero.sum(), points), torch.zeros(2, 5, 2, dtype=torch.float64))
    none = torch.zeros(1, 0, 2, dtype=torch.float64)
    assert local_kernel_sum(none, torch.zeros(1, 0, dtype=torch.float64), 0.1, cutoff=5.0).shape == (1, 0)
    for cutoff in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="cutoff"):
            local_kernel_sum(points, torch.ones(2, 5), 0.1, cutoff=cutoff)


def _plan(points: torch.Tensor, reach: float) -> BlockPlan | None:
    """The PyTorch path's plan for all points of (M, N, 2) ``points`` in the grid."""
    in_grid = torch.ones(points.shape[:2], dtype=torch.bool)
    grid = build_cell_grid(points.detach(), in_grid, reach, spread=2, extent=1.0)
    return plan_blocks(grid, points.shape[0], points.shape[1])


@pytest.mark.parametrize(("cutoff", "kept"), [(4.0, True), (10.0, True), (10.0, False), (30.0, True)])
def test_float32_and_weighted_rows_only_against_the_float64_oracle(
    cutoff: float, kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(neighbour_grid, "LOCAL_BLOCK_ELEMENTS", 3000)  # several blocks, mixed row counts
    if not kept:  # the backward recomputes the kernel
        monkeypatch.setattr(neighbour_grid, "LOCAL_SAVED_ELEMENTS", 0)
    points, weights = scattered_points(3, 400, seed=11)
    upstream = torch.randn(3, 400, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    theta = 0.004
    dense_points = points.clone().requires_grad_(True)
    dense = truncated_kernel_sum(dense_points, weights, theta, cutoff) * (weights > 0)
    dense_grad = grad((dense * upstream).sum(), dense_points)
    single = points.float().requires_grad_(True)
    local = near_pairs_kernel_sum(single, weights.float(), theta, cutoff, 64, weighted_rows_only=True)
    assert local.dtype == torch.float32
    assert bool((local[weights == 0] == 0).all())
    torch.testing.assert_close(local.double(), dense, rtol=1e-5, atol=1e-6)
    local_grad = grad((local * upstream.float()).sum(), single)
    assert float(dense_grad.abs().max()) > 1.0
    scale = float(dense_grad.abs().max())
    torch.testing.assert_close(local_grad.double(), dense_grad, rtol=1e-4, atol=1e-5 * scale)


def test_plan_blocks_cover_every_close_pair_once() -> None:
    points, weights = scattered_points(2, 300, seed=5)
    grid = build_cell_grid(points, weights > 0, 0.05, spread=2, extent=0.5)
    plan = plan_blocks(grid, 2, 300)
    assert plan is not None
    position = torch.empty(600, dtype=torch.long)
    position[grid.order] = torch.arange(600)  # sorted position of each flat point
    seen: set[tuple[int, int]] = set()
    for rows, row_valid, columns, column_valid in plan.blocks:
        for q in range(rows.shape[0]):
            for r in rows[q][row_valid[q]].tolist():
                for c in columns[q][column_valid[q]].tolist():
                    if c > r:
                        assert (r, c) not in seen  # every candidate pair once
                        seen.add((r, c))
    flat = points.reshape(-1, 2)
    inside = (weights.reshape(-1) > 0).nonzero()[:, 0]
    for view in range(2):
        members = inside[(inside >= view * 300) & (inside < (view + 1) * 300)]
        close = ((flat[members][:, None] - flat[members][None]).norm(dim=-1) < 0.05).nonzero().tolist()
        for a, b in close:
            if a != b:
                pa, pb = int(position[members[a]]), int(position[members[b]])
                assert (min(pa, pb), max(pa, pb)) in seen
