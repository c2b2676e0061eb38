"""Deformed superquadric primitives and their meshes: the building blocks of the synthetic objects.

Contract:

- Frame: the project's (Y up); every synthetic object's **front faces +Z**, so its own **left is +X**.
  Objects are symmetric about the plane x = 0 exactly: a mirrored part is its partner reflected
  (``Superquadric.mirrored``), and a part on the plane is symmetrised vertex by vertex
  (``primitive_vertices``).
- A primitive is a superquadric ``x = a cos^e1(eta) cos^e2(w)``, ``y = b cos^e1(eta) sin^e2(w)``,
  ``z = c sin^e1(eta)`` (ellipsoids: e ~ 1, boxes: small e, cylinders: small e1, e2 = 1), tapered
  (x and y scaled by ``1 + k z / c``) and bent (``y += bend c (z / c)^2``), then rotated and moved.
  Parts on the plane rotate about the x axis only, so their local x stays the object's x.
  ``Superquadric.inside`` is the implicit inside test of the same deformed shape.
- Primitive meshes share one lat-long grid (``grid_mesh``: 8 latitude bands, 16 longitudes, 114 vertices,
  224 triangles), triangulated symmetrically so that parts on the plane are symmetric meshes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

MIRROR_X = np.array([-1.0, 1.0, 1.0])
N_LAT = 8
"""Latitude bands of a primitive's mesh grid (poles included)."""
N_LON = 16
"""Longitude columns of a primitive's mesh grid (even, so the grid is mirror symmetric)."""


def _spow(value: np.ndarray, exponent: float) -> np.ndarray:
    clean = np.where(np.abs(value) < 1e-9, 0.0, value)
    return np.sign(clean) * np.abs(clean) ** exponent


def rot_x(degrees: float) -> np.ndarray:
    """Rotation about x (keeps the symmetry plane): maps local z to (0, -sin, cos)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(degrees: float) -> np.ndarray:
    """Rotation about y: maps local z to (sin, 0, cos)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(degrees: float) -> np.ndarray:
    """Rotation about z."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Superquadric:
    """One deformed, posed superquadric (module docstring); ``mirrored`` reflects it in x = 0 at the end."""

    radii: tuple[float, float, float]
    exponents: tuple[float, float]
    rotation: np.ndarray  # (3, 3) local -> object
    translation: np.ndarray  # (3,)
    taper: tuple[float, float] = (0.0, 0.0)
    bend: float = 0.0
    mirrored: bool = False

    def surface(self, eta: np.ndarray, omega: np.ndarray) -> np.ndarray:
        """Object-space points (..., 3) at latitude ``eta`` in [-pi/2, pi/2] and longitude ``omega``."""
        a, b, c = self.radii
        e1, e2 = self.exponents
        ring = _spow(np.cos(eta), e1)
        x = a * ring * _spow(np.cos(omega), e2)
        y = b * ring * _spow(np.sin(omega), e2)
        z = c * _spow(np.sin(eta), e1) * np.ones_like(x)
        relative = z / c
        x = x * (1.0 + self.taper[0] * relative)
        y = y * (1.0 + self.taper[1] * relative) + self.bend * c * relative**2
        points = np.stack([x, y, z], axis=-1) @ self.rotation.T + self.translation
        return points * MIRROR_X if self.mirrored else points

    def inside(self, points: np.ndarray, margin: float = 0.02) -> np.ndarray:
        """(N,) bool: object-space points (N, 3) strictly inside (by ``margin`` of the implicit function)."""
        if self.mirrored:
            points = points * MIRROR_X
        x, y, z = ((points - self.translation) @ self.rotation).T  # local coordinates
        a, b, c = self.radii
        e1, e2 = self.exponents
        relative = z / c
        y = y - self.bend * c * relative**2
        scale_x, scale_y = 1.0 + self.taper[0] * relative, 1.0 + self.taper[1] * relative
        valid = (scale_x > 1e-3) & (scale_y > 1e-3) & (np.abs(relative) < 1.0)
        x, y = x / np.where(valid, scale_x, 1.0), y / np.where(valid, scale_y, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            ring = (np.abs(x / a) ** (2.0 / e2) + np.abs(y / b) ** (2.0 / e2)) ** (e2 / e1)
            value = ring + np.abs(relative) ** (2.0 / e1)
        return valid & (value < 1.0 - margin)

    def scaled(self, factor: float, centre: np.ndarray) -> Superquadric:
        """The same primitive in coordinates ``factor * (p - centre)`` (centre on the symmetry plane)."""
        radii = (self.radii[0] * factor, self.radii[1] * factor, self.radii[2] * factor)
        return replace(self, radii=radii, translation=factor * (self.translation - centre))


@dataclass(frozen=True)
class Part:
    """A named primitive of a category layout; ``mirror_of`` names the part it reflects."""

    name: str
    primitive: Superquadric
    mirror_of: str | None = None


@dataclass(frozen=True)
class KeypointSpec:
    """A keypoint on a part's surface at (eta, omega); ``mirror_of`` names the keypoint it reflects."""

    name: str
    part: str
    eta: float = 0.0
    omega: float = 0.0
    mirror_of: str | None = None


@functools.cache
def grid_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lat-long grid shared by all primitives.

    Returns:
        eta, omega: (V,) parameters of the V grid vertices (south pole, rings, north pole).
        faces: (F, 3) int64 vertex indices (orientation fixed later per primitive); the triangulation is
            mirror symmetric (omega -> pi - omega), so parts on the plane are symmetric meshes.
        face_uv_cells: (F, 3, 2) (row i, column j) of each corner in the (N_LAT + 1) x (N_LON + 1) UV grid.
    """
    etas = (
        [-math.pi / 2]
        + [-math.pi / 2 + math.pi * i / N_LAT for i in range(1, N_LAT) for _ in range(N_LON)]
        + [math.pi / 2]
    )
    omegas = [0.0] + [2 * math.pi * j / N_LON for _ in range(1, N_LAT) for j in range(N_LON)] + [0.0]
    last = 1 + (N_LAT - 1) * N_LON

    def vertex(i: int, j: int) -> int:
        return 0 if i == 0 else last if i == N_LAT else 1 + (i - 1) * N_LON + j % N_LON

    faces, cells = [], []
    for i in range(N_LAT):
        for j in range(N_LON):
            a, b, c, d = (i, j), (i, j + 1), (i + 1, j + 1), (i + 1, j)
            # the diagonal of quads on the x > 0 side mirrors the one on the x < 0 side
            on_right = math.cos(2 * math.pi * (j + 0.5) / N_LON) > 0
            for tri in ((a, b, c), (a, c, d)) if on_right else ((a, b, d), (b, c, d)):
                ids = [vertex(*corner) for corner in tri]
                if len(set(ids)) == 3:
                    faces.append(ids)
                    cells.append(tri)
    return np.array(etas), np.array(omegas), np.array(faces, dtype=np.int64), np.array(cells, dtype=np.int64)


@functools.cache
def grid_mirror_index() -> np.ndarray:
    """(V,) the grid vertex at omega -> pi - omega of each vertex (x -> -x for parts on the plane)."""
    index = [0]
    for _ in range(1, N_LAT):
        base = len(index)
        index.extend(base + (N_LON // 2 - j) % N_LON for j in range(N_LON))
    index.append(len(index))
    return np.array(index, dtype=np.int64)


def is_inside_out(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the closed surface (V, 3), (F, 3) has a negative signed volume (faces wound inwards)."""
    corners = vertices[faces]  # (F, 3, 3)
    volume = np.einsum("fi,fi->f", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum()
    return bool(volume < 0)


def primitive_vertices(part: Part) -> np.ndarray:
    """(V, 3) object-space grid vertices of a part, exactly symmetric when the part lies on the plane.

    A mirrored part's vertices are its partner's reflected (``Superquadric.surface`` reflects last).
    """
    eta, omega, _, _ = grid_mesh()
    points = part.primitive.surface(eta, omega)
    if part.mirror_of is None and not part.name.startswith("left_"):
        mirrored = points[grid_mirror_index()] * MIRROR_X
        points = 0.5 * (points + mirrored)
    return points
