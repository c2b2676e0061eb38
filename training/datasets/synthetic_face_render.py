"""Rendering a synthetic face with Unsup3d's camera: Lambert shading in the canonical frame, then a view.

Contract (Unsup3d's image formation, which the unsup3d model inverts; facts of its renderer):

- Frame: camera at the origin, x right, y down, z forward (depth). Perspective with field of view
  ``fov`` (10 degrees) and Unsup3d's intrinsics ``f = (S - 1) / 2 / tan(fov / 2)``, ``c = (S - 1) / 2``: the
  centre of pixel (row i, column j) lies on the ray ``(u, v) = ((2 j - (S - 1)) / (S - 1), (2 i - (S - 1)) /
  (S - 1))`` of ``synthetic_face_model``, whatever the image size S.
- View ``(rx, ry, rz, tx, ty, tz)``: angles in degrees, translations in depth units (the ``view`` of
  ``backend.models.unsup3d``, which this image formation matches). A canonical point p
  goes to ``R (p - c) + c + t`` with ``c = (0, 0, ROTATION_CENTRE_DEPTH)`` and ``R = Rz(rz) Ry(ry) Rx(rx)``
  (``rotation_matrix``), as Unsup3d's ``get_transform_matrices`` and ``rotate_pts``.
- Light ``(ambient, diffuse, dx, dy)``: the shading of a point with normal n is ``ambient + diffuse *
  max(0, n . l)``, ``l = (dx, dy, 1) / |(dx, dy, 1)|``, with Unsup3d's normals: the cross product of the
  horizontal and the vertical central differences of the canonical 3-D grid (so a fronto-parallel plane
  has n = (0, 0, 1) and is lit fully by l = (0, 0, 1)); in the project's frame of
  ``backend.models.unsup3d.shade`` the same light has the direction ``normalize(-dx, dy, 1)``. The shading
  is applied in the canonical frame, before the view (the light turns with the object, as in Unsup3d's
  model).
- ``render_face`` builds the canonical object as a depth-grid mesh (rays ``|u|, |v| <= GRID_EXTENT``, so
  that the background plane still fills the picture under the largest views), colours its vertices with
  albedo x shading, moves it by the view and rasterises it with the project's rasterizer
  (``backend.render.rasterize``, perspective-correct, hard coverage) at ``supersample`` x the image size
  (odd, so that the central sub-pixel of each pixel sits on the pixel centre). The image is the mean of
  the sub-pixels; the depth (z of the visible surface) and the mask (the visible triangle lies inside the
  face ellipse) are read at the pixel centres. Pixels that no triangle covers (only possible for views
  beyond the defaults) get the background colour, depth ``FAR_DEPTH`` and mask 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.render import RasterSettings, rasterize
from backend.render.shade import interpolate_vertex_attributes
from training.datasets.synthetic_face_model import (
    SyntheticFace,
    canonical_depth,
    face_albedo,
    face_radius,
)

FOV = 10.0
"""Unsup3d's field of view in degrees."""
ROTATION_CENTRE_DEPTH = 1.0
"""Depth of the point the views rotate about (Unsup3d's ``rot_center_depth``)."""
GRID_EXTENT = 1.8
"""Half extent, in (u, v), of the canonical mesh: covers the picture under 25-degree yaws."""
FAR_DEPTH = 1.1 + 0.1
"""Depth written where nothing is visible (Unsup3d clamps its warped depth to max + margin likewise)."""


@dataclass(frozen=True)
class FaceRender:
    """One rendered face, S x S.

    Attributes:
        image: (S, S, 3) float32 RGB in [0, 1].
        depth: (S, S) float32 depth of the visible surface at each pixel centre.
        mask: (S, S) bool, the face (not the background plane) at the pixel centre.
        coverage: (S, S) float32 in [0, 1], the fraction of sub-pixels showing the face (anti-aliased mask).
    """

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    coverage: np.ndarray


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """``Rz(rz) Ry(ry) Rx(rx)`` (3, 3) for angles (3,) in degrees (Unsup3d's ``get_rotation_matrix``).

    >>> np.round(rotation_matrix(np.array([0.0, 90.0, 0.0])) @ np.array([0.0, 0.0, 1.0]), 6)
    array([1., 0., 0.])
    """
    rx, ry, rz = (math.radians(float(a)) for a in angles)
    cx, sx, cy, sy, cz, sz = (
        math.cos(rx),
        math.sin(rx),
        math.cos(ry),
        math.sin(ry),
        math.cos(rz),
        math.sin(rz),
    )
    x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return z @ y @ x


def ray_grid(count: int, extent: float = 1.0) -> np.ndarray:
    """(count,) ray coordinates ``extent * (2 j - (count - 1)) / (count - 1)``: exactly antisymmetric, so
    ``grid[::-1] == -grid`` bitwise (the face's mirror symmetry survives sampling)."""
    steps = 2.0 * np.arange(count) - (count - 1)
    return extent * (steps / (count - 1))


def unproject(u: np.ndarray, v: np.ndarray, depth: np.ndarray, fov: float = FOV) -> np.ndarray:
    """3-D points (..., 3) on the rays (u, v) (same shapes) at ``depth``: ``depth * (u t, v t, 1)``,
    ``t = tan(fov / 2)``."""
    t = math.tan(math.radians(fov) / 2)
    return np.stack([depth * u * t, depth * v * t, depth], axis=-1)


def grid_normals(points: np.ndarray) -> np.ndarray:
    """Unit normals (H, W, 3) of a grid of 3-D points (H, W, 3), Unsup3d's way: ``(p[i, j+1] - p[i, j-1])
    x (p[i+1, j] - p[i-1, j])``; (0, 0, 1) on the outermost rows and columns."""
    normals = np.zeros_like(points)
    normals[..., 2] = 1.0
    horizontal = points[1:-1, 2:] - points[1:-1, :-2]
    vertical = points[2:, 1:-1] - points[:-2, 1:-1]
    normals[1:-1, 1:-1] = np.cross(horizontal, vertical)
    return normals / (np.linalg.norm(normals, axis=-1, keepdims=True) + 1e-12)


def light_direction(light: np.ndarray) -> np.ndarray:
    """Unit direction (3,) of a light (ambient, diffuse, dx, dy)."""
    direction = np.array([light[2], light[3], 1.0])
    return direction / np.linalg.norm(direction)


def lambert(normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Shading (...,) of normals (..., 3) under a light (ambient, diffuse, dx, dy) (module docstring)."""
    return light[0] + light[1] * np.clip(normals @ light_direction(light), 0.0, None)


def grid_faces(rows: int, columns: int) -> np.ndarray:
    """(2 (rows - 1) (columns - 1), 3) int64 triangles of a row-major vertex grid, two per cell."""
    index = np.arange(rows * columns).reshape(rows, columns)
    top_left, top_right = index[:-1, :-1], index[:-1, 1:]
    bottom_left, bottom_right = index[1:, :-1], index[1:, 1:]
    first = np.stack([top_left, bottom_left, top_right], axis=-1).reshape(-1, 3)
    second = np.stack([top_right, bottom_left, bottom_right], axis=-1).reshape(-1, 3)
    return np.concatenate([first, second])


def render_face(
    face: SyntheticFace,
    view: np.ndarray,
    light: np.ndarray,
    size: int,
    *,
    fov: float = FOV,
    supersample: int = 3,
    grid_density: float = 1.0,
) -> FaceRender:
    """Render ``face`` from ``view`` (6,) under ``light`` (4,) at ``size`` x ``size`` (module docstring).

    ``grid_density`` is the canonical mesh's vertices per pixel (along each axis); ``supersample`` must be
    odd.
    """
    if supersample < 1 or supersample % 2 == 0:
        raise ValueError(f"supersample must be an odd positive number, got {supersample}")
    if size < 4:
        raise ValueError(f"size must be at least 4, got {size}")
    count = round(GRID_EXTENT * (size - 1) * grid_density) + 1
    axis = ray_grid(count, GRID_EXTENT)
    u, v = np.meshgrid(axis, axis)  # (G, G): u along columns, v along rows
    points = unproject(u, v, canonical_depth(face, u, v), fov)  # (G, G, 3)
    colors = face_albedo(face, u, v) * lambert(grid_normals(points), light)[..., None]  # (G, G, 3)
    inside = face_radius(face, u, v) < 1.0  # (G, G)

    centre = np.array([0.0, 0.0, ROTATION_CENTRE_DEPTH])
    moved = (points.reshape(-1, 3) - centre) @ rotation_matrix(view[:3]).T + centre + view[3:6]  # (V, 3)
    scale = (size - 1) / size / math.tan(math.radians(fov) / 2)  # ray coordinate -> NDC
    ndc = np.stack(
        [moved[:, 0] / moved[:, 2] * scale, -moved[:, 1] / moved[:, 2] * scale, moved[:, 2]], axis=-1
    )  # (V, 3): x right, y up, depth
    faces = grid_faces(count, count)  # (F, 3)
    face_inside = inside.reshape(-1)[faces].all(axis=1)  # (F,)

    big = size * supersample
    settings = RasterSettings(image_size=big, soft=False, perspective_correct=True)
    vertices = torch.from_numpy(ndc).float()[None]  # (1, V, 3)
    faces_t = torch.from_numpy(faces)
    fragments = rasterize(vertices, faces_t, settings)
    background = torch.tensor(face.background_color, dtype=torch.float32, device=vertices.device)
    rgb = background.repeat(big * big, 1)  # (big^2, 3)
    values = interpolate_vertex_attributes(
        fragments, torch.from_numpy(colors.reshape(-1, 3)).float(), faces_t
    )
    rgb[fragments.pixel] = values
    depth = torch.full((big * big,), FAR_DEPTH, device=vertices.device)
    depth[fragments.pixel] = fragments.depth.float()
    mask = torch.zeros(big * big, device=vertices.device)
    mask[fragments.pixel] = torch.from_numpy(face_inside).float()[fragments.face]

    image = F.avg_pool2d(rgb.reshape(1, big, big, 3).permute(0, 3, 1, 2), supersample)[0].permute(1, 2, 0)
    coverage = F.avg_pool2d(mask.reshape(1, 1, big, big), supersample)[0, 0]
    middle = supersample // 2
    centres = slice(middle, big, supersample)
    return FaceRender(
        image=image.clamp(0, 1).numpy().astype(np.float32),
        depth=depth.reshape(big, big)[centres, centres].numpy().astype(np.float32),
        mask=mask.reshape(big, big)[centres, centres].numpy() > 0.5,
        coverage=coverage.numpy().astype(np.float32),
    )


def sample_view(rng: np.random.Generator, max_angles: tuple[float, float, float], max_shift: float,
                max_depth_shift: float) -> np.ndarray:  # fmt: skip
    """A random view (6,): pitch, yaw, roll uniform in +-``max_angles`` (degrees), x and y shifts uniform
    in +-``max_shift``, the depth shift in +-``max_depth_shift``."""
    angles = rng.uniform(-1.0, 1.0, size=3) * np.asarray(max_angles)
    shifts = rng.uniform(-1.0, 1.0, size=3) * np.array([max_shift, max_shift, max_depth_shift])
    return np.concatenate([angles, shifts])


def sample_light(rng: np.random.Generator, ambient: tuple[float, float], diffuse: tuple[float, float],
                 max_angle: float) -> np.ndarray:  # fmt: skip
    """A random light (4,): ambient and diffuse uniform in their ranges, the direction within
    ``max_angle`` degrees of the view axis (angle uniform, azimuth uniform)."""
    strength_ambient = rng.uniform(*ambient)
    strength_diffuse = rng.uniform(*diffuse)
    tilt = math.tan(math.radians(rng.uniform(0.0, max_angle)))
    azimuth = rng.uniform(0.0, 2 * math.pi)
    return np.array([strength_ambient, strength_diffuse, tilt * math.cos(azimuth), tilt * math.sin(azimuth)])
