"""Part losses on hand-made part maps and a tiny rendered square."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from backend.geometry.camera import Camera
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from training.losses.parts import part_chamfer_loss, part_probability_loss, render_part_probabilities

SIZE = 8


def _centre(row: int, col: int) -> list[float]:
    """NDC centre (x right, y up) of pixel (row, col) of a SIZE x SIZE image."""
    return [(2 * col + 1) / SIZE - 1, 1 - (2 * row + 1) / SIZE]


def _maps(pixels: dict[tuple[int, int], list[tuple[int, int]]], batch: int, parts: int) -> Tensor:
    """Part maps (B, P + 1, S, S): 1 at the listed pixels of (item, part), background elsewhere."""
    maps = torch.zeros(batch, parts + 1, SIZE, SIZE)
    for (b, p), cells in pixels.items():
        for row, col in cells:
            maps[b, p, row, col] = 1
    maps[:, 0] = (maps[:, 1:].sum(1) == 0).float()
    return maps


def test_part_chamfer_is_zero_on_the_part_pixels_and_grows_when_shifted() -> None:
    part1 = [(1, 1), (1, 2), (2, 1)]
    maps = _maps({(0, 1): part1, (1, 1): part1, (0, 2): [(6, 6), (6, 5)], (1, 2): [(5, 5)]}, 2, 2)
    vertices = torch.tensor([*map(lambda c: _centre(*c), part1), _centre(6, 6), _centre(6, 5), [5.0, 5.0]])
    vertex_parts = torch.tensor([1, 1, 1, 2, 2, -1])
    projected = vertices.expand(2, -1, -1)
    generator = torch.Generator().manual_seed(0)
    loss = part_chamfer_loss(projected, vertex_parts, maps, 64, generator)
    assert loss.shape == (2,)
    assert float(loss[0]) < 1e-10  # item 1's part 2 sits one pixel away from the vertices
    assert float(loss[1]) > 1e-3
    shifted = projected + torch.tensor([0.5, 0.0])
    assert float(part_chamfer_loss(shifted, vertex_parts, maps, 64, generator)[0]) > 0.1


def test_part_chamfer_against_direct_computation_and_skips_absent_parts() -> None:
    # one pixel per part: every drawn point is that pixel's centre
    maps = _maps({(0, 1): [(2, 3)], (0, 2): [(6, 1)], (1, 1): [(4, 4)]}, 2, 3)  # item 1: parts 2, 3 absent
    torch.manual_seed(1)
    projected = (torch.rand(2, 7, 2) * 2 - 1).requires_grad_(True)
    vertex_parts = torch.tensor([1, 1, 2, -1, 2, 2, 1])  # part 3 has no vertex
    loss = part_chamfer_loss(projected, vertex_parts, maps, 5)

    def chamfer(points: Tensor, centre: list[float]) -> float:
        squared = [float(((p - torch.tensor(centre)) ** 2).sum()) for p in points]
        return sum(squared) / len(squared) + min(squared)

    item0 = (
        chamfer(projected[0, [0, 1, 6]].detach(), _centre(2, 3))
        + chamfer(projected[0, [2, 4, 5]].detach(), _centre(6, 1))
    ) / 2
    item1 = chamfer(projected[1, [0, 1, 6]].detach(), _centre(4, 4))
    assert math.isclose(float(loss[0].detach()), item0, rel_tol=1e-5)
    assert math.isclose(float(loss[1].detach()), item1, rel_tol=1e-5)
    loss.sum().backward()
    assert projected.grad is not None
    assert float(projected.grad[:, 3].abs().sum()) == 0.0  # unassigned vertex
    assert float(projected.grad[1, [2, 4, 5]].abs().sum()) == 0.0  # part 2 absent in item 1
    # nothing present at all: 0
    empty = torch.zeros(1, 4, SIZE, SIZE)
    assert float(part_chamfer_loss(projected[:1], vertex_parts, empty, 5)[0].detach()) == 0.0
    with pytest.raises(ValueError, match="vertex_parts must be int64"):
        part_chamfer_loss(projected, vertex_parts[:3], maps, 5)


def test_part_chamfer_draws_pixels_in_proportion_to_the_map() -> None:
    maps = torch.zeros(1, 2, SIZE, SIZE)
    maps[0, 1, 3, 3] = 0.75
    maps[0, 1, 3, 5] = 0.25  # 2 pixels = 0.5 NDC to the right
    projected = torch.tensor([[_centre(3, 3)]])
    generator = torch.Generator().manual_seed(2)
    loss = part_chamfer_loss(projected, torch.tensor([1]), maps, 4000, generator)
    # vertex -> points: 0; points -> vertex: 0.25 of the points at squared distance 0.25
    assert math.isclose(float(loss[0]), 0.25 * 0.25, rel_tol=0.1)


def test_part_probability_loss_against_a_loop() -> None:
    torch.manual_seed(3)
    rendered, maps = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    weights = [0.0, 5.0, 1.0]
    loss = part_probability_loss(rendered, maps, weights)
    for b in range(2):
        errors = [
            sum(float((rendered[b, c, i, j] - maps[b, c, i, j]) ** 2) for i in range(4) for j in range(4))
            / 16
            for c in range(3)
        ]
        expected = sum(w * e for w, e in zip(weights, errors, strict=True)) / sum(weights)
        assert math.isclose(float(loss[b]), expected, rel_tol=1e-5)
        assert math.isclose(float(part_probability_loss(rendered, maps)[b]), sum(errors) / 3, rel_tol=1e-5)
    assert float(part_probability_loss(maps, maps, weights).abs().max()) == 0.0
    with pytest.raises(ValueError, match="weights must have 3 entries"):
        part_probability_loss(rendered, maps, [1.0, 1.0])
    with pytest.raises(ValueError, match="positive sum"):
        part_probability_loss(rendered, maps, [0.0, 0.0, 0.0])


def _square() -> tuple[Tensor, Tensor]:
    """A square [-0.5, 0.5]^2 at z = 0 facing +Z, two triangles."""
    vertices = torch.tensor([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
    return vertices, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_render_part_probabilities_of_a_square() -> None:
    vertices, faces = _square()
    camera = Camera.weak_perspective(
        torch.ones(2), torch.tensor([[0.0, 0.0], [0.25, 0.0]]), torch.tensor([[1.0, 0, 0, 0]] * 2)
    )
    # left vertices all part 1, right vertices all part 2; 5 channels = two colour groups
    vertex_probs = torch.tensor(
        [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=torch.float32
    ).requires_grad_(True)
    size = 16
    hard = render_part_probabilities(
        vertices, faces, camera, vertex_probs, RasterSettings(size, soft=False)
    ).detach()
    assert hard.shape == (2, 5, size, size)
    torch.testing.assert_close(hard.sum(1), torch.ones(2, size, size))  # probabilities everywhere
    assert hard[0, :, 0, 0].tolist() == [1, 0, 0, 0, 0]  # background
    # pixel (7, 5) of item 0: x = (2 * 5 + 1) / 16 - 1 = -0.3125, inside; part 2 weight = (x + 0.5)
    torch.testing.assert_close(hard[0, 1:3, 7, 5], torch.tensor([0.8125, 0.1875]))
    assert float(hard[0, 0, 7, 5]) == 0.0
    # item 1 is shifted right by 0.25 NDC = 2 pixels
    torch.testing.assert_close(hard[1, :, 7, 7], hard[0, :, 7, 5])
    # the same as the renderer's own vertex-colour path for the first three channels
    rgb = render(vertices, faces, camera, RasterSettings(size, soft=False), vertex_colors=vertex_probs[:, :3])
    alpha = rgb.alpha.permute(0, 3, 1, 2)
    torch.testing.assert_close(
        hard[:, :3], alpha * rgb.rgb.permute(0, 3, 1, 2) + (1 - alpha) * torch.eye(3)[0, :, None, None]
    )
    # soft: background channel 1 far outside, gradients reach the probabilities
    soft = render_part_probabilities(vertices, faces, camera, vertex_probs, RasterSettings(size, sigma=1e-4))
    corner = soft.detach()[:, :, 0, 0]  # (B, 5)
    assert float(corner[:, 0].min()) > 1 - 1e-6 and float(corner[:, 1:].abs().max()) < 1e-6
    soft[:, 2].sum().backward()
    assert vertex_probs.grad is not None and float(vertex_probs.grad[:, 2].abs().sum()) > 0
    with pytest.raises(ValueError, match="vertex_probs must have shape"):
        render_part_probabilities(vertices, faces, camera, vertex_probs[:3], RasterSettings(size))
