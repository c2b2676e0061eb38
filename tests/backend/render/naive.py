"""Naive per-pixel, per-face loops: the oracle the vectorised rasterizer is tested against."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _cross(ax: float, ay: float, bx: float, by: float) -> float:
    return ax * by - ay * bx


def _segment_sq_dist(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    ex, ey = bx - ax, by - ay
    length_sq = ex * ex + ey * ey
    t = 0.0 if length_sq == 0 else min(1.0, max(0.0, ((px - ax) * ex + (py - ay) * ey) / length_sq))
    dx, dy = px - ax - t * ex, py - ay - t * ey
    return dx * dx + dy * dy


def naive_rasterize(vertices_ndc: Tensor, faces: Tensor, size: int, sigma: float, perspective: bool) -> dict:
    """Loop over every pixel and every face of one mesh (V, 3) -> dense reference images.

    Returns face_index (S, S) (-1 background), bary (S, S, 3), depth (S, S) and the exact SoftRas
    silhouette (S, S) ``1 - prod_j (1 - sigmoid(sign_j d_j^2 / sigma))`` over all faces, no cut-off.
    """
    verts = vertices_ndc.double().tolist()
    tris = [[verts[i] for i in face] for face in faces.tolist()]
    face_index = torch.full((size, size), -1, dtype=torch.long)
    bary = torch.zeros(size, size, 3, dtype=torch.float64)
    depth = torch.zeros(size, size, dtype=torch.float64)
    soft = torch.zeros(size, size, dtype=torch.float64)
    for row in range(size):
        for col in range(size):
            px, py = (2 * col + 1) / size - 1, 1 - (2 * row + 1) / size
            best = math.inf
            uncovered = 1.0
            for f, (a, b, c) in enumerate(tris):
                area = _cross(b[0] - a[0], b[1] - a[1], c[0] - a[0], c[1] - a[1])
                if abs(area) < 1e-12:
                    continue
                l0 = _cross(c[0] - b[0], c[1] - b[1], px - b[0], py - b[1]) / area
                l1 = _cross(a[0] - c[0], a[1] - c[1], px - c[0], py - c[1]) / area
                l2 = _cross(b[0] - a[0], b[1] - a[1], px - a[0], py - a[1]) / area
                inside = l0 >= 0 and l1 >= 0 and l2 >= 0
                d2 = min(
                    _segment_sq_dist(px, py, a[0], a[1], b[0], b[1]),
                    _segment_sq_dist(px, py, b[0], b[1], c[0], c[1]),
                    _segment_sq_dist(px, py, c[0], c[1], a[0], a[1]),
                )
                logit = (d2 if inside else -d2) / sigma
                coverage = 1 / (1 + math.exp(-logit)) if logit > -700 else 0.0
                uncovered *= 1 - coverage
                if not inside:
                    continue
                weights = [l0, l1, l2]
                if perspective:
                    inv = [w / v[2] for w, v in zip(weights, (a, b, c), strict=True)]
                    z = 1 / sum(inv)
                    weights = [w * z for w in inv]
                else:
                    z = sum(w * v[2] for w, v in zip(weights, (a, b, c), strict=True))
                if z < best:
                    best = z
                    face_index[row, col] = f
                    bary[row, col] = torch.tensor(weights, dtype=torch.float64)
                    depth[row, col] = z
            soft[row, col] = 1 - uncovered
    return {"face_index": face_index, "bary": bary, "depth": depth, "soft": soft}
