"""Symmetric sphere templates with a fixed UV layout, built in code (no data files at run time).

Two templates, both unit spheres centred at the origin, bilaterally symmetric about the plane x = 0
and UV-mapped by spherical coordinates, so every method that deforms one of them shares its UV
layout (textures move between results by copying the image):

- ``icosphere_template(level=3)``: an icosahedron with vertices (±1, ±t, 0), (0, ±1, ±t), (±t, 0, ±1)
  (t the golden ratio) subdivided ``level`` times at edge midpoints and projected onto the sphere.
  Level 3 (the default) has 642 vertices, 1280 faces, the connectivity of SoftRas/CMR/UMR's
  642-vertex sphere in another orientation: here the poles (0, ±1, 0) are midpoints of icosahedron
  edges (valence 6). Level 4 has 2562 vertices and 5120 faces. Vertex order is deterministic: the 12
  icosahedron vertices, then the midpoints in order of creation, so each level's vertices are the
  first vertices of the next. Texture (128, 256, 3) at every level.
- ``uv_sphere_template()``: a UV sphere with 32 segments and 16 latitude bands (ConvMesh/MeshInversion):
  15 rings of 32 vertices plus 2 poles = 482 vertices, 960 faces. Texture (512, 512, 3), the
  resolution of MeshInversion's GAN textures.

UV layout (both templates). With the azimuth ``phi = atan2(x, z)`` about the Y (up) axis,
``u = 0.5 + phi / (2 pi)`` and ``v = 0.5 + asin(y) / pi``: the front (+z, facing a camera on +Z)
is at u = 0.5, v = 1 is the north pole. The seam is the back half of the symmetry plane
(x = 0, z < 0), at u = 0 / u = 1. Mirroring x -> -x maps u -> 1 - u and keeps v, so the mirror of a
texture is its left-right flip (``mirror_texture``). Vertices on the back seam get two UVs (u = 0 for
faces on the left, x < 0; u = 1 for faces on the right). Each face touching a pole gets its own pole
UV at the mean u of its other two corners. On the level-3 icosphere the symmetry plane cuts through
16 faces at the back (8 between each pole and the nearest on-plane icosahedron vertex; twice as many
at each further level); such a face is mapped onto the right half of the texture with its left corner
clamped to u = 1 at its own v. So every UV lies in [0, 1] and no face spans more than 0.5 in u, at
the cost of a squeezed texture on those thin faces near the back of the poles.

Symmetry bookkeeping: a vertex is on the plane when |x| < 1e-6; every other vertex with x > 0 (right)
is paired with the vertex nearest to its mirror image (left); construction then snaps the pairs to
exact mirror images. ``free_index`` (plane and right vertices, ascending) are the vertices a symmetric
model predicts; ``symmetrize_vertices`` rebuilds the rest. A face is *right* when all its vertices have
x > -1e-6 and at least one x > 1e-6 (vertices on the plane may touch it), *left* in the mirror case,
and *plane* (straddling) when it has vertices strictly on both sides. The level-3 icosphere has 32
plane vertices, 305 pairs (337 free vertices), and 32 / 624 / 624 plane / right / left faces (level 4:
64 plane vertices, 1249 pairs, 1313 free, 64 / 2528 / 2528 faces); the UV sphere, whose plane runs
along two vertex columns, has 32 plane vertices, 225 pairs and 0 / 480 / 480 faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from backend.geometry.mesh import TexturedMesh

PLANE_TOLERANCE = 1e-6
"""Vertices with |x| below this are on the symmetry plane."""

ICOSPHERE_TEXTURE_SIZE = (128, 256)
"""(height, width) of the icosphere template's texture."""

UV_SPHERE_TEXTURE_SIZE = (512, 512)
"""(height, width) of the UV-sphere template's texture (MeshInversion's GAN texture size)."""

MAX_ICOSPHERE_LEVEL = 6
"""Most subdivisions ``icosphere_template`` accepts (40962 vertices)."""

TEMPLATE_GREY = 0.5
"""Value of every texel of a template's default texture."""


@dataclass(frozen=True)
class SymmetricTemplate:
    """A template mesh bilaterally symmetric about x = 0, with its symmetry bookkeeping.

    Attributes:
        name: "icosphere" or "uv_sphere".
        mesh: the unit-sphere TexturedMesh with V vertices, F faces and a mid-grey texture.
        mirror_index: (V,) int64, the vertex at the mirror image of each vertex (itself on the plane).
        plane_index: (P,) int64, vertices on the plane x = 0, ascending.
        right_index: (K,) int64, vertices with x > 0, ascending.
        left_index: (K,) int64, ``left_index[k]`` is the mirror of ``right_index[k]``.
        free_index: (P + K,) int64, plane and right vertices, ascending: what a symmetric model predicts.
        face_side: (F,) int64, +1 right face, -1 left face, 0 plane (straddling) face.
    """

    name: str
    mesh: TexturedMesh
    mirror_index: Tensor
    plane_index: Tensor
    right_index: Tensor
    left_index: Tensor
    free_index: Tensor
    face_side: Tensor

    @property
    def num_free(self) -> int:
        """Number of free vertices (plane + right)."""
        return int(self.free_index.shape[0])

    def to(self, device: torch.device | str) -> SymmetricTemplate:
        """The same template with every tensor on ``device``."""
        return SymmetricTemplate(
            self.name,
            self.mesh.to(device),
            self.mirror_index.to(device),
            self.plane_index.to(device),
            self.right_index.to(device),
            self.left_index.to(device),
            self.free_index.to(device),
            self.face_side.to(device),
        )


def icosphere_template(level: int = 3) -> SymmetricTemplate:
    """The icosphere subdivided ``level`` times: ``10 * 4**level + 2`` vertices, ``20 * 4**level`` faces.

    The default, level 3, is the 642-vertex / 1280-face template; level 4 has 2562 vertices and 5120
    faces. The vertices of level ``k`` are the first ``10 * 4**k + 2`` vertices of level ``k + 1``, and
    every other vertex of level ``k + 1`` is the (projected) midpoint of an edge of level ``k``. The
    texture is 128 x 256 at every level.

    >>> template = icosphere_template()
    >>> template.mesh.num_vertices, template.mesh.num_faces, template.num_free
    (642, 1280, 337)
    >>> icosphere_template(level=4).mesh.num_vertices
    2562
    """
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= MAX_ICOSPHERE_LEVEL:
        raise ValueError(f"level must be an int in 0..{MAX_ICOSPHERE_LEVEL}, got {level!r}")
    vertices, faces = _icosahedron()
    for _ in range(level):
        vertices, faces = _subdivide(vertices, faces)
    return _make_template("icosphere", vertices, faces, ICOSPHERE_TEXTURE_SIZE)


def uv_sphere_template(segments: int = 32, rings: int = 16) -> SymmetricTemplate:
    """A UV sphere with ``segments`` columns and ``rings`` latitude bands (default 482 v, 960 f).

    Vertex 0 is the north pole (0, 1, 0), then ``rings - 1`` rings from north to south, each of
    ``segments`` vertices with column j at azimuth ``-pi + 2 pi j / segments`` (column 0 on the back
    seam), then the south pole. Quads are split along the diagonal that keeps the triangulation
    mirror-symmetric. ``segments`` must be even so that the plane x = 0 runs along two columns.

    >>> template = uv_sphere_template()
    >>> template.mesh.num_vertices, template.mesh.num_faces, template.mesh.uvs.shape[0]
    (482, 960, 559)
    """
    if segments < 4 or segments % 2:
        raise ValueError(f"segments must be an even number >= 4, got {segments}")
    if rings < 2:
        raise ValueError(f"rings must be >= 2, got {rings}")
    polar = np.arange(1, rings) * math.pi / rings  # (rings - 1,) angle from the north pole
    azimuth = -math.pi + 2 * math.pi * np.arange(segments) / segments  # (segments,)
    radius = np.sin(polar)[:, None]
    ring_vertices = np.stack(
        [
            radius * np.sin(azimuth)[None, :],
            np.broadcast_to(np.cos(polar)[:, None], (rings - 1, segments)),
            radius * np.cos(azimuth)[None, :],
        ],
        axis=-1,
    ).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, 1.0, 0.0]], ring_vertices, [[0.0, -1.0, 0.0]]])
    south = vertices.shape[0] - 1

    def ring(k: int, j: int) -> int:  # vertex of ring k (0-based from the north) in column j
        return 1 + k * segments + j % segments

    faces = []
    for j in range(segments):
        faces.append((0, ring(0, j), ring(0, j + 1)))
        faces.append((south, ring(rings - 2, j + 1), ring(rings - 2, j)))
        for k in range(rings - 2):
            a, b = ring(k, j), ring(k, j + 1)
            c, d = ring(k + 1, j + 1), ring(k + 1, j)
            if j >= segments // 2:  # right half (x > 0): the mirror image of the left split
                faces.extend([(a, d, b), (b, d, c)])
            else:
                faces.extend([(a, d, c), (a, c, b)])
    return _make_template("uv_sphere", vertices, np.array(faces), UV_SPHERE_TEXTURE_SIZE)


def symmetrize_vertices(vertices_free: Tensor, template: SymmetricTemplate) -> Tensor:
    """Full symmetric vertices from the free ones: left vertices are mirrored right ones.

    Args:
        vertices_free: (B, P + K, 3) or (P + K, 3), rows in ``template.free_index`` order.
        template: the template defining the symmetry.

    Returns:
        (B, V, 3), or (V, 3) for unbatched input. Plane vertices get x = 0; differentiable.
    """
    if vertices_free.dim() not in (2, 3) or vertices_free.shape[-2:] != (template.num_free, 3):
        raise ValueError(
            f"vertices_free must have shape (B, {template.num_free}, 3) or ({template.num_free}, 3), "
            f"got {tuple(vertices_free.shape)}"
        )
    num_vertices = template.mesh.num_vertices
    device = vertices_free.device
    source = torch.empty(num_vertices, dtype=torch.long, device=device)  # (V,) row in vertices_free
    source[template.free_index.to(device)] = torch.arange(template.num_free, device=device)
    source[template.left_index.to(device)] = source[template.right_index.to(device)]
    sign = torch.ones(num_vertices, 3, dtype=vertices_free.dtype, device=device)  # (V, 3)
    sign[template.left_index.to(device), 0] = -1.0
    sign[template.plane_index.to(device), 0] = 0.0
    return vertices_free[..., source, :] * sign


def select_free_vertices(vertices: Tensor, template: SymmetricTemplate) -> Tensor:
    """The free vertices (B, P + K, 3) or (P + K, 3) of full vertices (B, V, 3) or (V, 3).

    The inverse of ``symmetrize_vertices`` for symmetric vertices.
    """
    if vertices.dim() not in (2, 3) or vertices.shape[-2:] != (template.mesh.num_vertices, 3):
        raise ValueError(
            f"vertices must have shape (B, {template.mesh.num_vertices}, 3), got {tuple(vertices.shape)}"
        )
    return vertices[..., template.free_index.to(vertices.device), :]


def symmetrize_offsets(offsets: Tensor, template: SymmetricTemplate) -> Tensor:
    """The nearest symmetric offsets: each pair averaged with x negated; x of plane vertices is 0.

    Args:
        offsets: (B, V, 3) or (V, 3) per-vertex displacements of the template.
        template: the template defining the symmetry.

    Returns:
        Offsets of the same shape with ``out[i] = mirror(out[mirror_index[i]])``; differentiable.
    """
    if offsets.dim() not in (2, 3) or offsets.shape[-2:] != (template.mesh.num_vertices, 3):
        raise ValueError(
            f"offsets must have shape (B, {template.mesh.num_vertices}, 3), got {tuple(offsets.shape)}"
        )
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=offsets.dtype, device=offsets.device)
    return (offsets + offsets[..., template.mirror_index.to(offsets.device), :] * flip) / 2


def mirror_texel_index(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """For each texel of a template texture, the (row, column) texel at the mirrored surface point.

    Mirroring x -> -x maps u -> 1 - u, so texel (i, j) maps to (i, width - 1 - j). Valid for both
    templates of this module.

    Returns:
        (height, width, 2) int64 on ``device``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"texture size must be positive, got {height} x {width}")
    rows = torch.arange(height, device=device)[:, None].expand(height, width)
    columns = (width - 1 - torch.arange(width, device=device))[None, :].expand(height, width)
    return torch.stack([rows, columns], dim=-1)


def mirror_texture(texture: Tensor) -> Tensor:
    """The texture of the mirrored surface: ``out[i, j] = texture[i, W - 1 - j]``.

    Used to fill the hidden side of a template texture from the visible side.

    Args:
        texture: (H, W, C) or (B, H, W, C).

    Returns:
        A tensor of the same shape.

    >>> mirror_texture(torch.arange(3.0).reshape(1, 3, 1))[0, :, 0]
    tensor([2., 1., 0.])
    """
    if texture.dim() not in (3, 4):
        raise ValueError(f"texture must have shape (H, W, C) or (B, H, W, C), got {tuple(texture.shape)}")
    return texture.flip(-2)


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """The 12 unit vertices (12, 3) and 20 outward faces (20, 3) of the icosahedron."""
    t = (1 + math.sqrt(5)) / 2
    vertices = []
    for a in (-1.0, 1.0):
        for b in (-t, t):
            vertices += [(a, b, 0.0), (0.0, a, b), (b, 0.0, a)]
    corners = np.array(vertices)
    # Faces are the triples of mutually adjacent vertices; the edge length is 2.
    adjacent = np.isclose(np.linalg.norm(corners[:, None] - corners[None], axis=-1), 2.0)
    faces = [
        (i, j, k)
        for i in range(12)
        for j in range(i + 1, 12)
        for k in range(j + 1, 12)
        if adjacent[i, j] and adjacent[j, k] and adjacent[i, k]
    ]
    corners /= np.linalg.norm(corners, axis=1, keepdims=True)
    return corners, _orient_outward(corners, np.array(faces))


def _subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split each face into four at its edge midpoints, projected onto the unit sphere."""
    points = [tuple(p) for p in vertices]
    midpoint: dict[tuple[int, int], int] = {}

    def middle(i: int, j: int) -> int:
        key = (min(i, j), max(i, j))
        if key not in midpoint:
            point = (vertices[i] + vertices[j]) / 2
            points.append(tuple(point / np.linalg.norm(point)))
            midpoint[key] = len(points) - 1
        return midpoint[key]

    new_faces = []
    for a, b, c in faces.tolist():
        ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
        new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    return np.array(points), np.array(new_faces)


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces reordered to be counter-clockwise seen from outside a mesh star-shaped about 0."""
    corners = vertices[faces]  # (F, 3, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    inward = (normals * corners.mean(axis=1)).sum(axis=1) < 0
    oriented = faces.copy()
    oriented[inward] = faces[inward][:, [0, 2, 1]]
    return oriented


def _make_template(
    name: str, vertices: np.ndarray, faces: np.ndarray, texture_size: tuple[int, int]
) -> SymmetricTemplate:
    vertices = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    on_plane = np.abs(vertices[:, 0]) < PLANE_TOLERANCE
    vertices[on_plane, 0] = 0.0
    mirror = _mirror_index(vertices, on_plane)
    right = np.flatnonzero(vertices[:, 0] > 0)
    vertices[mirror[right]] = vertices[right] * np.array([-1.0, 1.0, 1.0])  # exact mirror images
    uvs, face_uvs = _spherical_uvs(vertices, faces)
    side = np.sign(vertices[:, 0])[faces]  # (F, 3)
    face_side = np.where((side >= 0).all(axis=1), 1, np.where((side <= 0).all(axis=1), -1, 0))
    # templates are built once on the CPU; users move them with ``SymmetricTemplate.to(device)``
    cpu = "cpu"
    texture = torch.full((*texture_size, 3), TEMPLATE_GREY, device=cpu)
    mesh = TexturedMesh(
        torch.tensor(vertices, dtype=torch.float32, device=cpu),
        torch.tensor(faces, dtype=torch.long, device=cpu),
        torch.tensor(uvs, dtype=torch.float32, device=cpu),
        torch.tensor(face_uvs, dtype=torch.long, device=cpu),
        texture,
    )
    plane = np.flatnonzero(on_plane)
    return SymmetricTemplate(
        name=name,
        mesh=mesh,
        mirror_index=torch.tensor(mirror, dtype=torch.long, device=cpu),
        plane_index=torch.tensor(plane, dtype=torch.long, device=cpu),
        right_index=torch.tensor(right, dtype=torch.long, device=cpu),
        left_index=torch.tensor(mirror[right], dtype=torch.long, device=cpu),
        free_index=torch.tensor(np.union1d(plane, right), dtype=torch.long, device=cpu),
        face_side=torch.tensor(face_side, dtype=torch.long, device=cpu),
    )


def _mirror_index(vertices: np.ndarray, on_plane: np.ndarray) -> np.ndarray:
    """(V,) index of the vertex nearest to each vertex's mirror image; raises if none is close."""
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    _, mirror = cKDTree(vertices).query(mirrored)  # (V,) nearest vertex: a k-d tree, not a (V, V) matrix
    mirror[on_plane] = np.flatnonzero(on_plane)
    worst = np.linalg.norm(mirrored - vertices[mirror], axis=1).max()
    if worst > 1e-5 or not (mirror[mirror] == np.arange(len(vertices))).all():
        raise ValueError(f"template is not symmetric about x = 0 (mirror distance {worst:.3g})")
    return mirror


def _spherical_uvs(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UVs (T, 2) and face UV indices (F, 3) of the spherical layout described in the module docstring."""
    x, y, z = vertices.T
    u = 0.5 + np.arctan2(x, z) / (2 * math.pi)  # (V,) in [0, 1]
    v = 0.5 + np.arcsin(np.clip(y, -1.0, 1.0)) / math.pi
    pole = (np.abs(x) < PLANE_TOLERANCE) & (np.abs(z) < PLANE_TOLERANCE)
    back_seam = (np.abs(x) < PLANE_TOLERANCE) & (z < 0) & ~pole
    uvs: list[tuple[float, float]] = []
    corner_uv: dict[tuple[int, float], int] = {}
    face_uvs = np.empty_like(faces)
    for f, face in enumerate(faces.tolist()):
        corner_u = {i: float(u[i]) for i in face if not pole[i]}
        values = list(corner_u.values())
        if any(back_seam[i] for i in corner_u) or max(values) - min(values) > 0.5:
            # The face touches or crosses the seam: put it on the right (u near 1) if it has a
            # vertex with x > 0, else on the left; corners on the other side go onto the seam.
            on_right = any(x[i] > PLANE_TOLERANCE for i in corner_u)
            for i, value in corner_u.items():
                if on_right and value < 0.5:
                    corner_u[i] = 1.0
                elif not on_right and value > 0.5:
                    corner_u[i] = 0.0
        for k, i in enumerate(face):
            if pole[i]:
                others = [corner_u[j] for j in face if j != i]
                uvs.append((sum(others) / len(others), float(v[i])))
                face_uvs[f, k] = len(uvs) - 1
            else:
                key = (i, corner_u[i])
                if key not in corner_uv:
                    uvs.append((corner_u[i], float(v[i])))
                    corner_uv[key] = len(uvs) - 1
                face_uvs[f, k] = corner_uv[key]
    return np.array(uvs), face_uvs
