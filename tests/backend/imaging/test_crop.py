"""Tests for backend.imaging.crop: the box, its padding, the coordinate maps and pasting back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from backend.imaging import CropTransform, MaskError, crop_box, crop_to_mask, paste_mask


def rectangle_mask(height: int, width: int, rows: slice, columns: slice) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[rows, columns] = True
    return mask


def test_box_is_centred_with_padding_by_hand() -> None:
    # Object: rows 20..59, columns 30..89 -> 60 x 40 box with centre (x, y) = (60, 40) in pixel coordinates.
    mask = rectangle_mask(100, 120, slice(20, 60), slice(30, 90))
    transform = crop_box(mask, output_size=66, padding=0.05)
    # side = 60 * (1 + 2 * 0.05) = 66; x0 = 60 - 33 = 27; y0 = 40 - 33 = 7.
    assert (transform.x0, transform.y0, transform.side) == (27, 7, 66)
    result = crop_to_mask(np.zeros((100, 120, 3), np.float32), mask, output_size=66)
    # Same size: the crop is a pure cut, so the object sits 3 pixels in from the left and right.
    columns = np.flatnonzero(result.mask.any(axis=0))
    rows = np.flatnonzero(result.mask.any(axis=1))
    assert (columns[0], columns[-1]) == (3, 62)
    assert (rows[0], rows[-1]) == (13, 52)


def test_crop_is_centred_and_padded_when_resized() -> None:
    mask = rectangle_mask(300, 400, slice(50, 250), slice(100, 300))  # 200 x 200 at (200, 150)
    rgb = np.zeros((300, 400, 3), np.float32)
    rgb[mask] = (1.0, 0.0, 0.0)
    result = crop_to_mask(rgb, mask, output_size=110, padding=0.05)
    assert (result.transform.side, result.transform.x0, result.transform.y0) == (220, 90, 40)
    assert result.rgb.shape == (110, 110, 3) and result.rgb.dtype == np.float32
    assert result.mask.shape == (110, 110) and result.mask.dtype == np.float32
    assert set(np.unique(result.mask)) == {0.0, 1.0}
    # 10 photo pixels of padding = 5 crop pixels on each side.
    np.testing.assert_array_equal(np.flatnonzero(result.mask.any(axis=0))[[0, -1]], [5, 104])
    np.testing.assert_array_equal(np.flatnonzero(result.mask.any(axis=1))[[0, -1]], [5, 104])
    np.testing.assert_allclose(result.rgb[55, 55], [1, 0, 0], atol=1e-6)


def test_box_past_the_border_is_filled_with_background() -> None:
    mask = rectangle_mask(100, 100, slice(0, 40), slice(70, 100))  # touches the top and right edges
    rgb = np.full((100, 100, 3), 0.25, np.float32)
    result = crop_to_mask(rgb, mask, output_size=44, padding=0.05, background=(0.0, 1.0, 0.0))
    transform = result.transform
    assert transform.side == 44 and transform.y0 < 0 and transform.x0 + transform.side > 100
    np.testing.assert_allclose(result.rgb[0, 0], [0, 1, 0])  # above the photo
    np.testing.assert_allclose(result.rgb[-1, -1], [0, 1, 0])  # right of the photo
    np.testing.assert_allclose(result.rgb[20, 10], [0.25, 0.25, 0.25])  # inside the photo
    assert result.mask[0].sum() == 0 and result.mask[:, -1].sum() == 0


def test_large_downscale_is_area_averaged() -> None:
    # A box 16 times the output size: block-averaged, so a fine checkerboard becomes flat grey.
    rows, columns = np.mgrid[0:800, 0:800]
    checker = ((rows + columns) % 2).astype(np.float32)
    rgb = np.repeat(checker[..., None], 3, axis=2)
    mask = rectangle_mask(800, 800, slice(100, 701), slice(100, 701))
    result = crop_to_mask(rgb, mask, output_size=40, padding=0.05)
    # side = ceil(601 * 1.1) = 662 is rounded up to 664, a multiple of the block factor 662 // 160 = 4.
    assert result.transform.side == 664
    inside = result.rgb[10:30, 10:30]
    np.testing.assert_allclose(inside, 0.5, atol=0.02)


def test_coordinate_round_trips() -> None:
    transform = CropTransform(x0=-13, y0=27, side=210, output_size=64, image_width=300, image_height=200)
    rng = np.random.default_rng(0)
    points = rng.uniform(-50, 350, (100, 2))
    np.testing.assert_allclose(transform.crop_to_image(transform.image_to_crop(points)), points, atol=1e-5)
    np.testing.assert_allclose(transform.image_to_crop(transform.crop_to_image(points)), points, atol=1e-5)
    np.testing.assert_allclose(transform.ndc_to_image(transform.image_to_ndc(points)), points, atol=1e-5)
    ndc = rng.uniform(-1, 1, (100, 2))
    np.testing.assert_allclose(transform.image_to_ndc(transform.ndc_to_image(ndc)), ndc, atol=1e-5)


def test_ndc_matches_the_pixel_centre_convention() -> None:
    transform = CropTransform(x0=5, y0=-7, side=96, output_size=32, image_width=100, image_height=90)
    size = transform.output_size
    i, j = np.mgrid[0:size, 0:size]
    centres_crop = np.stack([j + 0.5, i + 0.5], axis=-1).reshape(-1, 2)  # (S*S, 2) crop pixel coordinates
    centres_ndc = np.stack([(2 * j + 1) / size - 1, 1 - (2 * i + 1) / size], axis=-1).reshape(-1, 2)
    np.testing.assert_allclose(
        transform.ndc_to_image(centres_ndc), transform.crop_to_image(centres_crop), atol=1e-5
    )
    # The crop's centre is the box's centre; NDC (-1, 1) is the box's top-left corner.
    corners_ndc = np.array([[0.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(transform.ndc_to_image(corners_ndc), [[53, 41], [5, -7]])


def test_maps_work_on_torch_tensors_with_gradients() -> None:
    transform = CropTransform(x0=3, y0=4, side=50, output_size=25, image_width=60, image_height=60)
    xy_ndc = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    points = transform.ndc_to_image(xy_ndc)
    assert isinstance(points, torch.Tensor)
    torch.testing.assert_close(points, torch.tensor([[28.0, 29.0], [53.0, 54.0]], dtype=torch.float64))
    points.sum().backward()
    assert xy_ndc.grad is not None
    torch.testing.assert_close(xy_ndc.grad, torch.tensor([[25.0, -25.0], [25.0, -25.0]], dtype=torch.float64))


def test_paste_mask_reproduces_the_photo_mask() -> None:
    rows, columns = np.mgrid[0:480, 0:640]
    ellipse = ((columns - 350) / 180) ** 2 + ((rows - 220) / 130) ** 2 <= 1.0
    result = crop_to_mask(np.zeros((480, 640, 3), np.float32), ellipse, output_size=128)
    assert result.transform.scale > 2  # a downscaling crop
    pasted = paste_mask(result.mask, result.transform)
    assert pasted.shape == ellipse.shape and pasted.dtype == np.bool_
    iou = (pasted & ellipse).sum() / (pasted | ellipse).sum()
    assert iou > 0.98


def test_paste_mask_outside_the_box_is_false() -> None:
    transform = CropTransform(x0=10, y0=10, side=20, output_size=10, image_width=50, image_height=40)
    pasted = paste_mask(np.ones((10, 10), dtype=bool), transform)
    expected = np.zeros((40, 50), dtype=bool)
    expected[10:30, 10:30] = True
    np.testing.assert_array_equal(pasted, expected)


def test_bad_input_is_refused() -> None:
    rgb = np.zeros((10, 10, 3), np.float32)
    with pytest.raises(MaskError, match="empty"):
        crop_to_mask(rgb, np.zeros((10, 10), bool), 8)
    with pytest.raises(ValueError, match="mask must be"):
        crop_to_mask(rgb, np.ones((9, 10), bool), 8)
    with pytest.raises(ValueError, match="crop_mask must be"):
        paste_mask(np.ones((4, 4)), CropTransform(0, 0, 10, 8, 10, 10))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        CropTransform(0, 0, 10, 8, 10, 10).crop_to_image(np.zeros((4, 3)))


def naive_crop(rgb: np.ndarray, transform: CropTransform, background: float) -> np.ndarray:
    """Oracle: paste the photo on a full side x side canvas, then one INTER_AREA resize."""
    side = transform.side
    canvas = np.full((side, side, 3), background, np.float32)
    for row in range(side):
        y = transform.y0 + row
        if 0 <= y < rgb.shape[0]:
            for column in range(side):
                x = transform.x0 + column
                if 0 <= x < rgb.shape[1]:
                    canvas[row, column] = rgb[y, x]
    return cv2.resize(canvas, (transform.output_size,) * 2, interpolation=cv2.INTER_AREA)


def test_block_averaged_crop_past_the_border_matches_a_naive_crop() -> None:
    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.uniform(0, 1, (150, 170, 3)).astype(np.float32), (0, 0), 3)
    mask = rectangle_mask(150, 170, slice(3, 140), slice(60, 170))  # box past the top, right and bottom
    result = crop_to_mask(rgb, mask, output_size=16, padding=0.1, background=0.7)
    transform = result.transform
    assert transform.side // 16 >= 8 and transform.y0 < 0 and transform.x0 + transform.side > 170
    oracle = naive_crop(rgb, transform, 0.7)
    # Two-stage resampling (block mean, then INTER_AREA) weighs edge pixels slightly differently.
    np.testing.assert_allclose(result.rgb, oracle, atol=0.04)
    assert np.abs(result.rgb - oracle).mean() < 0.003
