"""Tests for backend.geometry.metrics: hand-computed values and naive reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.geometry.metrics import chamfer_distance, mask_iou, ssim, voxel_iou, voxelize_mesh
from backend.geometry.templates import icosphere_template

CUBE_CORNERS = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
# Outward (counter-clockwise from outside) triangles of the cube above; each face split on a diagonal.
CUBE_FACES = torch.tensor(
    [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
     [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
)  # fmt: skip
OCTAHEDRON_VERTICES = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
OCTAHEDRON_FACES = torch.tensor(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
)


def signed_volume(vertices: torch.Tensor, faces: torch.Tensor) -> float:
    a, b, c = vertices.double()[faces].unbind(1)
    return float((a * torch.linalg.cross(b, c, dim=1)).sum() / 6)


def voxel_centres(resolution: int) -> np.ndarray:
    """(R, R, R, 3) voxel centres, index order [x, y, z]."""
    axis = -0.5 + (np.arange(resolution) + 0.5) / resolution
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


# ---------------------------------------------------------------------------------------------- mask IoU


def test_mask_iou_hand_values() -> None:
    pred = torch.tensor([[0.8, 0.6], [0.2, 0.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # soft: sum(p t) = 0.8 + 0.2 = 1.0; sum(p + t - p t) = (0.8 + 1 - 0.8) + 0.6 + (0.2 + 1 - 0.2) + 0 = 2.6
    assert mask_iou(pred, target).item() == pytest.approx(1.0 / 2.6)
    # hard: pred > 0.5 -> {(0,0), (0,1)}, target {(0,0), (1,0)}: 1 / 3
    assert mask_iou(pred, target, soft=False).item() == pytest.approx(1 / 3)
    batch = mask_iou(torch.stack([pred, target]), torch.stack([target, target]), soft=False)
    assert batch.shape == (2,) and batch.tolist() == pytest.approx([1 / 3, 1.0])


def test_mask_iou_empty_union_is_one() -> None:
    empty = torch.zeros(2, 3, 3)
    assert mask_iou(empty, empty).tolist() == [1.0, 1.0]
    assert mask_iou(empty[0], torch.ones(3, 3)).item() == 0.0


def test_mask_iou_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        mask_iou(torch.zeros(3, 3), torch.zeros(3, 4))


# --------------------------------------------------------------------------------------------------- SSIM


def naive_ssim(img1: np.ndarray, img2: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """Wang et al.'s SSIM on (H, W, C) images with loops over valid window positions and channels."""
    offsets = np.arange(size) - (size - 1) / 2
    gauss = np.exp(-(offsets**2) / (2 * sigma**2))
    window = np.outer(gauss, gauss) / np.outer(gauss, gauss).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for channel in range(img1.shape[2]):
        for i in range(img1.shape[0] - size + 1):
            for j in range(img1.shape[1] - size + 1):
                x = img1[i : i + size, j : j + size, channel]
                y = img2[i : i + size, j : j + size, channel]
                mx, my = (window * x).sum(), (window * y).sum()
                vx, vy = (window * (x - mx) ** 2).sum(), (window * (y - my) ** 2).sum()
                cov = (window * (x - mx) * (y - my)).sum()
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_naive_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    img1 = torch.rand(2, 14, 15, 3, generator=generator, dtype=torch.float64)
    img2 = (img1 + 0.2 * torch.rand(2, 14, 15, 3, generator=generator, dtype=torch.float64)).clamp(0, 1)
    result = ssim(img1, img2)
    assert result.shape == (2,)
    for b in range(2):
        assert result[b].item() == pytest.approx(naive_ssim(img1[b].numpy(), img2[b].numpy()), abs=1e-10)
    assert ssim(img1[0], img2[0]).item() == pytest.approx(result[0].item())


def test_ssim_identical_and_constant_images() -> None:
    image = torch.rand(1, 12, 12, 1, generator=torch.Generator().manual_seed(1))
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-6)
    # Constant images a and b: only the luminance term remains, (2ab + c1) / (a^2 + b^2 + c1).
    a, b, c1 = 0.2, 0.6, 0.01**2
    value = ssim(torch.full((11, 11, 3), a), torch.full((11, 11, 3), b)).item()
    assert value == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), rel=1e-5)


def test_ssim_bad_input() -> None:
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.rand(10, 20, 3), torch.rand(10, 20, 3))
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(12, 12, 3), torch.rand(12, 12, 1))


# ------------------------------------------------------------------------------------------------ Chamfer


def test_chamfer_two_unit_squares_offset_by_half() -> None:
    square = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    shifted = square + torch.tensor([0.5, 0.0, 0.0])
    # Every corner of each square is 0.5 from the nearest corner of the other: 100 * (0.5 + 0.5).
    result = chamfer_distance(square, shifted)
    assert result.total.item() == pytest.approx(100.0)
    assert (result.a_to_b.item(), result.b_to_a.item()) == pytest.approx((50.0, 50.0))
    assert chamfer_distance(square, square).total.item() == 0.0


def test_chamfer_matches_brute_force_in_chunks() -> None:
    generator = torch.Generator().manual_seed(2)
    points_a = torch.rand(300, 3, generator=generator, dtype=torch.float64)
    points_b = torch.rand(170, 3, generator=generator, dtype=torch.float64) + 0.3
    distances = np.linalg.norm(points_a.numpy()[:, None] - points_b.numpy()[None], axis=-1)
    a_to_b, b_to_a = 100 * distances.min(axis=1).mean(), 100 * distances.min(axis=0).mean()
    result = chamfer_distance(points_a, points_b, chunk_size=7)
    assert result.a_to_b.item() == pytest.approx(a_to_b, rel=1e-9)
    assert result.b_to_a.item() == pytest.approx(b_to_a, rel=1e-9)
    assert result.total.item() == pytest.approx(a_to_b + b_to_a, rel=1e-9)
    swapped = chamfer_distance(points_b, points_a)
    assert swapped.total.item() == pytest.approx(result.total.item())


def test_chamfer_bad_input() -> None:
    with pytest.raises(ValueError, match="points_b must have shape"):
        chamfer_distance(torch.rand(4, 3), torch.rand(0, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        chamfer_distance(torch.rand(4, 3), torch.rand(4, 3), chunk_size=0)


# ----------------------------------------------------------------------------------------- voxelisation


def test_cube_voxel_counts() -> None:
    assert signed_volume(CUBE_CORNERS, CUBE_FACES) > 0
    cube = CUBE_CORNERS * 0.2  # [-0.2, 0.2]^3: centres (i + 0.5) / 32 - 0.5 inside for i = 10..21
    inside = voxelize_mesh(cube, CUBE_FACES, fill_surface=False)
    assert inside.sum() == 12**3
    assert inside[10:22, 10:22, 10:22].all()
    # The faces at +-0.2 lie in voxels 9 and 22 (0.3 * 32 = 9.6, 0.7 * 32 = 22.4): 14^3 in all.
    solid = voxelize_mesh(cube, CUBE_FACES)
    assert solid.sum() == 14**3 and solid[9:23, 9:23, 9:23].all()
    # Rays along x = y run exactly through the diagonals of the top and bottom faces; the other
    # orientation of the faces and a coarser grid give the same answer.
    assert torch.equal(voxelize_mesh(cube, CUBE_FACES.flip(1), fill_surface=False), inside)
    assert voxelize_mesh(cube, CUBE_FACES, resolution=10, fill_surface=False).sum() == 4**3


def test_octahedron_matches_brute_force_with_rays_through_vertices_and_edges() -> None:
    # With R = 31 the centre column x = y = 0 passes through both apexes, and the columns x = 0 or
    # y = 0 run along projected edges: the parity must still be right there.
    radius = 0.4
    inside = voxelize_mesh(OCTAHEDRON_VERTICES * radius, OCTAHEDRON_FACES, resolution=31, fill_surface=False)
    expected = np.abs(voxel_centres(31)).sum(axis=-1) < radius
    assert np.array_equal(inside.numpy(), expected)
    assert inside[15, 15].sum() == expected[15, 15].sum() > 0


def test_sphere_voxel_volume() -> None:
    mesh = icosphere_template().mesh
    radius = 0.4
    inside = voxelize_mesh(mesh.vertices * radius, mesh.faces, fill_surface=False)
    volume = inside.sum().item() / 32**3
    assert volume == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.05)
    # Every voxel centre well inside the sphere is filled, every one well outside is empty.
    distance = np.linalg.norm(voxel_centres(32), axis=-1)
    assert inside.numpy()[distance < radius * 0.95].all() and not inside.numpy()[distance > radius].any()
    solid = voxelize_mesh(mesh.vertices * radius, mesh.faces)
    assert (solid | inside).equal(solid) and solid.sum() > inside.sum()
    # The surface voxels are a shell: each one is within one voxel diagonal of the sphere.
    shell = (solid & ~inside).numpy()
    assert (np.abs(distance[shell] - radius) < math.sqrt(3) / 32).all()


def test_voxelize_cuts_off_outside_the_cube() -> None:
    big = voxelize_mesh(CUBE_CORNERS, CUBE_FACES, resolution=8)  # [-1, 1]^3 contains the whole grid
    assert big.all()


def test_voxelize_bad_input() -> None:
    with pytest.raises(ValueError, match="vertices must have shape"):
        voxelize_mesh(torch.zeros(8, 2), CUBE_FACES)
    with pytest.raises(ValueError, match="resolution"):
        voxelize_mesh(CUBE_CORNERS, CUBE_FACES, resolution=0)


def test_voxel_iou() -> None:
    pred = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    target = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    pred[0, :2] = True  # 32 voxels
    target[0, 1:] = True  # 48 voxels, 16 shared -> 16 / 64
    assert voxel_iou(pred, target).tolist() == pytest.approx([0.25, 1.0])  # the second pair is empty
    assert voxel_iou(pred[0], pred[0]).item() == 1.0
    with pytest.raises(ValueError, match="same shape"):
        voxel_iou(pred, target[0])
