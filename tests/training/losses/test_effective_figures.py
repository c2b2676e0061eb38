"""Figures 4-5 of seed 001 reproduced: a random cloud of projections optimised toward a silhouette.

A 64 x 64 bird-like silhouette and 500 2-D projections drawn uniformly over the image are optimised
directly (Adam, lr 0.01, 300 steps) with

(a) the plain first term (eq. 1, bilinear read of the binary silhouette): most points stall outside,
(b) the modified first term (eq. 3, distance-transformed silhouette): >= 98 % end inside, piled up,
(c) the modified first term and the second term (eq. 6 at the defaults): inside and evenly spread.

The four panels (start, a, b, c) are written as ``effective_loss_figures.png`` to ``$MONO2MESH_ARTEFACTS``
when set, else to pytest's temporary folder; the path is printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from training.losses.effective import effective_loss, sample_bilinear

SIZE = 64
POINTS = 500
STEPS = 300
PANEL_SCALE = 4


def _bird() -> Tensor:
    """(H, W) float silhouette: an elliptic body, a round head and a wedge-shaped tail."""
    y, x = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    body = ((x - 30) / 16) ** 2 + ((y - 36) / 10) ** 2 < 1
    head = (x - 46) ** 2 + (y - 24) ** 2 < 7**2
    tail = (x > 8) & (x < 30) & ((y - 35).abs() < (30 - x) * 0.4 + 2)
    return (body | head | tail).float()


def _optimise(mask: Tensor, **options: float | bool) -> Tensor:
    """(N, 2) NDC points after ``STEPS`` Adam steps on the effective loss with ``options``."""
    generator = torch.Generator().manual_seed(0)
    points = (torch.rand(1, 1, POINTS, 2, generator=generator) * 2 - 1).requires_grad_(True)
    optimiser = torch.optim.Adam([points], lr=0.01)
    for _ in range(STEPS):
        loss = effective_loss(points, mask[None, None], **options)  # type: ignore[arg-type]
        optimiser.zero_grad()
        loss.total.backward()
        optimiser.step()
    return points.detach()[0, 0]


def _inside(points: Tensor, mask: Tensor) -> Tensor:
    """(N,) bool: the bilinear read of the binary silhouette at the point is at least 1/2."""
    return sample_bilinear(mask[None], points[None])[0] >= 0.5


def _pixels(points: Tensor) -> Tensor:
    """(N, 2) pixel coordinates (column, row; continuous, pixel centres at k + 1/2) of NDC points."""
    return torch.stack([(points[:, 0] + 1) * SIZE / 2, (1 - points[:, 1]) * SIZE / 2], dim=-1)


def _coverage(points: Tensor, mask: Tensor, radius_px: float = 1.5) -> float:
    """Share of silhouette pixels with a point within ``radius_px`` pixels of their centre."""
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    centres = torch.stack([cols + 0.5, rows + 0.5], dim=-1)  # (P, 2) pixel coordinates
    distance = torch.cdist(centres, _pixels(points))  # (P, N)
    return float((distance.min(dim=1).values < radius_px).float().mean())


def _neighbour_spread(points: Tensor) -> float:
    """Coefficient of variation of nearest-neighbour distances (0 for a perfectly even spacing)."""
    distance = torch.cdist(points, points)
    distance.fill_diagonal_(float("inf"))
    nearest = distance.min(dim=1).values
    return float(nearest.std() / nearest.mean())


def _panel(mask: Tensor, points: Tensor, title: str) -> Image.Image:
    """Silhouette in grey, points as blue dots, ``PANEL_SCALE`` times enlarged, with a title."""
    side = SIZE * PANEL_SCALE
    grey = (255 - 80 * mask).to(torch.uint8).numpy()
    image = Image.fromarray(grey, "L").resize((side, side), Image.Resampling.NEAREST).convert("RGB")
    panel = Image.new("RGB", (side, side + 16), "white")
    panel.paste(image, (0, 16))
    draw = ImageDraw.Draw(panel)
    draw.text((4, 2), title, fill="black")
    for col, row in (_pixels(points) * PANEL_SCALE).tolist():
        draw.ellipse((col - 2, row + 16 - 2, col + 2, row + 16 + 2), fill=(30, 70, 220))
    return panel


def _save(panels: list[Image.Image], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    figure = Image.new(
        "RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height), "white"
    )
    for index, panel in enumerate(panels):
        figure.paste(panel, (index * (panel.width + 8), 0))
    path = folder / "effective_loss_figures.png"
    figure.save(path)
    return path


def test_figures_4_and_5(tmp_path: Path) -> None:
    mask = _bird()
    start = (torch.rand(POINTS, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1).view(POINTS, 2)
    plain = _optimise(mask, beta=0.0, distance_transform=False)
    modified = _optimise(mask, beta=0.0)
    spread = _optimise(mask)

    inside = {name: float(_inside(p, mask).float().mean()) for name, p in
              {"start": start, "plain": plain, "modified": modified, "spread": spread}.items()}  # fmt: skip
    coverage = {"modified": _coverage(modified, mask), "spread": _coverage(spread, mask)}
    evenness = {"modified": _neighbour_spread(modified), "spread": _neighbour_spread(spread)}
    panels = [
        _panel(mask, start, f"start: {inside['start']:.0%} inside"),
        _panel(mask, plain, f"(a) eq. 1: {inside['plain']:.0%} inside"),
        _panel(mask, modified, f"(b) eq. 3: {inside['modified']:.0%} inside"),
        _panel(mask, spread, f"(c) eq. 3 + 5: {inside['spread']:.0%}, cover {coverage['spread']:.0%}"),
    ]
    path = _save(panels, Path(os.environ.get("MONO2MESH_ARTEFACTS") or tmp_path))
    print(f"effective loss figures: {path}; inside {inside}; coverage {coverage}; nn spread {evenness}")

    assert inside["plain"] < 0.5 < 1 - inside["start"]  # Figure 4: the plain term stalls outside
    assert inside["plain"] < inside["start"] + 0.15  # only points within a pixel of the boundary moved in
    assert inside["modified"] >= 0.98  # Figure 5
    assert inside["spread"] >= 0.98
    assert coverage["spread"] > coverage["modified"] + 0.05  # the second term covers the silhouette
    assert evenness["spread"] < 0.5 * evenness["modified"]


def test_figure_5_with_the_neighbour_limited_second_term() -> None:
    """(c) with ``cutoff=10`` (pairs beyond 10 theta dropped): still inside, covering and even."""
    mask = _bird()
    modified = _optimise(mask, beta=0.0)
    spread = _optimise(mask, cutoff=10.0)
    assert float(_inside(spread, mask).float().mean()) >= 0.98
    assert _coverage(spread, mask) > _coverage(modified, mask) + 0.05
    assert _neighbour_spread(spread) < 0.5 * _neighbour_spread(modified)
