"""UV unwrapping with xatlas, and the UV-space raster that checks and bakes an atlas.

Contract:

- ``unwrap_uvs(vertices, faces, padding, resolution)`` cuts the mesh into charts, flattens and packs
  them with xatlas into the unit square. Geometry is untouched: ``faces`` keep indexing the original
  vertices, and the returned ``face_uvs`` (F, 3) index the returned ``uvs`` (T, 2), one UV vertex per
  (vertex, chart) pair, so T >= V with seams duplicated in UV only. xatlas counts its texture rows from
  the top; ``v = 1 - y / height`` puts UV (0, 0) at the bottom-left as ``backend.geometry`` wants, so
  the atlas image xatlas would draw and our texture (row 0 = v 1) have the same rows. ``padding`` is the
  gap between charts in texels of a ``resolution``-wide texture, which keeps bilinear lookups and
  mip-maps of one chart from reading its neighbour.
- ``uv_texels(uvs, face_uvs, height, width)`` finds every (face, texel) pair whose texel centre
  (u = (j + 0.5) / W, v = 1 - (i + 0.5) / H, as ``backend.render.uv.uv_rasterize``) lies in the face's UV
  triangle, with barycentric coordinates, in vectorised numpy (faces bucketed by the size of their
  texel box so that little is evaluated outside it).
- ``uv_overlap_fraction(uvs, face_uvs, resolution)`` is the fraction of covered texels that lie strictly
  inside two or more UV triangles (texels on a shared edge do not count): 0 for a valid atlas.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from backend.geometry.mesh import check_faces

_CHUNK = 1 << 22
"""Most (face, candidate texel) pairs evaluated at once."""


def unwrap_uvs(
    vertices: Tensor, faces: Tensor, *, padding: int = 2, resolution: int = 1024
) -> tuple[Tensor, Tensor]:
    """A UV atlas of the mesh (module docstring).

    Args:
        vertices: (V, 3) positions; faces: (F, 3) int64, non-degenerate (see ``backend.meshing.cleanup``).
        padding: texels between charts at ``resolution``.
        resolution: texture width the packing aims at (xatlas may use a slightly different size).

    Returns:
        uvs: (T, 2) float32 in [0, 1]; face_uvs: (F, 3) int64 into ``uvs``.
    """
    check_faces(faces, int(vertices.shape[0]))
    if padding < 0 or resolution < 16:
        raise ValueError(f"padding must be >= 0 and resolution >= 16, got {padding} and {resolution}")
    positions = np.ascontiguousarray(vertices.detach().cpu().numpy(), dtype=np.float32)
    indices = np.ascontiguousarray(faces.detach().cpu().numpy(), dtype=np.uint32)
    import xatlas  # imported where it runs, as Open3D is

    atlas = xatlas.Atlas()
    atlas.add_mesh(positions, indices)
    pack = xatlas.PackOptions()
    pack.padding = padding
    pack.resolution = resolution
    atlas.generate(xatlas.ChartOptions(), pack)
    mapping, face_uvs, uvs = atlas[0]  # (T,) vertex of each UV vertex, (F, 3), (T, 2) with y down
    if face_uvs.shape != indices.shape or not np.array_equal(mapping[face_uvs], indices):
        raise RuntimeError("xatlas changed the faces; the UV atlas does not match the mesh")
    uvs = np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1).clip(0.0, 1.0).astype(np.float32)  # (T, 2)
    return torch.from_numpy(uvs), torch.from_numpy(face_uvs.astype(np.int64))


@dataclass(frozen=True)
class UVTexels:
    """(face, texel) pairs of a UV raster, K of them.

    Attributes:
        face: (K,) int64 face index; row, column: (K,) int64 texel; bary: (K, 3) float64 barycentric
            coordinates of the texel centre; strict: (K,) bool, the centre lies strictly inside (not on an
            edge).
    """

    face: np.ndarray
    row: np.ndarray
    column: np.ndarray
    bary: np.ndarray
    strict: np.ndarray


def uv_texels(uvs: Tensor, face_uvs: Tensor, height: int, width: int, tolerance: float = 1e-9) -> UVTexels:
    """Every (face, texel) pair whose texel centre lies in the face's UV triangle (module docstring).

    Args:
        uvs: (T, 2) in [0, 1]; face_uvs: (F, 3) int64.
        height, width: texture size (H, W).
        tolerance: slack of the inside test, in barycentric units.
    """
    check_faces(face_uvs, int(uvs.shape[0]), name="face_uvs")
    texel_uvs = uvs.detach().cpu().double().numpy()
    corners = texel_uvs[face_uvs.cpu().numpy()]  # (F, 3, 2)
    x = corners[..., 0] * width - 0.5  # (F, 3) texel column coordinate, centres at integers
    y = (1.0 - corners[..., 1]) * height - 0.5  # (F, 3) texel row coordinate
    column_low = np.clip(np.ceil(x.min(1) - 1e-7), 0, width - 1).astype(np.int64)
    column_high = np.clip(np.floor(x.max(1) + 1e-7), 0, width - 1).astype(np.int64)
    row_low = np.clip(np.ceil(y.min(1) - 1e-7), 0, height - 1).astype(np.int64)
    row_high = np.clip(np.floor(y.max(1) + 1e-7), 0, height - 1).astype(np.int64)
    box_width = column_high - column_low + 1  # (F,)
    box_size = box_width * (row_high - row_low + 1) * (column_high >= column_low) * (row_high >= row_low)
    doubled_area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    live = (box_size > 0) & (np.abs(doubled_area) > 1e-12)
    parts: list[tuple[np.ndarray, ...]] = []
    for face in _buckets(np.nonzero(live)[0], box_size):
        count = int(box_size[face].max())
        k = np.arange(count)[None, :]  # (1, K) candidate number within the face's box
        inside_box = k < box_size[face, None]  # (Fb, K)
        row = row_low[face, None] + k // box_width[face, None]  # (Fb, K)
        column = column_low[face, None] + k % box_width[face, None]
        dx = x[face][:, :, None] - column[:, None, :]  # (Fb, 3, K) corner minus texel centre
        dy = y[face][:, :, None] - row[:, None, :]
        area = doubled_area[face, None]  # (Fb, 1)
        bary = np.stack(
            [
                (dx[:, 1] * dy[:, 2] - dx[:, 2] * dy[:, 1]) / area,
                (dx[:, 2] * dy[:, 0] - dx[:, 0] * dy[:, 2]) / area,
            ],
            axis=-1,
        )  # (Fb, K, 2) barycentric weights of the first two corners
        bary = np.concatenate([bary, 1.0 - bary.sum(-1, keepdims=True)], axis=-1)  # (Fb, K, 3)
        smallest = bary.min(-1)  # (Fb, K)
        hit = inside_box & (smallest >= -tolerance)
        which = np.nonzero(hit)
        parts.append((face[which[0]], row[hit], column[hit], bary[hit], smallest[hit] > tolerance))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return UVTexels(empty, empty, empty, np.zeros((0, 3)), np.zeros(0, dtype=bool))
    face_all, row_all, column_all, bary_all, strict_all = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    return UVTexels(face_all, row_all, column_all, bary_all, strict_all)


def _buckets(faces: np.ndarray, box_size: np.ndarray) -> Iterator[np.ndarray]:
    """Face index groups of similar texel-box size (within 2x), each at most ``_CHUNK`` candidates."""
    if len(faces) == 0:
        return
    level = np.ceil(np.log2(box_size[faces])).astype(np.int64)  # (F',)
    for value in np.unique(level):
        group = faces[level == value]
        per_chunk = max(1, _CHUNK >> int(value))
        for start in range(0, len(group), per_chunk):
            yield group[start : start + per_chunk]


def uv_overlap_fraction(uvs: Tensor, face_uvs: Tensor, resolution: int = 512) -> float:
    """Fraction of the covered texels of a ``resolution``^2 raster inside more than one UV triangle.

    Args:
        uvs: (T, 2); face_uvs: (F, 3) int64.
        resolution: texels per side.
    """
    texels = uv_texels(uvs, face_uvs, resolution, resolution)
    covered = np.unique(texels.row * resolution + texels.column)
    if len(covered) == 0:
        return 0.0
    inside = texels.row[texels.strict] * resolution + texels.column[texels.strict]
    overlapped = int((np.bincount(inside, minlength=resolution * resolution) > 1).sum())
    return overlapped / len(covered)
