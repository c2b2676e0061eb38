"""Reference implementations the kernel sums of ``training.ops`` are checked against: all pairs at once
(dense (M, N, N) matrices) and a Python double loop; ``grad`` of a scalar with respect to one tensor."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def grad(loss: Tensor, points: Tensor) -> Tensor:
    (result,) = torch.autograd.grad(loss, points)
    return result


def dense_kernel_sum(points: Tensor, weights: Tensor, theta: float) -> Tensor:
    """All pairs at once (M, N, N): the reference the chunked function must equal."""
    distance = (points[:, :, None] - points[:, None]).norm(dim=-1).clamp_min(1e-8)  # (M, N, N)
    kernel = torch.exp(-distance / theta) * (1 - torch.eye(points.shape[1], dtype=points.dtype))
    return (kernel * weights[:, None, :]).sum(-1)


def loop_kernel_sum(points: Tensor, weights: Tensor, theta: float) -> list[list[float]]:
    """A python double loop over pairs."""
    rows = []
    for m in range(points.shape[0]):
        row = []
        for j in range(points.shape[1]):
            total = 0.0
            for k in range(points.shape[1]):
                if k != j:
                    dx, dy = (points[m, j] - points[m, k]).tolist()
                    total += float(weights[m, k]) * math.exp(-math.hypot(dx, dy) / theta)
            row.append(total)
        rows.append(row)
    return rows


def truncated_kernel_sum(points: Tensor, weights: Tensor, theta: float, cutoff: float) -> Tensor:
    """All pairs at once (M, N, N), the kernel of reading 3 and 0 at ``d >= cutoff * theta``."""
    distance = (points[:, :, None] - points[:, None]).norm(dim=-1).clamp_min(1e-8)  # (M, N, N)
    kernel = (torch.exp(-distance / theta) - math.exp(-40)).clamp_min(0)
    kernel = kernel * (distance < cutoff * theta) * (1 - torch.eye(points.shape[1], dtype=points.dtype))
    return (kernel * weights[:, None, :]).sum(-1)


def scattered_points(views: int, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """(M, N, 2) points in image sides, a tenth of them outside the image, and (M, N) weights, a third 0."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(views, count, 2, dtype=torch.float64, generator=generator) - 0.5
    points[:, : count // 10] *= 3  # some outside the image [-0.5, 0.5]^2, some far outside
    points[:, 1] = torch.tensor([40.0, -1e4], dtype=torch.float64)  # a point very far away
    weights = (torch.rand(views, count, dtype=torch.float64, generator=generator) * 1.5 - 0.5).clamp_min(0)
    return points, weights
