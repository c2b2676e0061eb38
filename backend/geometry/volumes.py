"""Voxel grids of point sets: the paper's volumetric IoU of point clouds.

Grids are (R, R, R) bool with index order ``[x, y, z]`` over the cube ``[-bound, bound]^3`` (default
[-0.5, 0.5]^3, SoftRas's and ``backend.geometry.metrics.voxelize_mesh``'s cube): voxel ``i`` covers
``[-bound + i s, -bound + (i + 1) s)`` with side ``s = 2 bound / R``.

- ``voxelize_points``: a voxel is full when it holds a point (the seed paper's IoU of clouds; points
  outside the cube are dropped);
- ``voxel_shell``: the surface layer of a solid grid (full voxels with an empty 6-neighbour, the grid's
  border counting as empty), what a cloud of surface points can fill; compared with a voxelised cloud
  when the ground truth is a solid voxelisation (the real SoftRas set).

Solid voxelisation of a closed mesh (ray parity) is ``backend.geometry.metrics.voxelize_mesh``; the IoU of
two grids is ``backend.geometry.metrics.voxel_iou``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def voxelize_points(points: Tensor, resolution: int = 32, bound: float = 0.5) -> Tensor:
    """(R, R, R) bool, index order [x, y, z]: the voxels of the cube [-bound, bound]^3 holding a point of
    ``points`` (N, 3) (the paper's volumetric IoU: a voxel is 1 if it contains a point). Points outside
    the cube are dropped.

    >>> grid = voxelize_points(torch.tensor([[-0.49, 0.01, 0.49], [0.7, 0.0, 0.0]]), resolution=4)
    >>> int(grid.sum()), bool(grid[0, 2, 3])
    (1, True)
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {tuple(points.shape)}")
    if resolution <= 0 or bound <= 0:
        raise ValueError(f"resolution and bound must be positive, got {resolution} and {bound}")
    cells = torch.floor((points.detach() + bound) / (2 * bound) * resolution).long()  # (N, 3)
    cells = cells[((cells >= 0) & (cells < resolution)).all(dim=1)]
    grid = torch.zeros(resolution, resolution, resolution, dtype=torch.bool, device=points.device)
    grid[cells[:, 0], cells[:, 1], cells[:, 2]] = True
    return grid


def voxel_shell(grid: Tensor) -> Tensor:
    """(R, R, R) bool: the occupied voxels of ``grid`` (R, R, R) with at least one empty 6-neighbour (or
    on the grid's border), the surface layer that a cloud of surface points can fill."""
    if grid.dim() != 3:
        raise ValueError(f"grid must have shape (R, R, R), got {tuple(grid.shape)}")
    solid = grid.bool()
    padded = F.pad(solid[None, None].float(), (1, 1, 1, 1, 1, 1))[0, 0] > 0  # (R + 2, R + 2, R + 2)
    core = slice(1, -1)
    inner = (
        padded[:-2, core, core] & padded[2:, core, core]
        & padded[core, :-2, core] & padded[core, 2:, core]
        & padded[core, core, :-2] & padded[core, core, 2:]
    )  # (R, R, R): all six neighbours occupied  # fmt: skip
    return solid & ~inner
