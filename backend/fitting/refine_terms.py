"""What the refinement of a given (artist-edited) mesh (``backend.fitting.shape``) needs besides the
fitting losses.

Contract:

- ``mirror_pairs(vertices, tolerance)``: the x -> -x symmetry of a vertex set, as a (V,) index of each
  vertex's mirror partner (itself on the plane), or ``None`` when some vertex has no partner within
  ``tolerance`` of the bounding-box diagonal. The plane is x = mean x (a symmetric set's centroid lies
  on it), so an object moved sideways still counts. ``nearest_mirror_pairs`` is the same pairing without
  a tolerance, for ``keep_symmetry="on"``: mutual nearest neighbours only, other vertices unpaired (-1).
- ``symmetrize_offsets_by_pairs(offsets, pairs)``: the mirror-symmetric part of (B, V, 3) offsets,
  ``(o_i + M o_j) / 2`` for partners i, j (M flips x); unpaired vertices keep their offset.
- ``outline_freedom(vertices, faces, camera, target, ...)``: (V,) in [0, 1], 1 for vertices the photo
  constrains (on the outline of the mesh's silhouette in the camera's view, or projecting outside the
  object mask), fading over a few edge rings, 0 elsewhere.
- ``moved_texels(before, after, faces, uvs, face_uvs, size, distance)``: (H, W) bool, the texels whose
  surface point moved more than ``distance`` (a fraction of the bounding-box diagonal) between two
  vertex sets of one mesh.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from backend.geometry.camera import Camera
from backend.geometry.ops import edge_adjacent_faces, face_normals
from backend.imaging.distance_transform import distance_to_foreground
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from backend.render.uv import texel_surface, uv_rasterize


def _mirrored(vertices: np.ndarray) -> np.ndarray:
    """(V, 3) positions reflected in the plane x = mean x."""
    plane = vertices[:, 0].mean()
    return np.stack([2 * plane - vertices[:, 0], vertices[:, 1], vertices[:, 2]], axis=1)


def _diagonal(vertices: np.ndarray) -> float:
    return float(np.linalg.norm(vertices.max(0) - vertices.min(0))) if len(vertices) else 0.0


def mirror_pairs(vertices: Tensor, tolerance: float = 1e-3) -> Tensor | None:
    """(V,) int64 mirror partner of each vertex of a (V, 3) set symmetric about x = mean x, or ``None``.

    Symmetric means: the nearest vertex to every vertex's mirror image lies within ``tolerance`` times
    the bounding-box diagonal, and the pairing is an involution (partners of partners are themselves).

    >>> mirror_pairs(torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0]])).tolist()
    [1, 0, 2]
    >>> mirror_pairs(torch.tensor([[1.0, 0, 0], [-1, 0.5, 0], [0, 1, 0]])) is None
    True
    """
    points = vertices.detach().double().cpu().numpy()
    if len(points) == 0:
        return None
    distance, index = cKDTree(points).query(_mirrored(points))
    if distance.max() > tolerance * max(_diagonal(points), 1e-12):
        return None
    if not np.array_equal(index[index], np.arange(len(points))):
        return None
    return torch.from_numpy(index.astype(np.int64))


def nearest_mirror_pairs(vertices: Tensor) -> Tensor:
    """(V,) int64 partner of each vertex of (V, 3) by mutual nearest mirror image, -1 where not mutual."""
    points = vertices.detach().double().cpu().numpy()
    _, index = cKDTree(points).query(_mirrored(points))
    mutual = index[index] == np.arange(len(points))
    return torch.from_numpy(np.where(mutual, index, -1).astype(np.int64))


def symmetrize_offsets_by_pairs(offsets: Tensor, pairs: Tensor) -> Tensor:
    """The mirror-symmetric part of offsets (B, V, 3) under ``pairs`` (V,) (-1: unpaired, kept as is).

    Differentiable; a vertex paired with itself (on the plane) gets zero x offset.
    """
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=offsets.dtype, device=offsets.device)
    paired = pairs >= 0
    partner = torch.where(paired, pairs, torch.arange(pairs.shape[0], device=pairs.device))
    symmetric = (offsets + offsets[:, partner] * flip) / 2
    return torch.where(paired[None, :, None], symmetric, offsets)


def symmetrize_positions(vertices: Tensor, pairs: Tensor) -> Tensor:
    """(V, 3) vertices made exactly symmetric about x = mean x under a full pairing ``pairs`` (V,)."""
    plane = vertices[:, 0].mean()
    partner = vertices[pairs]
    mirrored = torch.stack([2 * plane - partner[:, 0], partner[:, 1], partner[:, 2]], dim=1)
    return (vertices + mirrored) / 2


@torch.no_grad()
def outline_freedom(
    vertices: Tensor,
    faces: Tensor,
    camera: Camera,
    target: np.ndarray,
    resolution: int,
    *,
    band_pixels: float = 2.5,
    rings: int = 2,
) -> Tensor:
    """How free each vertex is to follow the photo: (V,) in [0, 1] (module docstring).

    Args:
        vertices: (V, 3); faces: (F, 3); camera: a batch-of-one camera.
        target: (R, R) bool object mask at ``resolution``.
        band_pixels: a rim vertex (on an edge between a camera-facing and a back-facing face) counts as
            on the outline when it projects within this many pixels of the rendered silhouette's edge; a
            vertex counts as contradicted when it projects more than this outside ``target``.
        rings: the freedom halves with each edge ring around those vertices, for this many rings.
    """
    vertices = vertices.detach().float()
    device = vertices.device
    camera = camera.to(device)
    rotation, _ = camera.view_transform()
    facing = (face_normals(vertices, faces) @ rotation[0].T)[:, 2] > 0  # (F,)
    adjacency = edge_adjacent_faces(faces)
    rim_edges = adjacency.edges[facing[adjacency.faces[:, 0]] != facing[adjacency.faces[:, 1]]]
    rim = torch.zeros(vertices.shape[0], dtype=torch.bool, device=device)
    rim[rim_edges.reshape(-1)] = True

    hard = RasterSettings(resolution, soft=False)  # its alpha is the hard coverage mask
    silhouette = render(vertices, faces, camera, hard, outputs="alpha").alpha[0, ..., 0]  # (R, R)
    inside = (silhouette > 0.5).cpu().numpy()
    eroded = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    edge = inside & ~eroded
    to_edge = distance_to_foreground(edge)  # (R, R) pixels, exact: the same bits on every call
    outside_target = distance_to_foreground(np.asarray(target, dtype=bool))
    projected = camera.project(vertices)[0, :, :2].cpu().numpy()  # (V, 2) NDC
    column = np.clip(((projected[:, 0] + 1) * resolution / 2).astype(np.int64), 0, resolution - 1)
    row = np.clip(((1 - projected[:, 1]) * resolution / 2).astype(np.int64), 0, resolution - 1)
    off_image = (np.abs(projected) > 1).any(axis=1)
    on_outline = torch.from_numpy(to_edge[row, column] <= band_pixels).to(device) & rim
    contradicted = torch.from_numpy((outside_target[row, column] > band_pixels) | off_image).to(device)
    freedom = (on_outline | contradicted).float()
    edges = adjacency.edges if adjacency.edges.numel() else rim_edges
    for _ in range(rings):
        spread = torch.zeros_like(freedom)
        spread = spread.scatter_reduce(0, edges[:, 0], freedom[edges[:, 1]] / 2, reduce="amax")
        spread = spread.scatter_reduce(0, edges[:, 1], freedom[edges[:, 0]] / 2, reduce="amax")
        freedom = torch.maximum(freedom, spread)
    return freedom


@torch.no_grad()
def moved_texels(
    before: Tensor,
    after: Tensor,
    faces: Tensor,
    uvs: Tensor,
    face_uvs: Tensor,
    size: tuple[int, int],
    distance: float,
) -> np.ndarray:
    """(H, W) bool: covered texels whose surface point moved more than ``distance`` times the diagonal
    of ``before`` (V, 3) on the way to ``after`` (V, 3); texels outside every UV triangle are False."""
    before, after = before.detach().float().cpu(), after.detach().float().cpu()
    texel_face, texel_bary = uv_rasterize(uvs.float().cpu(), face_uvs.cpu(), *size)
    index, points_before, _ = texel_surface(before, faces.cpu(), texel_face, texel_bary)
    _, points_after, _ = texel_surface(after, faces.cpu(), texel_face, texel_bary)
    diagonal = float((before.max(0).values - before.min(0).values).norm())
    far = ((points_after - points_before).norm(dim=-1) > distance * diagonal).numpy()
    moved = np.zeros(size, bool)
    moved[index[:, 0].numpy(), index[:, 1].numpy()] = far
    return moved
