"""Tests for backend.geometry.volumes: point voxelisation and voxel shells against naive loops."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from backend.geometry.volumes import voxel_shell, voxelize_points


def test_voxelize_points_matches_a_loop() -> None:
    torch.manual_seed(3)
    points = torch.rand(500, 3) * 1.2 - 0.6  # some outside the cube
    grid = voxelize_points(points, resolution=8)
    expected = torch.zeros(8, 8, 8, dtype=torch.bool)
    for x, y, z in points.tolist():
        cell = [math.floor((c + 0.5) * 8) for c in (x, y, z)]
        if all(0 <= c < 8 for c in cell):
            expected[cell[0], cell[1], cell[2]] = True
    assert torch.equal(grid, expected)
    single = voxelize_points(torch.tensor([[-0.49, 0.01, 0.49]]))
    assert single.sum() == 1 and single[0, 16, 31]
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        voxelize_points(torch.zeros(4, 2))


def test_voxelize_points_with_another_cube_matches_a_loop() -> None:
    torch.manual_seed(4)
    points = torch.randn(300, 3)
    grid = voxelize_points(points, resolution=5, bound=1.5)
    expected = torch.zeros(5, 5, 5, dtype=torch.bool)
    for point in points.tolist():
        cell = [math.floor((c + 1.5) / 3.0 * 5) for c in point]
        if all(0 <= c < 5 for c in cell):
            expected[tuple(cell)] = True
    assert torch.equal(grid, expected)
    with pytest.raises(ValueError, match="must be positive"):
        voxelize_points(points, resolution=0)


def test_voxel_shell_keeps_the_surface_layer() -> None:
    solid = torch.zeros(8, 8, 8, dtype=torch.bool)
    solid[1:6, 1:6, 1:6] = True
    shell = voxel_shell(solid)
    assert int(shell.sum()) == 5**3 - 3**3 and not shell[2:5, 2:5, 2:5].any()
    full = torch.ones(4, 4, 4, dtype=torch.bool)
    assert int(voxel_shell(full).sum()) == 4**3 - 2**3  # the grid's border counts as outside


def test_voxel_shell_matches_a_loop() -> None:
    solid = torch.rand(6, 6, 6, generator=torch.Generator().manual_seed(5)) > 0.3
    expected = torch.zeros_like(solid)
    for x, y, z in itertools.product(range(6), repeat=3):
        if not solid[x, y, z]:
            continue
        for dx, dy, dz in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            nx, ny, nz = x + dx, y + dy, z + dz
            if not (0 <= nx < 6 and 0 <= ny < 6 and 0 <= nz < 6) or not solid[nx, ny, nz]:
                expected[x, y, z] = True
                break
    assert torch.equal(voxel_shell(solid), expected)
    with pytest.raises(ValueError, match=r"\(R, R, R\)"):
        voxel_shell(solid[0])
