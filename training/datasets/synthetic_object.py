"""One synthetic object: its parts merged into a TexturedMesh with a baked texture atlas, keypoints, voxels.

Contract:

- ``make_object(category, rng)`` draws the parts (``synthetic_categories``) and a look (``synthetic_texture``)
  and returns a ``SyntheticObject``: the merged mesh without the faces hidden inside other parts (faces
  whose three corners all lie inside another part; "watertight enough": each part is closed, the seams
  between parts are open where hidden faces were dropped), the part of each face, the keypoints and, on
  request, the solid voxels (the union of the parts' own voxelisations, each part being closed, on
  SoftRas's evaluation grid: ``shapenet.voxelize_like_softras``; index order [x, y, z]).
- Texture atlas: (64, 128, 3), a 2 x 4 grid of 32 x 32 tiles, one per part; a mirrored part shares its
  partner's tile (the colouring is symmetric, ``colour_at``). In a tile, column t (0..31) is longitude
  ``2 pi t / 31`` and row r is latitude ``pi / 2 - pi r / 31`` of the part's superquadric, so UVs run
  through texel centres and never bleed into a neighbouring tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from backend.geometry import TexturedMesh
from training.datasets.shapenet import voxelize_like_softras
from training.datasets.synthetic_categories import keypoints_of, sample_parts
from training.datasets.synthetic_shapes import (
    N_LAT,
    N_LON,
    Part,
    grid_mesh,
    is_inside_out,
    primitive_vertices,
)
from training.datasets.synthetic_texture import colour_at, sample_style

TILE = 32
ATLAS_ROWS, ATLAS_COLUMNS = 2, 4
ATLAS_SIZE = (ATLAS_ROWS * TILE, ATLAS_COLUMNS * TILE)
"""(height, width) of every synthetic object's texture."""


@dataclass(frozen=True)
class SyntheticObject:
    """A generated object (module docstring).

    Attributes:
        category: "bird", "car" or "chair".
        mesh: the merged TexturedMesh, Y up, front towards +Z, symmetric about x = 0.
        face_parts: (F,) int64 part index of each face (the part map label is this plus one).
        keypoints: (K, 3) float32 object-space keypoints (``synthetic_categories.CATEGORY_KEYPOINTS``).
        voxels: (32, 32, 32) bool [x, y, z] on SoftRas's grid, or None when not asked for.
        parts: the parts the object is made of.
    """

    category: str
    mesh: TexturedMesh
    face_parts: Tensor
    keypoints: Tensor
    voxels: Tensor | None
    parts: tuple[Part, ...]


def _tiles(parts: list[Part]) -> list[int]:
    """Atlas tile of each part: a new one per part, a mirrored part its partner's."""
    tiles: list[int] = []
    names: dict[str, int] = {}
    for part in parts:
        tile = names[part.mirror_of] if part.mirror_of is not None else len(set(tiles))
        tiles.append(tile)
        names[part.name] = tile
    if len(set(tiles)) > ATLAS_ROWS * ATLAS_COLUMNS:
        raise ValueError(
            f"{len(set(tiles))} texture tiles do not fit the {ATLAS_ROWS} x {ATLAS_COLUMNS} atlas"
        )
    return tiles


def _tile_uvs(tile: int) -> np.ndarray:
    """((N_LAT + 1) * (N_LON + 1), 2) UVs of the grid corners (row i from the south pole, column j)."""
    row, column = divmod(tile, ATLAS_COLUMNS)
    height, width = ATLAS_SIZE
    i, j = np.meshgrid(np.arange(N_LAT + 1), np.arange(N_LON + 1), indexing="ij")
    texel_x = column * TILE + (TILE - 1) * j / N_LON
    texel_y = row * TILE + (TILE - 1) * (1.0 - i / N_LAT)
    uv = np.stack([(texel_x + 0.5) / width, 1.0 - (texel_y + 0.5) / height], axis=-1)
    return uv.reshape(-1, 2)


def _bake(parts: list[Part], tiles: list[int], rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 texture atlas of the parts' procedural colours."""
    style = sample_style(rng, len(parts))
    atlas = np.full((*ATLAS_SIZE, 3), 0.5, dtype=np.float32)
    steps = np.arange(TILE) / (TILE - 1)
    eta = (math.pi / 2 - math.pi * steps)[:, None] * np.ones((1, TILE))  # (T, T), row r
    omega = (2 * math.pi * steps)[None, :] * np.ones((TILE, 1))  # (T, T), column t
    for index, (part, tile) in enumerate(zip(parts, tiles, strict=True)):
        if part.mirror_of is not None:
            continue  # shares its partner's tile
        points = part.primitive.surface(eta, omega).reshape(-1, 3)
        colours = colour_at(style, points, np.full(points.shape[0], index))
        row, column = divmod(tile, ATLAS_COLUMNS)
        atlas[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE] = colours.reshape(
            TILE, TILE, 3
        )
    return atlas


def make_object(category: str, rng: np.random.Generator, with_voxels: bool = True) -> SyntheticObject:
    """A random object of ``category`` drawn with ``rng`` (module docstring)."""
    parts = sample_parts(category, rng)
    tiles = _tiles(parts)
    _, _, grid_faces, grid_cells = grid_mesh()
    uv_cells = grid_cells[..., 0] * (N_LON + 1) + grid_cells[..., 1]  # (F, 3) within a tile
    uv_per_tile = (N_LAT + 1) * (N_LON + 1)

    part_vertices = [primitive_vertices(part) for part in parts]
    part_faces = []
    part_face_uvs = []
    for vertices, tile in zip(part_vertices, tiles, strict=True):
        flip = is_inside_out(vertices, grid_faces)
        part_faces.append(grid_faces[:, ::-1] if flip else grid_faces)
        part_face_uvs.append((uv_cells[:, ::-1] if flip else uv_cells) + tile * uv_per_tile)

    # faces hidden inside another part: all three corners inside it
    hidden = []
    for index, vertices in enumerate(part_vertices):
        inside = np.zeros(vertices.shape[0], dtype=bool)
        for other, part in enumerate(parts):
            if other != index:
                inside |= part.primitive.inside(vertices)
        hidden.append(inside[part_faces[index]].all(axis=1))

    offsets = np.cumsum([0] + [v.shape[0] for v in part_vertices])
    faces = np.concatenate([f[~h] + o for f, h, o in zip(part_faces, hidden, offsets, strict=False)])
    face_uvs = np.concatenate([f[~h] for f, h in zip(part_face_uvs, hidden, strict=True)])
    face_parts = np.concatenate([np.full(int((~h).sum()), i) for i, h in enumerate(hidden)])
    vertices = np.concatenate(part_vertices)
    used, faces = np.unique(faces, return_inverse=True)
    uvs_all = np.concatenate([_tile_uvs(t) for t in range(max(tiles) + 1)])
    used_uvs, face_uvs = np.unique(face_uvs, return_inverse=True)

    mesh = TexturedMesh(
        vertices=torch.from_numpy(vertices[used].astype(np.float32)),
        faces=torch.from_numpy(faces.reshape(-1, 3).astype(np.int64)),
        uvs=torch.from_numpy(uvs_all[used_uvs].astype(np.float32)),
        face_uvs=torch.from_numpy(face_uvs.reshape(-1, 3).astype(np.int64)),
        texture=torch.from_numpy(_bake(parts, tiles, rng)),
    )
    voxels = None
    if with_voxels:
        voxels = torch.zeros(32, 32, 32, dtype=torch.bool, device="cpu")  # data generation runs on the CPU
        for vertices_part, faces_part in zip(part_vertices, part_faces, strict=True):
            part_vertices_tensor = torch.from_numpy(vertices_part.astype(np.float32))
            voxels |= voxelize_like_softras(part_vertices_tensor, torch.from_numpy(faces_part.copy()))
    return SyntheticObject(
        category=category,
        mesh=mesh,
        face_parts=torch.from_numpy(face_parts.astype(np.int64)),
        keypoints=torch.from_numpy(keypoints_of(category, parts).astype(np.float32)),
        voxels=voxels,
        parts=tuple(parts),
    )
