"""Mesh regularisers at SoftRas's scale, so its published weights (5e-3 Laplacian, 5e-4 flatten) apply.

SoftRas's ``LaplacianLoss`` sums ``|L v|^2`` over vertices (``backend.geometry.laplacian_loss`` takes the
mean, which is right for per-vertex weights such as ``fit``'s); its ``FlattenLoss`` sums
``(cos theta + 1)^2`` over edges, as ``backend.geometry.flatten_loss`` does.
"""

from __future__ import annotations

from torch import Tensor

from backend.geometry.ops import EdgeAdjacency, flatten_loss, laplacian_loss


def softras_laplacian(vertices: Tensor, faces: Tensor, laplacian: Tensor | None = None) -> Tensor:
    """(B,) sum over vertices of ``|L v|^2`` with the uniform Laplacian, for vertices (B, V, 3)."""
    return laplacian_loss(vertices, faces, laplacian=laplacian) * vertices.shape[-2]


def softras_flatten(vertices: Tensor, faces: Tensor, adjacency: EdgeAdjacency | None = None) -> Tensor:
    """(B,) sum over interior edges of ``(cos theta + 1)^2`` (SoftRas's FlattenLoss)."""
    return flatten_loss(vertices, faces, adjacency)
