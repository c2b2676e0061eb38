"""SIDE and MAD against a naive per-pixel loop (the oracle), and on maps whose answer is known: identical
depths score 0, a depth off by a constant factor has SIDE 0, a plane tilted by a known angle has that MAD."""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry.depth_grid import focal_lengths
from training.unsup3d.metrics import erode, evaluation_mask, mad, side

FOV = 10.0


def _point(depth: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """The reference's unprojection of one pixel (x right, y down, z forward), float64."""
    size = depth.shape[1]
    focal, _ = focal_lengths(size, size, FOV)
    centre = (size - 1) / 2
    z = float(depth[row, col])
    return torch.tensor([(col - centre) / focal * z, (row - centre) / focal * z, z], dtype=torch.float64)


def _loop_side(depth: torch.Tensor, depth_gt: torch.Tensor, mask: torch.Tensor) -> float:
    values = [
        math.log(float(depth[i, j])) - math.log(float(depth_gt[i, j]))
        for i in range(depth.shape[0])
        for j in range(depth.shape[1])
        if mask[i, j] > 0
    ]
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / len(values))


def _loop_normal(depth: torch.Tensor, i: int, j: int) -> torch.Tensor:
    size = depth.shape[0]
    if i in (0, size - 1) or j in (0, size - 1):
        return torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    along_u = _point(depth, i, j + 1) - _point(depth, i, j - 1)
    along_v = _point(depth, i + 1, j) - _point(depth, i - 1, j)
    normal = torch.linalg.cross(along_u, along_v)
    return normal / normal.norm()


def _loop_mad(depth: torch.Tensor, depth_gt: torch.Tensor, mask: torch.Tensor) -> float:
    angles = []
    for i in range(depth.shape[0]):
        for j in range(depth.shape[1]):
            if mask[i, j] > 0:
                cosine = float(_loop_normal(depth, i, j) @ _loop_normal(depth_gt, i, j))
                angles.append(math.degrees(math.acos(max(-1.0, min(1.0, cosine)))))
    return sum(angles) / len(angles)


def _loop_erode(mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(mask)
    size = mask.shape[0]
    for i in range(size):
        for j in range(size):
            window = [
                mask[a, b] if 0 <= a < size and 0 <= b < size else 0.0
                for a in range(i - 1, i + 2)
                for b in range(j - 1, j + 2)
            ]
            out[i, j] = float(all(value > 0 for value in window))
    return out


def _maps(seed: int, batch: int = 2, size: int = 9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    depth = 0.95 + 0.1 * torch.rand(batch, size, size, generator=generator, dtype=torch.float64)
    depth_gt = 0.95 + 0.1 * torch.rand(batch, size, size, generator=generator, dtype=torch.float64)
    mask = (torch.rand(batch, size, size, generator=generator, dtype=torch.float64) > 0.2).double()
    return depth, depth_gt, mask


def test_side_and_mad_match_the_loop_oracle() -> None:
    depth, depth_gt, mask = _maps(0)
    got_side, got_mad = side(depth, depth_gt, mask), mad(depth, depth_gt, mask, FOV)
    for b in range(depth.shape[0]):
        assert float(got_side[b]) == pytest.approx(_loop_side(depth[b], depth_gt[b], mask[b]), rel=1e-9)
        assert float(got_mad[b]) == pytest.approx(_loop_mad(depth[b], depth_gt[b], mask[b]), rel=1e-7)


def test_erosion_and_the_evaluation_mask_match_the_loop() -> None:
    _, _, mask = _maps(1, size=8)
    eroded = erode(mask)
    for b in range(mask.shape[0]):
        assert torch.equal(eroded[b], _loop_erode(mask[b]))
    full = torch.ones(1, 5, 5)
    assert erode(full)[0].sum() == 9  # the image's outer ring always goes
    view = torch.ones(1, 5, 5)
    view[0, :, 4] = 0
    assert evaluation_mask(full, view)[0].sum() == 6  # columns 1..2 of rows 1..3


def test_identical_depths_score_zero_and_a_scaled_depth_has_side_zero() -> None:
    depth, _, mask = _maps(2)
    assert torch.allclose(side(depth, depth, mask), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(mad(depth, depth, mask, FOV), torch.zeros(2, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(side(1.37 * depth, depth, mask), torch.zeros(2, dtype=torch.float64), atol=1e-7)
    # a scaled depth map is the same shape, scaled about the camera: its normals agree too
    assert torch.allclose(mad(1.37 * depth, depth, mask, FOV), torch.zeros(2, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("tilt", [5.0, 20.0])
def test_a_plane_tilted_by_a_known_angle_has_that_mad(tilt: float) -> None:
    size = 11
    focal, _ = focal_lengths(size, size, FOV)
    centre = (size - 1) / 2
    cols = torch.arange(size, dtype=torch.float64)
    x_over_z = ((cols - centre) / focal).expand(size, size)  # (H, W)
    # the plane through (0, 0, 1) with normal (sin t, 0, cos t): z (sin t x/z + cos t) = cos t
    angle = math.radians(tilt)
    tilted = math.cos(angle) / (math.sin(angle) * x_over_z + math.cos(angle))
    flat = torch.ones(size, size, dtype=torch.float64)
    mask = erode(torch.ones(1, size, size, dtype=torch.float64))
    got = mad(tilted[None], flat[None], mask, FOV)
    assert float(got[0]) == pytest.approx(tilt, abs=1e-6)
    assert float(got[0]) == pytest.approx(_loop_mad(tilted, flat, mask[0]), rel=1e-9)


def test_an_empty_mask_gives_nan() -> None:
    depth, depth_gt, mask = _maps(3)
    mask[1] = 0
    values = side(depth, depth_gt, mask)
    assert math.isfinite(float(values[0])) and math.isnan(float(values[1]))
    assert math.isnan(float(mad(depth, depth_gt, mask, FOV)[1]))
    with pytest.raises(ValueError, match="share a"):
        side(depth, depth_gt[:, :3], mask)
