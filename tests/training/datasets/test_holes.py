"""``training.datasets.holes``: the point-to-segment distance against a naive loop; the random holes are
reproducible, never empty, and their settings are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.datasets.holes import HoleConfig, random_holes, segment_distance


def test_segment_distance_matches_a_naive_loop() -> None:
    rng = np.random.default_rng(0)
    points = rng.random((20, 2))
    starts, ends = rng.random((3, 2)), rng.random((3, 2))
    ends[2] = starts[2]  # a degenerate segment is a point
    fast = segment_distance(torch.from_numpy(points), torch.from_numpy(starts), torch.from_numpy(ends))
    for s in range(3):
        for p in range(20):
            a, b, x = starts[s], ends[s], points[p]
            best = min(np.linalg.norm(x - (a + t * (b - a))) for t in np.linspace(0, 1, 1001))
            assert abs(float(fast[s, p]) - best) < 2e-3


def test_random_holes_are_reproducible_and_never_empty() -> None:
    holes = HoleConfig()
    first = random_holes(32, 32, holes, torch.Generator().manual_seed(7))
    again = random_holes(32, 32, holes, torch.Generator().manual_seed(7))
    other = random_holes(32, 32, holes, torch.Generator().manual_seed(8))
    assert first.shape == (32, 1, 32, 32) and torch.equal(first, again) and not torch.equal(first, other)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    fractions = first.mean(dim=(1, 2, 3))
    assert (fractions > 0).all() and 0.1 < float(fractions.mean()) < 0.6
    boxes_only = random_holes(16, 32, HoleConfig(max_strokes=0, half_probability=0.0),
                              torch.Generator().manual_seed(1))  # fmt: skip
    assert (boxes_only.mean(dim=(1, 2, 3)) > 0).all()
    with pytest.raises(ValueError, match="positive sum"):
        HoleConfig(max_strokes=0, max_boxes=0)
    with pytest.raises(ValueError, match="stroke_width"):
        HoleConfig(stroke_width=(0.2, 0.1))
