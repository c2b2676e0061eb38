"""The depth-grid mesh of Unsup3d (Wu, Rupprecht, Vedaldi 2020): a depth map as a triangle mesh.

Contract (the topology of the reference's ``demo.py`` export, in the project's conventions):

- Vertices ``N = H W + (H - 1)(W - 1)``: the H x W pixel centres, row-major (vertex ``i W + j`` is pixel
  (row i, column j)), then the (H - 1) x (W - 1) cell centres, row-major (vertex ``H W + i (W - 1) + j``
  is the centre of the cell whose top-left corner is pixel (i, j)).
- Faces ``F = 4 (H - 1)(W - 1)`` (``depth_grid_faces``): four triangles per cell, each joining the cell
  centre to one side of the cell (top, right, bottom, left, in that order, cell after cell, row-major),
  counter-clockwise as seen from the camera, so ``backend.geometry.ops.face_normals`` points towards
  the camera (+Z of the view space) for a surface facing it.
- UVs ``(N, 2)`` (``depth_grid_uvs``), indexed like the vertices (``face_uvs = faces``): the image grid,
  pixel (i, j) at ``u = (j + 0.5) / W``, ``v = 1 - (i + 0.5) / H`` (its centre in a texture that is the
  image itself, row 0 at the top), cell centres at ``u = (j + 1) / W``, ``v = 1 - (i + 1) / H``.
- Positions (``depth_grid_vertices``): the reference's perspective camera at the origin with field of
  view ``fov`` (degrees) and focal length ``f = (W - 1) / 2 / tan(fov / 2)`` pixels (``(H - 1) / 2 / ...``
  vertically), principal point at the image centre ``((W - 1) / 2, (H - 1) / 2)`` in pixel-centre units
  (pixel (i, j) is at x = j, y = i): the fov spans from the centre of the first pixel to the centre of
  the last, as in the reference. A pixel (x, y) at depth d unprojects to the view-space point
  ``(d (x - c_x) / f_x, -d (y - c_y) / f_y, -d)`` (right-handed, Y up, the camera looks down -Z; the
  reference's own frame is x right, y DOWN, z forward: ``diag(1, -1, -1)`` maps one to the other).
  Cell centres sit at pixel position (j + 0.5, i + 0.5) with the mean depth of their four corners.
  ``project_to_pixels`` is the inverse: view-space points -> pixel coordinates and depth.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_size(height: int, width: int) -> None:
    if height < 2 or width < 2:
        raise ValueError(f"a depth grid needs at least 2 x 2 pixels, got {height} x {width}")


def num_grid_vertices(height: int, width: int) -> int:
    """N = H W + (H - 1)(W - 1)."""
    return height * width + (height - 1) * (width - 1)


def depth_grid_faces(height: int, width: int, device: torch.device | str) -> Tensor:
    """Faces (F, 3) int64, F = 4 (H - 1)(W - 1): per cell (top, right, bottom, left) triangles (module doc).

    >>> depth_grid_faces(2, 2, "cpu").tolist()
    [[4, 1, 0], [4, 3, 1], [4, 2, 3], [4, 0, 2]]
    """
    _check_size(height, width)
    pixel = torch.arange(height * width, device=device).reshape(height, width)  # (H, W)
    top_left, top_right = pixel[:-1, :-1], pixel[:-1, 1:]  # (H - 1, W - 1) each
    bottom_left, bottom_right = pixel[1:, :-1], pixel[1:, 1:]
    centre = height * width + torch.arange((height - 1) * (width - 1), device=device)
    centre = centre.reshape(height - 1, width - 1)
    # seen from the camera (x right, y up) each (centre, a, b) turns counter-clockwise
    triangles = [
        (centre, top_right, top_left),
        (centre, bottom_right, top_right),
        (centre, bottom_left, bottom_right),
        (centre, top_left, bottom_left),
    ]
    faces = torch.stack([torch.stack(corners, dim=-1) for corners in triangles], dim=2)  # (H-1, W-1, 4, 3)
    return faces.reshape(-1, 3)


def depth_grid_uvs(height: int, width: int, device: torch.device | str) -> Tensor:
    """UVs (N, 2) on the image grid, indexed like the vertices (module docstring)."""
    _check_size(height, width)
    cols = torch.arange(width, device=device, dtype=torch.float32)
    rows = torch.arange(height, device=device, dtype=torch.float32)
    u = ((cols + 0.5) / width).expand(height, width)  # (H, W)
    v = (1.0 - (rows + 0.5) / height)[:, None].expand(height, width)
    u_centre = ((cols[:-1] + 1.0) / width).expand(height - 1, width - 1)  # (H - 1, W - 1)
    v_centre = (1.0 - (rows[:-1] + 1.0) / height)[:, None].expand(height - 1, width - 1)
    grid = torch.stack([u, v], dim=-1).reshape(-1, 2)
    centres = torch.stack([u_centre, v_centre], dim=-1).reshape(-1, 2)
    return torch.cat([grid, centres], dim=0)


def focal_lengths(height: int, width: int, fov_degrees: float) -> tuple[float, float]:
    """The reference's focal lengths (f_x, f_y) in pixels: ``(W - 1) / 2 / tan(fov / 2)``, same in H."""
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"fov must lie in (0, 180) degrees, got {fov_degrees}")
    tan = math.tan(math.radians(fov_degrees) / 2.0)
    return (width - 1) / 2.0 / tan, (height - 1) / 2.0 / tan


def grid_pixel_positions(height: int, width: int, device: torch.device | str, dtype: torch.dtype) -> Tensor:
    """Pixel positions (N, 2) as (x = column, y = row) of the grid vertices: pixels, then cell centres."""
    _check_size(height, width)
    cols = torch.arange(width, device=device, dtype=dtype)
    rows = torch.arange(height, device=device, dtype=dtype)
    grid = torch.stack([cols.expand(height, width), rows[:, None].expand(height, width)], dim=-1).reshape(
        -1, 2
    )  # (H W, 2)
    centres = torch.stack(
        [
            (cols[:-1] + 0.5).expand(height - 1, width - 1),
            (rows[:-1] + 0.5)[:, None].expand(height - 1, width - 1),
        ],
        dim=-1,
    ).reshape(-1, 2)  # ((H - 1)(W - 1), 2)
    return torch.cat([grid, centres], dim=0)


def grid_vertex_depths(depth: Tensor) -> Tensor:
    """Depths (B, N) of the grid vertices: the pixels' (B, H W), then each cell's mean corner depth."""
    if depth.dim() != 3:
        raise ValueError(f"depth must have shape (B, H, W), got {tuple(depth.shape)}")
    batch, height, width = depth.shape
    _check_size(height, width)
    centre = 0.25 * (depth[:, :-1, :-1] + depth[:, :-1, 1:] + depth[:, 1:, :-1] + depth[:, 1:, 1:])
    return torch.cat([depth.reshape(batch, -1), centre.reshape(batch, -1)], dim=1)


def unproject_pixels(pixels: Tensor, depth: Tensor, height: int, width: int, fov_degrees: float) -> Tensor:
    """View-space points (..., 3) of pixel positions (..., 2) (x = column, y = row) at depths (...)."""
    fx, fy = focal_lengths(height, width, fov_degrees)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    x = (pixels[..., 0] - cx) / fx * depth
    y = -(pixels[..., 1] - cy) / fy * depth
    return torch.stack([x, y, -depth], dim=-1)


def project_to_pixels(points: Tensor, height: int, width: int, fov_degrees: float) -> tuple[Tensor, Tensor]:
    """Pixel positions (..., 2) (x = column, y = row) and depths (...) = -z of view-space points (..., 3).

    The inverse of ``unproject_pixels``; points at or behind the camera (z >= 0) give non-finite or
    mirrored positions, so callers keep them in front of it.
    """
    fx, fy = focal_lengths(height, width, fov_degrees)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    depth = -points[..., 2]
    x = points[..., 0] / depth * fx + cx
    y = -points[..., 1] / depth * fy + cy
    return torch.stack([x, y], dim=-1), depth


def depth_grid_vertices(depth: Tensor, fov_degrees: float) -> Tensor:
    """View-space vertices (B, N, 3) of depth maps (B, H, W): each pixel centre unprojected at its depth,
    then each cell centre at its mean corner depth (module docstring). Differentiable in ``depth``.

    >>> v = depth_grid_vertices(torch.ones(1, 2, 2), 10.0)
    >>> v.shape, v[0, :, 2].tolist(), bool(v[0, 4, :2].abs().max() < 1e-7)
    (torch.Size([1, 5, 3]), [-1.0, -1.0, -1.0, -1.0, -1.0], True)
    """
    _, height, width = depth.shape
    pixels = grid_pixel_positions(height, width, depth.device, depth.dtype)  # (N, 2)
    return unproject_pixels(pixels, grid_vertex_depths(depth), height, width, fov_degrees)
