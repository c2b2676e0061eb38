"""UV-space rasterization: which face, and where in it, every texel centre of a texture lies.

Contract:

- ``uv_rasterize(uvs, face_uvs, height, width)`` finds, for every texel centre of an (H, W) texture,
  the face whose UV triangle contains it and the barycentric coordinates there (face -1 where no
  triangle covers the texel). UV (0, 0) is the bottom-left of the texture and texture row 0 is v = 1
  (``backend.geometry``); texel (i, j) has its centre at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H. It runs
  the hard (``soft=False``) rasterizer of this package on the UV triangles, without gradients.
- ``texel_surface(vertices, faces, texel_face, texel_bary)`` turns that map into the 3-D surface point
  and the face normal of every covered texel, for any vertex positions sharing the faces.

Texture baking (``backend.meshing.texturing``, ``backend.meshing.bake``), the refinement terms of the
fitting methods and the adaptive-flow trainer all map texels to the surface through these two functions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backend.geometry.ops import face_normals
from backend.render.rasterize import rasterize
from backend.render.settings import RasterSettings


def uv_rasterize(uvs: Tensor, face_uvs: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """The face and barycentric coordinates at every texel centre of an (H, W) texture.

    Texel (i, j) has its centre at u = (j + 0.5) / W, v = 1 - (i + 0.5) / H. The square rasterizer runs at
    S = max(H, W); for a texture k times wider than high (or higher than wide; k an integer) the UV
    triangles are shifted by (k - 1) / S in NDC (up, or left) so that every k-th raster row (column)
    lands on texel centres, and only those rows (columns) are kept.

    Args:
        uvs: (T, 2) texture coordinates in [0, 1].
        face_uvs: (F, 3) int64 indices into ``uvs``.
        height, width: texture size; the larger must be an integer multiple of the smaller.

    Returns:
        face: (H, W) int64, -1 where no UV triangle covers the texel centre.
        bary: (H, W, 3) barycentric coordinates in that face (0 where face is -1).
    """
    if max(height, width) % min(height, width):
        raise ValueError(f"texture sides must be multiples of each other, got {height} x {width}")
    size = max(height, width)
    step_rows, step_columns = size // height, size // width
    ndc = torch.stack(
        [
            uvs[:, 0].double() * 2 - 1 - (step_columns - 1) / size,
            uvs[:, 1].double() * 2 - 1 + (step_rows - 1) / size,
            torch.ones_like(uvs[:, 0], dtype=torch.float64),
        ],
        dim=-1,
    )[None]  # (1, T, 3)
    fragments = rasterize(ndc, face_uvs, RasterSettings(image_size=size, soft=False))
    face = torch.full((size * size,), -1, dtype=torch.long, device=uvs.device)
    bary = torch.zeros(size * size, 3, dtype=torch.float32, device=uvs.device)
    face[fragments.pixel] = fragments.face
    bary[fragments.pixel] = fragments.bary.detach().float()
    face = face.reshape(size, size)[::step_rows, ::step_columns]
    bary = bary.reshape(size, size, 3)[::step_rows, ::step_columns]
    return face.contiguous(), bary.contiguous()


def texel_surface(
    vertices: Tensor, faces: Tensor, texel_face: Tensor, texel_bary: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Surface points of the covered texels.

    Args:
        vertices: (V, 3); faces: (F, 3); texel_face: (H, W) from ``uv_rasterize``; texel_bary: (H, W, 3).

    Returns:
        index: (N, 2) int64 (row, column) of the N covered texels.
        points: (N, 3) their surface points.
        normals: (N, 3) unit normals of their faces (outward for counter-clockwise faces).
    """
    index = torch.nonzero(texel_face >= 0)  # (N, 2)
    face = texel_face[index[:, 0], index[:, 1]]  # (N,)
    bary = texel_bary[index[:, 0], index[:, 1]].to(vertices.dtype)  # (N, 3)
    corners = vertices[faces[face]]  # (N, 3, 3)
    points = (bary[..., None] * corners).sum(1)
    return index, points, face_normals(vertices, faces)[face]
