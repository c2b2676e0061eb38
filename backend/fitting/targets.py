"""The object mask as a fitting target at one resolution, and MeshInversion's 2-D Chamfer mask loss.

- ``MaskTarget.build(mask, size, generator, device)``: the crop mask (S, S) bool area-resized to
  ``size`` (R): the soft mask (R, R) float the soft-IoU term compares with, the outside-distance field
  (R, R) and up to ``MASK_POINTS`` sampled mask pixel centres (M, 2) for the Chamfer term.
- ``outside_distance(mask)``: (R, R) NDC distance from each pixel centre to the nearest mask pixel
  centre (0 on the mask): the exact Euclidean distance transform with a correctly rounded square root
  (``backend.imaging.distance_transform.distance_to_foreground``), so the same bits on every call.
  Not OpenCV's ``distanceTransform(DIST_L2, DIST_MASK_PRECISE)``: its values for one mask are one
  float32 ulp off in some pixels, in a pattern that changes with where its buffers lie in the heap
  (from call to call in one process too, with one thread), which made ``fit`` land in one of two
  shapes from process to process (issue 20).
- ``mask_points(mask, limit, generator)``: NDC centres (M, 2) of at most ``limit`` randomly chosen mask
  pixels (drawn with a CPU ``generator``, so a seed gives the same points on every device).
- ``chamfer_mask_loss(projected, distance, points)``: (B,) symmetric 2-D Chamfer distance between
  projected vertices and the mask; ``nearest_vertex(projected, points)``: (B, M) its nearest vertex per
  mask point, found without autograd (only the M chosen pairs are differentiated).

NDC: x right, y up, -1..1 over the crop; pixel (0, 0) is the top-left one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.ops import gather_rows
from backend.imaging.distance_transform import distance_to_foreground
from backend.render.cpu_raster import numba_problem

MASK_POINTS = 400
"""Mask pixels sampled for the mask-to-vertex direction of the Chamfer mask loss."""


def resized_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the (S, S) bool ``mask`` area-resized."""
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)


def mask_points(mask: Tensor, limit: int, generator: torch.Generator) -> Tensor:
    """NDC centres (M, 2) of at most ``limit`` randomly chosen pixels of an (R, R) bool mask."""
    size = mask.shape[0]
    rows, columns = torch.nonzero(mask, as_tuple=True)
    if rows.numel() > limit:
        # drawn on the CPU, where ``generator`` lives, then moved to the mask's device
        keep = torch.randperm(rows.numel(), generator=generator, device="cpu")[:limit].to(rows.device)
        rows, columns = rows[keep], columns[keep]
    x = (2 * columns.float() + 1) / size - 1
    y = 1 - (2 * rows.float() + 1) / size
    return torch.stack([x, y], dim=-1)


def outside_distance(mask: np.ndarray) -> Tensor:
    """(R, R) float32 NDC distance from each pixel centre to the nearest mask pixel centre of the (R, R)
    bool ``mask`` (0 on the mask; 4, two crop widths, everywhere when the mask is empty), on the CPU.

    Exact and reproducible (module docstring): ``distance_to_foreground`` (pixels) times float32(2 / R).
    """
    size = mask.shape[0]
    pixels = distance_to_foreground(np.asarray(mask, dtype=bool))  # (R, R) float32, exact
    return torch.from_numpy(pixels * np.float32(2.0 / size))


def chamfer_mask_loss(projected: Tensor, distance: Tensor, points: Tensor) -> Tensor:
    """MeshInversion's 2-D Chamfer mask loss per batch item, both directions as mean squared distances.

    Vertex to mask: the distance field ``distance`` (from ``outside_distance``) sampled bilinearly at each
    projected vertex, which equals the distance to the nearest mask pixel (zero inside) and costs O(V).
    Mask to vertex: each of the M sampled mask pixel centres to its nearest projected vertex.

    Args:
        projected: (B, V, 2) projected vertices in NDC.
        distance: (R, R) outside-distance field of the mask, row 0 at the top.
        points: (M, 2) mask pixel centres in NDC.

    Returns:
        (B,) ``mean_v d(p_v, mask)^2 + mean_m min_v |p_v - q_m|^2``.
    """
    grid = torch.stack([projected[..., 0], -projected[..., 1]], dim=-1)[:, None]  # (B, 1, V, 2), y down
    field = distance[None, None].expand(projected.shape[0], 1, -1, -1)
    to_mask = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Outside the image the border value underestimates the distance: add the overshoot past |1|.
    overshoot = (projected.abs() - 1).clamp_min(0).norm(dim=-1)  # (B, V)
    vertex_term = (to_mask[:, 0, 0] + overshoot).pow(2).mean(dim=1)
    batch, count = projected.shape[:2]
    nearest = nearest_vertex(projected.detach(), points)  # (B, M) no autograd
    rows = nearest + torch.arange(batch, device=nearest.device)[:, None] * count  # rows of (B * V, 2)
    chosen = gather_rows(projected.reshape(batch * count, 2), rows)  # (B, M, 2)
    return vertex_term + (points[None] - chosen).pow(2).sum(-1).mean(dim=1)


@torch.no_grad()
def nearest_vertex(projected: Tensor, points: Tensor) -> Tensor:
    """(B, M) int64 index of the projected vertex (B, V, 2) nearest to each point (M, 2).

    The squared distances are the Chamfer loss's own ``dx^2 + dy^2``, so the minimum it picks is the
    value that ``min`` over all pairs would give; only the chosen pairs are then recomputed with
    autograd (``chamfer_mask_loss``), which is what ``min``'s gradient reaches anyway, without a
    (B, M, V) tensor in the backward pass. Elementwise ops and a reduction along V: the same bits for
    any thread count. On the CPU one numba loop (``_numba_nearest``, where numba runs) finds the same
    indices without the (B, M, V) tensors.
    """
    px, py = projected[..., 0].contiguous(), projected[..., 1].contiguous()  # (B, V) each
    qx, qy = points[:, 0].contiguous(), points[:, 1].contiguous()  # (M,) each
    if projected.device.type == "cpu" and points.dtype == projected.dtype and numba_problem() is None:
        from backend.fitting._numba_nearest import nearest

        index = torch.empty(projected.shape[0], points.shape[0], dtype=torch.int64, device="cpu")  # (B, M)
        nearest(px.numpy(), py.numpy(), qx.numpy(), qy.numpy(), index.numpy())
        return index
    dx = qx[None, :, None] - px[:, None, :]  # (B, M, V), V contiguous
    dy = qy[None, :, None] - py[:, None, :]
    dx.mul_(dx).add_(dy.mul_(dy))  # in place: the (B, M, V) tensors are the costly part
    return dx.argmin(dim=2)


@dataclass(frozen=True)
class MaskTarget:
    """The mask at one fitting resolution R: soft mask (R, R), outside distance (R, R), points (M, 2)."""

    mask: Tensor
    distance: Tensor
    points: Tensor

    @property
    def size(self) -> int:
        """R, the side in pixels."""
        return int(self.mask.shape[0])

    @staticmethod
    def build(mask: np.ndarray, size: int, generator: torch.Generator, device: torch.device) -> MaskTarget:
        """The (S, S) bool crop ``mask`` at ``size`` pixels; draws the Chamfer points from ``generator``."""
        soft = resized_mask(mask, size)
        binary = torch.from_numpy(soft > 0.5)
        return MaskTarget(
            mask=torch.from_numpy(soft).to(device),
            distance=outside_distance(soft > 0.5).to(device),
            points=mask_points(binary, MASK_POINTS, generator).to(device),
        )
