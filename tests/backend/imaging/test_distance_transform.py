"""``squared_distance_to_foreground``, the exact Euclidean distance transform, against a loop over the
foreground pixels."""

from __future__ import annotations

import torch

from backend.imaging.distance_transform import squared_distance_to_foreground


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
