"""Silhouette losses: 1 - soft IoU (seeds' eq. 1) and SoftRas's multi-view version.

``iou_loss(pred, target)``: masks (B, H, W) or (B, 1, H, W) in [0, 1] -> (B,) of
``1 - sum(p t) / sum(p + t - p t)`` (the soft IoU every seed uses for its silhouette term).

``multiview_iou_loss``: SoftRas's ShapeNet training signal. Each item of the batch is one object seen
in two views a and b; the network predicts a mesh from each view's image. Both meshes are rendered at
both views and compared with both masks, so a shape must explain a view it never saw:
``mean over items of [L(m_a at a) + L(m_a at b) + L(m_b at a) + L(m_b at b)] / 4``, L = ``iou_loss``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backend.geometry.camera import Camera
from backend.render.renderer import render
from backend.render.settings import RasterSettings

EPS = 1e-6


def iou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """(B,) ``1 - soft IoU`` of masks (B, H, W) or (B, 1, H, W) in [0, 1]."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    dims = tuple(range(1, pred.dim()))
    intersection = (pred * target).sum(dims)
    union = (pred + target - pred * target).sum(dims)
    return 1 - intersection / (union + EPS)


def multiview_iou_loss(
    vertices_a: Tensor,
    vertices_b: Tensor,
    faces: Tensor,
    camera_a: Camera,
    camera_b: Camera,
    mask_a: Tensor,
    mask_b: Tensor,
    settings: RasterSettings,
) -> Tensor:
    """SoftRas's multi-view silhouette loss (module docstring), a scalar.

    Args:
        vertices_a, vertices_b: (B, V, 3) meshes predicted from views a and b.
        faces: (F, 3) shared faces.
        camera_a, camera_b: B cameras each.
        mask_a, mask_b: (B, S, S) target silhouettes of views a and b.
        settings: the soft rasterizer's settings (``image_size`` must be S).
    """
    batch = vertices_a.shape[0]
    if mask_a.shape[-1] != settings.image_size:
        raise ValueError(f"masks are {mask_a.shape[-1]} px but the renderer makes {settings.image_size} px")
    vertices = torch.cat([vertices_a, vertices_a, vertices_b, vertices_b])  # (4B, V, 3)
    cameras = Camera.cat([camera_a, camera_b, camera_a, camera_b])
    targets = torch.cat([mask_a, mask_b, mask_a, mask_b])  # (4B, S, S)
    alpha = render(vertices, faces, cameras, settings, outputs="alpha").alpha[..., 0]  # (4B, S, S)
    return iou_loss(alpha, targets).view(4, batch).mean()
