"""A depth map as a textured relief mesh: the depth grid of ``backend.geometry.depth_grid`` (pixel centres
plus cell centres, four triangles per cell, UVs on the image grid) read under parallel projection, cut
to some of its faces and optionally closed into a solid (``backend.meshing.relief``).

Contract:

- ``ParallelFrame(height, width, fov, centre_depth)`` places grid vertices in the relief's object frame:
  each vertex at the lateral position its pixel's ray has at ``centre_depth`` (not at its own depth),
  ``z = centre_depth - depth`` (nearer the camera is +z), all times ``scale = 1 / (centre_depth
  tan(fov / 2))`` so that the pixel centres span x, y in [-1, 1] (Y up). The origin is the point of the
  optical axis at ``centre_depth`` (Unsup3d's rotation centre). Read this way, a weak-perspective camera
  (``backend.geometry.camera``) reproduces the depth map's own pixel grid exactly from the front
  (``front_scale``: x_ndc = ``front_scale`` x), and a back surface built along the same parallel rays
  hides behind the front: the closed solid's outline from the front is the front's. The price is the
  perspective foreshortening of the network's narrow camera (10 degrees): a point at depth d is
  ``centre_depth / d`` times wider than in the perspective reading, at most 1.11 over Unsup3d's depth
  range [0.9, 1.1].
- ``back_depths(depths, used, close, gap)``: per-vertex depths (N,) of the back: "plane" puts every twin
  at ``far + gap`` (``far``: the largest depth among the ``used`` vertices), "mirror" mirrors the depth
  about that plane (``2 (far + gap) - d``), so the back is the front's relief again and the solid is
  symmetric about the plane; "none" gives None. ``gap`` > 0 keeps every twin off its front vertex.
- ``relief_mesh(depth, keep, texture, frame, close, gap)`` -> (``TexturedMesh``, ``Relief``): the
  depth map (H, W)'s grid with faces ``keep`` (F,) kept (pinches dropped) and closed as ``close`` says,
  UVs the grid's (``depth_grid_uvs``; twins share their front vertex's), ``texture`` (T, T, 3) as is.
  The front winds counter-clockwise seen from +z; with a back the mesh is closed and outward-facing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from backend.geometry.depth_grid import (
    depth_grid_faces,
    depth_grid_uvs,
    grid_pixel_positions,
    grid_vertex_depths,
    unproject_pixels,
)
from backend.geometry.mesh import TexturedMesh
from backend.meshing.relief import Relief, close_relief

CloseMode = Literal["none", "mirror", "plane"]


@dataclass(frozen=True)
class ParallelFrame:
    """The relief's object frame for an H x W depth map seen with ``fov`` degrees (module docstring)."""

    height: int
    width: int
    fov: float
    centre_depth: float = 1.0

    @property
    def scale(self) -> float:
        """Object units per view-space unit: 1 / (centre_depth tan(fov / 2))."""
        return 1.0 / (self.centre_depth * math.tan(math.radians(self.fov) / 2.0))

    @property
    def front_scale(self) -> tuple[float, float]:
        """(s_x, s_y): crop NDC per object unit of the front view, (W - 1) / W and (H - 1) / H (the
        pixel centres span [-1 + 1 / W, 1 - 1 / W] of the crop's NDC, the grid's [-1, 1])."""
        return (self.width - 1) / self.width, (self.height - 1) / self.height

    def lateral(self, device: torch.device | str) -> Tensor:
        """(N, 2) x, y in object units of the grid vertices (pixels, then cell centres)."""
        pixels = grid_pixel_positions(self.height, self.width, device, torch.float32)  # (N, 2)
        at_centre = torch.full(pixels.shape[:1], self.centre_depth, device=device)
        return unproject_pixels(pixels, at_centre, self.height, self.width, self.fov)[:, :2] * self.scale

    def positions(self, depths: Tensor) -> Tensor:
        """(N, 3) object-frame positions of the grid vertices at per-vertex depths (N,)."""
        z = (self.centre_depth - depths) * self.scale
        return torch.cat([self.lateral(depths.device), z[:, None]], dim=1)


def back_depths(depths: Tensor, used: Tensor, close: CloseMode, gap: float) -> Tensor | None:
    """Depths (N,) of the back twins of vertices at ``depths`` (N,), ``used`` (N,) bool (module docstring)."""
    if close == "none":
        return None
    if gap <= 0:
        raise ValueError(f"the back's gap must be positive, got {gap}")
    plane = depths[used].max() + gap
    if close == "plane":
        return torch.full_like(depths, float(plane))
    if close == "mirror":
        return 2 * plane - depths
    raise ValueError(f"close must be none, mirror or plane, got {close!r}")


def relief_mesh(
    depth: Tensor, keep: Tensor, texture: Tensor, frame: ParallelFrame, close: CloseMode, gap: float
) -> tuple[TexturedMesh, Relief]:
    """The textured relief of ``depth`` (H, W) (module docstring); ``keep`` (F,) bool over the grid's
    faces, ``texture`` (T, T, 3) in [0, 1]. ``ValueError`` when nothing is kept."""
    height, width = depth.shape
    if (height, width) != (frame.height, frame.width):
        raise ValueError(f"depth is {height} x {width} but the frame is {frame.height} x {frame.width}")
    device = depth.device
    faces = depth_grid_faces(height, width, device)  # (F, 3)
    depths = grid_vertex_depths(depth[None])[0]  # (N,)
    front = frame.positions(depths)
    used = torch.zeros_like(depths, dtype=torch.bool)
    used[faces[keep].flatten()] = True
    behind = back_depths(depths, used, close, gap) if bool(used.any()) else None
    back = frame.positions(behind) if behind is not None else None
    relief = close_relief(front, back, faces, keep)
    uvs = depth_grid_uvs(height, width, device)[relief.source[: relief.front_vertices]]
    mesh = TexturedMesh(
        vertices=relief.vertices.float(),
        faces=relief.faces,
        uvs=uvs,
        face_uvs=relief.uv_index[relief.faces],
        texture=texture,
    )
    return mesh, relief
