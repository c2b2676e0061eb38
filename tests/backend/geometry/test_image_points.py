"""Tests for backend.geometry.image_points: projected points against masks and pixels, by hand and by loop."""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry.image_points import points_in_mask, splat_points


def test_points_inside_and_splat_match_pixels() -> None:
    mask = torch.zeros(1, 4, 4)
    mask[0, 0, 3] = 1  # top-right pixel
    xy_ndc = torch.tensor([[[0.75, 0.75], [0.6, 0.9], [-0.75, 0.75], [0.75, -0.75], [1.2, 0.75]]])
    assert points_in_mask(xy_ndc, mask).tolist() == [[True, True, False, False, False]]
    hit = splat_points(xy_ndc, 4)[0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 3] = expected[0, 0] = expected[3, 3] = True
    assert torch.equal(hit, expected)


def test_both_agree_with_the_pixel_of_each_point() -> None:
    """A loop: pixel (floor((1 - y) / 2 S), floor((x + 1) / 2 S)), away from pixel borders."""
    generator = torch.Generator().manual_seed(7)
    size = 8
    centres = torch.randint(-2, size + 2, (2, 40, 2), generator=generator, device="cpu").float()  # pixels
    jitter = (torch.rand(2, 40, 2, generator=generator, device="cpu") - 0.5) * 0.8
    xy_ndc = torch.stack(
        [
            (centres[..., 1] + 0.5 + jitter[..., 1]) / size * 2 - 1,
            1 - (centres[..., 0] + 0.5 + jitter[..., 0]) / size * 2,
        ],
        dim=-1,
    )  # (2, 40, 2): row, column -> x, y
    masks = torch.rand(2, size, size, generator=generator, device="cpu")
    inside, hit = points_in_mask(xy_ndc, masks), splat_points(xy_ndc, size)
    expected_hit = torch.zeros(2, size, size, dtype=torch.bool)
    for batch in range(2):
        for point in range(40):
            x, y = xy_ndc[batch, point].tolist()
            row, column = math.floor((1 - y) / 2 * size), math.floor((x + 1) / 2 * size)
            on_image = 0 <= row < size and 0 <= column < size
            assert bool(inside[batch, point]) == (on_image and float(masks[batch, row, column]) > 0.5)
            if on_image:
                expected_hit[batch, row, column] = True
    assert torch.equal(hit, expected_hit)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected projections"):
        points_in_mask(torch.zeros(2, 5, 3), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="expected projections"):
        points_in_mask(torch.zeros(2, 5, 2), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="expected projections"):
        splat_points(torch.zeros(5, 2), 4)
