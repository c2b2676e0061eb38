"""The mask target and MeshInversion's Chamfer mask loss against a brute-force reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from backend.fitting import targets
from backend.fitting.targets import MASK_POINTS, MaskTarget, chamfer_mask_loss, outside_distance


def test_chamfer_mask_loss_against_brute_force() -> None:
    size = 32
    mask = np.zeros((size, size), bool)
    mask[8:20, 10:26] = True
    distance = outside_distance(mask)
    rows, columns = np.nonzero(mask)
    centres = torch.tensor(
        np.stack([(2 * columns + 1) / size - 1, 1 - (2 * rows + 1) / size], axis=-1), dtype=torch.float32
    )
    # Vertices at pixel centres, so bilinear sampling of the distance field is exact there.
    pick_rows, pick_columns = torch.tensor([0, 5, 12, 31]), torch.tensor([3, 17, 12, 30])
    projected = torch.stack(
        [(2 * pick_columns + 1) / size - 1, 1 - (2 * pick_rows + 1) / size], dim=-1
    ).float()[None]  # (1, 4, 2)
    loss = chamfer_mask_loss(projected, distance, centres)
    pairwise = torch.cdist(projected[0], centres).pow(2)  # (4, M)
    expected = pairwise.min(1).values.mean() + pairwise.min(0).values.mean()
    torch.testing.assert_close(loss[0], expected, atol=1e-4, rtol=1e-4)
    # A vertex outside the image still gets a gradient toward the mask.
    far = torch.tensor([[[1.6, 1.4]]], requires_grad=True)
    chamfer_mask_loss(far, distance, centres).sum().backward()
    assert far.grad is not None and far.grad[0, 0, 0] > 0 and far.grad[0, 0, 1] > 0


def test_mask_target_is_seeded_and_resized() -> None:
    mask = np.zeros((128, 128), bool)
    mask[20:100, 30:90] = True
    first = MaskTarget.build(mask, 64, torch.Generator().manual_seed(3), torch.device("cpu"))
    again = MaskTarget.build(mask, 64, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert first.size == 64 and first.mask.shape == first.distance.shape == (64, 64)
    assert first.points.shape == (MASK_POINTS, 2) and torch.equal(first.points, again.points)
    assert float(first.distance[first.mask > 0.5].max()) == 0.0 and float(first.distance.max()) > 0


def test_outside_distance_is_exact_and_the_same_bits_on_every_call() -> None:
    """The field is sqrt(exact squared pixel distance) * 2 / R to the bit, whatever the heap holds
    (OpenCV's precise transform was one ulp off in places, differently from call to call: issue 20)."""
    size = 64
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), 4.0)
    mask = noise > 0.1  # blobs with curved outlines
    rows, columns = np.nonzero(mask)
    grid_rows, grid_columns = np.mgrid[0:size, 0:size]
    squared = ((grid_rows[..., None] - rows) ** 2 + (grid_columns[..., None] - columns) ** 2).min(-1)
    expected = np.sqrt(squared.astype(np.float32)) * np.float32(2.0 / size)  # (R, R) float32
    held = []
    for padding in (0, 48, 100, 4096, 70000):  # different heap states between calls
        held.append(np.ones(padding, np.uint8))
        distance = outside_distance(mask)
        assert distance.dtype == torch.float32 and distance.shape == (size, size)
        np.testing.assert_array_equal(distance.numpy(), expected)


def test_nearest_vertex_numba_and_torch_paths_agree_with_a_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(4)
    projected = torch.rand(3, 50, 2, generator=generator) * 2 - 1  # (B, V, 2)
    projected[1, 7] = projected[1, 3]  # a tie: the first vertex wins
    points = torch.rand(40, 2, generator=generator) * 2 - 1  # (M, 2)
    points[0] = projected[1, 3]
    expected = torch.tensor(
        [
            [
                min(range(50), key=lambda v: float(((points[m] - projected[b, v]) ** 2).sum()))
                for m in range(40)
            ]
            for b in range(3)
        ]
    )
    fast = targets.nearest_vertex(projected, points)
    monkeypatch.setattr(targets, "numba_problem", lambda: "numba switched off by the test")
    plain = targets.nearest_vertex(projected, points)
    assert torch.equal(fast, expected) and torch.equal(plain, expected)
    assert int(fast[1, 0]) == 3
