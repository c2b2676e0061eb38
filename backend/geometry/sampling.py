"""Random points on a mesh's surface: the one surface sampler of the project.

``sample_surface(vertices, faces, count, generator)`` draws ``count`` points uniformly by area: a face
with probability proportional to its area, then a point uniform in that triangle (two uniforms ``u, v``
folded into the triangle: ``u + v > 1`` maps to ``1 - u, 1 - v``). Every draw is made where
``generator`` lives, so a CPU generator gives the same points whatever the mesh's device; the points are
returned on the device of ``vertices``. Used for Chamfer distances and point-voxel IoUs against ground
truth (training evaluation, the point-cloud benchmark) and for the meshing benchmark's input cloud.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backend.geometry.mesh import check_faces
from backend.geometry.ops import face_areas


def sample_surface(vertices: Tensor, faces: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` points (count, 3) uniformly on the surface of a mesh (V, 3), (F, 3) (area-weighted).

    The draws are made where ``generator`` lives (a CPU generator gives the same points whatever the
    mesh's device); the points are on the device of ``vertices``.

    Raises:
        ValueError: vertices not (V, 3), faces not valid indices into them, or ``count`` < 1.

    >>> square = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    >>> points = sample_surface(square, torch.tensor([[0, 1, 2], [0, 2, 3]]), 100, torch.Generator())
    >>> tuple(points.shape), bool((points[:, :2] >= 0).all() and (points[:, :2] <= 1).all())
    ((100, 3), True)
    """
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {tuple(vertices.shape)}")
    check_faces(faces, vertices.shape[0])
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    areas = face_areas(vertices, faces).clamp_min(0).to(generator.device)  # (F,)
    chosen = torch.multinomial(areas + 1e-12, count, replacement=True, generator=generator)  # (count,)
    u, v = torch.rand(2, count, 1, generator=generator, device=generator.device).to(vertices.device)
    chosen = chosen.to(vertices.device)
    flip = (u + v) > 1
    u, v = torch.where(flip, 1 - u, u), torch.where(flip, 1 - v, v)  # (count, 1) each
    corners = vertices[faces[chosen]]  # (count, 3, 3)
    return corners[:, 0] + u * (corners[:, 1] - corners[:, 0]) + v * (corners[:, 2] - corners[:, 0])
