"""Crop, jitter, camera conversion and mirroring of annotated images (training.datasets.transforms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.geometry import Camera
from backend.geometry.camera import quaternion_to_matrix
from training.datasets import transforms


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return transforms.quaternion_to_matrix(q / np.linalg.norm(q))


def _symmetric_points(rng: np.random.Generator, permutation: tuple[int, ...]) -> np.ndarray:
    """(K, 3) points with points[perm[k]] = mirror(points[k]) (on the plane when perm[k] == k)."""
    points = rng.normal(size=(len(permutation), 3))
    for k, partner in enumerate(permutation):
        if partner == k:
            points[k, 0] = 0.0
        elif partner > k:
            points[partner] = points[k] * np.array([-1.0, 1.0, 1.0])
    return points


def test_padding_without_jitter_grows_each_side_by_the_fraction() -> None:
    box = transforms.pad_and_jitter_box(np.array([10.0, 20.0, 110.0, 70.0]), 0.05, 0.0)
    np.testing.assert_allclose(box, [5.0, 17.5, 115.0, 72.5])


def test_jitter_moves_each_side_within_its_bound() -> None:
    rng = np.random.default_rng(0)
    base = np.array([10.0, 20.0, 110.0, 70.0])  # 100 wide, 50 high
    padded = transforms.pad_and_jitter_box(base, 0.05, 0.0)
    bound = 0.05 * np.array([100.0, 50.0, 100.0, 50.0])
    moves = np.stack([transforms.pad_and_jitter_box(base, 0.05, 0.05, rng) - padded for _ in range(500)])
    assert (np.abs(moves) <= bound + 1e-9).all()
    assert (np.abs(moves).max(axis=0) > 0.8 * bound).all()  # the whole range is used, on every side
    with pytest.raises(ValueError, match="random generator"):
        transforms.pad_and_jitter_box(base, 0.05, 0.05)


def test_square_box_is_centred_and_as_large_as_the_longer_side() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        x_min, y_min = rng.uniform(-50, 200, size=2)
        width, height = rng.uniform(5, 300, size=2)
        box = transforms.square_box(np.array([x_min, y_min, x_min + width, y_min + height]))
        assert box.side == max(1, round(max(width, height)))
        assert abs(box.x0 + box.side / 2 - (x_min + width / 2)) <= 0.5 + 1e-9
        assert abs(box.y0 + box.side / 2 - (y_min + height / 2)) <= 0.5 + 1e-9


def test_crop_pads_outside_the_photo_with_the_fill_value() -> None:
    image = np.arange(6 * 8, dtype=np.float32).reshape(6, 8, 1) / 100.0
    box = transforms.CropBox(x0=-2, y0=-1, side=8)  # reaches 2 columns left of and 1 row above the photo
    crop = transforms.crop_and_resize(image, box, 8, fill=7.0)  # same size: no resampling
    assert (crop[:1] == 7.0).all() and (crop[:, :2] == 7.0).all() and (crop[7:] == 7.0).all()
    np.testing.assert_array_equal(crop[1:7, 2:8], image[:, :6])


def test_crop_resize_keeps_a_constant_image_constant_and_many_channels_work() -> None:
    image = np.full((40, 50, 6), 0.25, dtype=np.float32)
    crop = transforms.crop_and_resize(image, transforms.CropBox(5, 5, 30), 12, fill=np.zeros(6))
    assert crop.shape == (12, 12, 6)
    np.testing.assert_allclose(crop, 0.25, atol=1e-6)


def test_box_to_ndc_maps_pixel_centres_like_the_geometry_convention() -> None:
    box = transforms.CropBox(x0=10, y0=20, side=4)
    # centre of the crop's pixel (row 0, column 3): x_ndc = (2 * 3 + 1) / 4 - 1, y_ndc = 1 - 1 / 4
    np.testing.assert_allclose(box.to_ndc(np.array([13.5, 20.5])), [0.75, 0.75])


def test_quaternions_round_trip_with_the_backend_convention() -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        rotation = _random_rotation(rng)
        q = transforms.matrix_to_quaternion(rotation)
        backend = quaternion_to_matrix(torch.tensor(q[None], dtype=torch.float64))[0].numpy()
        np.testing.assert_allclose(backend, rotation, atol=1e-9)
    with pytest.raises(ValueError, match="proper rotation"):
        transforms.matrix_to_quaternion(np.diag([-1.0, 1.0, 1.0]))


def test_sfm_camera_projects_like_cmr_after_the_crop() -> None:
    """Oracle: CMR's pixel projection, cropped and normalised by hand, against Camera.weak_perspective."""
    rng = np.random.default_rng(3)
    points = rng.normal(size=(20, 3)) * 0.3
    for _ in range(10):
        rot, scale, trans = _random_rotation(rng), rng.uniform(50, 150), rng.uniform(100, 200, size=2)
        box = transforms.CropBox(
            int(rng.integers(0, 80)), int(rng.integers(0, 80)), int(rng.integers(150, 250))
        )
        camera = transforms.sfm_to_camera(scale, trans, rot, box)
        expected = []
        for p in points:  # naive loop: 1-based pixels -> continuous -> crop NDC (y up)
            u, v = scale * (rot @ p)[:2] + trans
            x_c, y_c = u - 0.5, v - 0.5
            expected.append([2 * (x_c - box.x0) / box.side - 1, 1 - 2 * (y_c - box.y0) / box.side])
        c = torch.tensor(camera[None], dtype=torch.float64)
        projected = Camera.weak_perspective(c[:, 0], c[:, 1:3], c[:, 3:7]).project(torch.tensor(points))
        np.testing.assert_allclose(projected[0, :, :2].numpy(), np.array(expected), atol=1e-9)
        # and the viewing direction is ours: points nearer CMR's camera (smaller rot z) are nearer ours
        depth = projected[0, :, 2].numpy()
        assert np.corrcoef(depth, (points @ rot.T)[:, 2])[0, 1] > 0.999


def test_camera_to_sfm_inverts_sfm_to_camera_for_a_whole_image() -> None:
    rng = np.random.default_rng(4)
    q = rng.normal(size=4)
    camera = np.concatenate([[1.3], rng.uniform(-0.2, 0.2, 2), q / np.linalg.norm(q) * np.sign(q[0])])
    scale, trans, rot = transforms.camera_to_sfm(camera, 128)
    back = transforms.sfm_to_camera(scale, trans, rot, transforms.CropBox(0, 0, 128))
    np.testing.assert_allclose(back, camera, atol=1e-9)


def test_mirror_permutes_keypoints_and_flips_the_camera_consistently() -> None:
    rng = np.random.default_rng(5)
    permutation = transforms.CUB_KEYPOINT_PERMUTATION
    points = _symmetric_points(rng, permutation)
    q = rng.normal(size=4)
    camera = np.concatenate([[0.8], rng.uniform(-0.3, 0.3, 2), q / np.linalg.norm(q)])

    def project(c: np.ndarray) -> np.ndarray:
        t = torch.tensor(c[None], dtype=torch.float64)
        xy = Camera.weak_perspective(t[:, 0], t[:, 1:3], t[:, 3:7]).project(torch.tensor(points))[0, :, :2]
        return np.concatenate([xy.numpy(), np.ones((len(points), 1))], axis=1)

    mirrored = transforms.mirror_keypoints(project(camera), permutation)
    np.testing.assert_allclose(mirrored, project(transforms.mirror_camera(camera)), atol=1e-9)
    np.testing.assert_allclose(mirrored[6, 0], -project(camera)[10, 0])  # LEye comes from REye, flipped
    # the flipped rotation is diag(-1, 1, 1) R diag(-1, 1, 1)
    flip = np.diag([-1.0, 1.0, 1.0])
    rotation = transforms.quaternion_to_matrix(camera[3:])
    np.testing.assert_allclose(
        transforms.quaternion_to_matrix(transforms.mirror_camera(camera)[3:]),
        flip @ rotation @ flip,
        atol=1e-12,
    )


def test_mirror_parts_flips_and_swaps_channels() -> None:
    parts = np.zeros((2, 3, 3), dtype=np.float32)
    parts[0, 0] = [1.0, 0.0, 0.0]  # channel 0 at column 0
    parts[0, 2] = [0.0, 0.0, 1.0]  # channel 2 at column 2
    flipped = transforms.mirror_parts(parts, (0, 2, 1))
    assert flipped[0, 2, 0] == 1.0 and flipped[0, 0, 1] == 1.0


def test_permutations_are_checked() -> None:
    assert transforms.check_permutation(transforms.CUB_KEYPOINT_PERMUTATION, 15, "kp") == (
        transforms.CUB_KEYPOINT_PERMUTATION
    )
    with pytest.raises(ValueError, match=r"permutation of 0\.\.2"):
        transforms.check_permutation([0, 0, 1], 3, "kp")
    with pytest.raises(ValueError, match="own inverse"):
        transforms.check_permutation([1, 2, 0], 3, "kp")
    with pytest.raises(ValueError, match="15 keypoints"):
        transforms.mirror_keypoints(np.zeros((15, 3)), (0, 1))
