"""Tests for backend.imaging.mask: source priority, GrabCut on synthetic and real photos, the cleaner."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.imaging import MaskError, clean_mask, compute_mask, load_image

BUNTING = Path("/work/shared/data/photos/bird_bunting.jpg")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def ellipse_scene(width: int = 240, height: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A textured orange ellipse on a textured blue-green background; (rgb (H, W, 3), ellipse (H, W))."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    ellipse = ((columns - 125) / 72) ** 2 + ((rows - 96) / 56) ** 2 <= 1.0
    background = np.stack(
        [0.15 + 0.1 * np.sin(columns / 5), 0.45 + 0.15 * np.sin(rows / 7), 0.35 + 0.1 * np.cos(columns / 9)],
        axis=-1,
    )
    spots = (np.sin(columns / 3) * np.sin(rows / 4) > 0.5)[..., None]
    foreground = np.where(spots, [0.95, 0.75, 0.2], [0.85, 0.35, 0.1])
    rgb = np.where(ellipse[..., None], foreground, background)
    rgb = rgb + rng.normal(0.0, 0.04, rgb.shape)
    return np.clip(rgb, 0, 1).astype(np.float32), ellipse


def test_grabcut_finds_a_centred_ellipse() -> None:
    rgb, ellipse = ellipse_scene()
    result = compute_mask(rgb, None, None)
    assert result.source == "grabcut"
    assert result.mask.shape == ellipse.shape and result.mask.dtype == np.bool_
    assert iou(result.mask, ellipse) > 0.9


def test_grabcut_downscales_large_images_and_is_deterministic() -> None:
    rgb, ellipse = ellipse_scene()
    large = cv2.resize(rgb, (960, 800), interpolation=cv2.INTER_LINEAR)  # runs at 400 x 333
    large_ellipse = cv2.resize(ellipse.astype(np.uint8), (960, 800), interpolation=cv2.INTER_NEAREST) > 0
    first = compute_mask(large, None, None).mask
    assert first.shape == (800, 960)
    assert iou(first, large_ellipse) > 0.9
    np.testing.assert_array_equal(first, compute_mask(large, None, None).mask)


def test_alpha_beats_grabcut_and_opaque_alpha_is_ignored() -> None:
    rgb, ellipse = ellipse_scene()
    alpha = np.zeros(ellipse.shape, dtype=np.float32)
    alpha[20:60, 30:90] = 0.8
    result = compute_mask(rgb, alpha, None)
    assert result.source == "alpha"
    np.testing.assert_array_equal(result.mask, alpha > 0.5)
    assert compute_mask(rgb, np.ones_like(alpha), None).source == "grabcut"


def test_given_mask_beats_alpha_and_is_not_cleaned() -> None:
    rgb, ellipse = ellipse_scene()
    alpha = ellipse.astype(np.float32)
    given = np.zeros(ellipse.shape, dtype=bool)
    given[10:50, 10:50] = True
    given[30, 30] = False  # a hole that the cleaner would fill
    given[150, 200] = True  # a speck that the cleaner would drop
    result = compute_mask(rgb, alpha, given)
    assert result.source == "given"
    np.testing.assert_array_equal(result.mask, given)


@pytest.mark.parametrize("fill", [False, True])
def test_empty_or_full_given_mask_is_refused(fill: bool) -> None:
    rgb, _ = ellipse_scene()
    with pytest.raises(MaskError, match=r"given mask covers 100\.0%" if fill else "given mask is empty"):
        compute_mask(rgb, None, np.full(rgb.shape[:2], fill))


def test_empty_alpha_is_refused_with_a_suggestion() -> None:
    rgb, _ = ellipse_scene()
    with pytest.raises(MaskError, match=r"alpha channel is empty.*pass a mask"):
        compute_mask(rgb, np.zeros(rgb.shape[:2], dtype=np.float32), None)


def test_nearly_full_mask_is_refused() -> None:
    rgb, _ = ellipse_scene()
    given = np.ones(rgb.shape[:2], dtype=bool)
    given[0, :100] = False  # 99.8 % covered
    with pytest.raises(MaskError, match=r"99\.8%"):
        compute_mask(rgb, None, given)


def test_uniform_image_gives_a_mask_error() -> None:
    rgb = np.full((120, 160, 3), 0.5, dtype=np.float32)
    with pytest.raises(MaskError, match="pass a mask"):
        compute_mask(rgb, None, None)


def test_wrong_shapes_are_value_errors() -> None:
    rgb, ellipse = ellipse_scene()
    with pytest.raises(ValueError, match="given_mask"):
        compute_mask(rgb, None, ellipse[:-1])
    with pytest.raises(ValueError, match="bool"):
        compute_mask(rgb, None, ellipse.astype(np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        compute_mask(rgb[..., 0], None, None)


def test_clean_mask_fills_holes_keeps_the_largest_component_and_drops_specks() -> None:
    rows, columns = np.mgrid[0:200, 0:200]
    radius = np.hypot(rows - 90, columns - 90)
    ring = (radius >= 20) & (radius <= 60)  # a ring: its inside is a hole
    small = np.hypot(rows - 180, columns - 180) <= 8  # a second, smaller component
    specks = np.zeros_like(ring)
    specks[5, 150] = specks[150, 5] = True
    cleaned = clean_mask(ring | small | specks)
    np.testing.assert_array_equal(cleaned, radius <= 60)


def test_clean_mask_of_empty_mask_is_empty() -> None:
    assert not clean_mask(np.zeros((10, 10), dtype=bool)).any()


@pytest.mark.skipif(not BUNTING.exists(), reason="the sample photo is not on this machine")
def test_grabcut_on_a_real_bird_photo() -> None:
    decoded = load_image(BUNTING)
    result = compute_mask(decoded.rgb, decoded.alpha, None)
    assert result.source == "grabcut"
    count, _ = cv2.connectedComponents(result.mask.astype(np.uint8), connectivity=8)
    assert count - 1 == 1
    assert 0.05 < result.mask.mean() < 0.8
    height, width = result.mask.shape
    assert result.mask[height // 2, width // 2]
