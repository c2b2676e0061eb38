"""``pairwise_kernel_sum``, the chunked all-pairs kernel sum: gradcheck for every block shape, a loop oracle,
the dense version (values and gradients), float32 against float64 and argument checks."""

from __future__ import annotations

import pytest
import torch

from tests.training.ops.kernel_oracles import dense_kernel_sum, grad, loop_kernel_sum
from training.losses.effective import DEFAULT_THETA
from training.ops.pairwise import pairwise_kernel_sum


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 6, 13, 100])
def test_pairwise_kernel_sum_gradcheck(chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(chunk_size)
    points = torch.rand(3, 6, 2, dtype=torch.float64, generator=generator).requires_grad_(True)
    weights = torch.rand(3, 6, dtype=torch.float64, generator=generator)
    assert torch.autograd.gradcheck(
        lambda p: pairwise_kernel_sum(p, weights, 0.2, chunk_size=chunk_size), points
    )


def test_pairwise_kernel_sum_equals_the_loop_oracle() -> None:
    generator = torch.Generator().manual_seed(3)
    points = torch.rand(2, 4, 2, dtype=torch.float64, generator=generator)
    weights = torch.rand(2, 4, dtype=torch.float64, generator=generator)
    result = pairwise_kernel_sum(points, weights, 0.3, chunk_size=3)
    for got, expected in zip(result.tolist(), loop_kernel_sum(points, weights, 0.3), strict=True):
        assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("chunk_size", [7, 64, 1000])
def test_pairwise_kernel_sum_equals_the_dense_version_with_gradients(chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(4)
    points = torch.rand(3, 150, 2, dtype=torch.float64, generator=generator).requires_grad_(True)
    weights = (torch.rand(3, 150, dtype=torch.float64, generator=generator) - 0.3).clamp_min(0)
    upstream = torch.randn(3, 150, dtype=torch.float64, generator=generator)
    chunked = pairwise_kernel_sum(points, weights, DEFAULT_THETA * 10, chunk_size=chunk_size)
    dense = dense_kernel_sum(points, weights, DEFAULT_THETA * 10)
    torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        grad((chunked * upstream).sum(), points),
        grad((dense * upstream).sum(), points),
        rtol=1e-10,
        atol=1e-12,
    )


def test_pairwise_kernel_sum_float32_matches_float64() -> None:
    generator = torch.Generator().manual_seed(5)
    points = torch.rand(2, 300, 2, dtype=torch.float64, generator=generator) * 0.5
    weights = torch.rand(2, 300, dtype=torch.float64, generator=generator)
    single = points.float().requires_grad_(True)
    double = points.clone().requires_grad_(True)
    low = pairwise_kernel_sum(single, weights.float(), 0.01, chunk_size=64)
    high = pairwise_kernel_sum(double, weights, 0.01, chunk_size=64)
    torch.testing.assert_close(low.double(), high, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        grad(low.sum(), single).double(), grad(high.sum(), double), rtol=1e-3, atol=1e-2
    )


def test_pairwise_kernel_sum_rejects_bad_arguments() -> None:
    points = torch.rand(1, 4, 2)
    with pytest.raises(ValueError, match="chunk_size"):
        pairwise_kernel_sum(points, torch.ones(1, 4), 0.1, chunk_size=0)
    with pytest.raises(ValueError, match="weights"):
        pairwise_kernel_sum(points, torch.ones(4), 0.1, chunk_size=2)
