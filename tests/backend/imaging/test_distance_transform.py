"""``squared_distance_to_foreground``, the exact Euclidean distance transform, against a loop over the
foreground pixels; ``distance_to_foreground``, its correctly rounded square root."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.imaging.distance_transform import distance_to_foreground, squared_distance_to_foreground


def test_squared_distance_matches_a_loop_over_foreground_pixels() -> None:
    generator = torch.Generator().manual_seed(0)
    tall = torch.zeros(1, 30, 3, dtype=torch.bool)
    tall[0, 0, 1] = True  # one pixel at the top of a tall image: distances up to 29 rows
    for foreground in (torch.rand(3, 9, 13, generator=generator) > 0.85, tall, tall.transpose(1, 2)):
        result = squared_distance_to_foreground(foreground)
        masks, height, width = foreground.shape
        for m in range(masks):
            cells = [(r, c) for r in range(height) for c in range(width) if foreground[m, r, c]]
            for r in range(height):
                for c in range(width):
                    expected = min((r - rr) ** 2 + (c - cc) ** 2 for rr, cc in cells)
                    assert float(result[m, r, c]) == expected


def test_distance_is_the_correctly_rounded_root_of_the_exact_squares() -> None:
    rng = np.random.default_rng(1)
    foreground = rng.random((40, 56)) > 0.97  # sparse: distances up to several pixels, many non-squares
    rows, columns = np.nonzero(foreground)
    grid_rows, grid_columns = np.mgrid[0:40, 0:56]
    squared = ((grid_rows[..., None] - rows) ** 2 + (grid_columns[..., None] - columns) ** 2).min(-1)
    exact = np.sqrt(squared.astype(np.float64))  # (H, W)
    result = distance_to_foreground(foreground)
    assert result.dtype == np.float32 and result.shape == foreground.shape
    # correctly rounded: no float32 lies nearer the exact root than the result
    error = np.abs(result.astype(np.float64) - exact)
    for neighbour in (np.nextafter(result, np.float32(np.inf)), np.nextafter(result, np.float32(0))):
        assert (error <= np.abs(neighbour.astype(np.float64) - exact)).all()
    assert (result[foreground] == 0).all() and (distance_to_foreground(np.zeros((3, 4), bool)) >= 7).all()
    with pytest.raises(ValueError, match="bool"):
        distance_to_foreground(foreground.astype(np.uint8))
