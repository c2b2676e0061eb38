"""Random hole masks for inpainting: what ``texture-completion`` training hides in each crop.

``random_holes(batch, size, holes, generator, device)`` draws (B, 1, S, S) masks in {0, 1} (1 = hidden):
free-form strokes (polylines of ``STROKE_VERTICES`` vertices and random width, as the free-form masks of
DeepFill v2, Yu et al. 2019), axis-aligned boxes, and sometimes a whole half-plane through a point near the
centre (like the hidden side of an object); every mask hides something. ``HoleConfig`` sets the counts and
sizes (fractions of the crop side). Every random number comes from ``generator`` (a CPU one) in fixed
shapes, so the same generator state gives the same holes on any device (a resumed run draws the same
holes). ``segment_distance`` is the point-to-segment distance the strokes are rasterised with.
"""

from __future__ import annotations

import math
from typing import Self

import torch
from pydantic import model_validator
from torch import Tensor

from backend.config import Config

STROKE_VERTICES = 5
"""Vertices of each free-form stroke's polyline."""


class HoleConfig(Config):
    """How ``random_holes`` hides parts of the crops (lengths are fractions of the crop side)."""

    max_strokes: int = 4
    """Each crop gets 0..max_strokes free-form strokes (polylines of 5 vertices)."""

    stroke_width: tuple[float, float] = (0.05, 0.15)
    """Range of a stroke's width."""

    stroke_step: tuple[float, float] = (0.1, 0.3)
    """Range of the length of each of a stroke's segments (random directions)."""

    max_boxes: int = 2
    """Each crop gets 0..max_boxes axis-aligned boxes (at least one hole of some kind is always drawn)."""

    box_size: tuple[float, float] = (0.15, 0.5)
    """Range of each side of a box."""

    half_probability: float = 0.15
    """Probability of also hiding a half-plane through a point near the centre (a hidden side)."""

    @model_validator(mode="after")
    def _check_holes(self) -> Self:
        if self.max_strokes < 0 or self.max_boxes < 0 or self.max_strokes + self.max_boxes < 1:
            raise ValueError(
                f"holes.max_strokes and holes.max_boxes must be >= 0 with a positive sum, got "
                f"{self.max_strokes} and {self.max_boxes}"
            )
        for name in ("stroke_width", "stroke_step", "box_size"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"holes.{name} must satisfy 0 < low <= high <= 1, got {(low, high)}")
        if not 0 <= self.half_probability <= 1:
            raise ValueError(f"holes.half_probability must be in [0, 1], got {self.half_probability}")
        return self


def segment_distance(points: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Distance (..., P) from points (P, 2) to segments start, end (..., 2) (a point when start == end)."""
    direction = end - start  # (..., 2)
    length2 = direction.pow(2).sum(-1, keepdim=True)  # (..., 1)
    offset = points - start[..., None, :]  # (..., P, 2)
    t = ((offset * direction[..., None, :]).sum(-1) / length2.clamp_min(1e-12)).clamp(0, 1)  # (..., P)
    closest = start[..., None, :] + t[..., None] * direction[..., None, :]  # (..., P, 2)
    return (points - closest).norm(dim=-1)


def random_holes(
    batch: int, size: int, holes: HoleConfig, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """Random hole masks (B, 1, S, S) in {0, 1} (1 = hidden), reproducible from ``generator`` (a CPU one).

    Every random number is drawn on the CPU in fixed shapes (the same draws whatever the counts), then
    the shapes are rasterised on ``device`` at pixel centres ``((j + 0.5) / S, (i + 0.5) / S)``.
    """
    strokes, boxes = holes.max_strokes, holes.max_boxes

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, device="cpu")

    stroke_count = torch.randint(0, strokes + 1, (batch,), generator=generator, device="cpu")  # (B,)
    box_count = torch.randint(0, boxes + 1, (batch,), generator=generator, device="cpu")
    start = uniform(batch, max(strokes, 1), 1, 2)  # (B, K, 1, 2)
    angle = uniform(batch, max(strokes, 1), STROKE_VERTICES - 1, high=2 * math.pi)
    step = uniform(batch, max(strokes, 1), STROKE_VERTICES - 1, low=holes.stroke_step[0],
                   high=holes.stroke_step[1])  # fmt: skip
    width = uniform(batch, max(strokes, 1), low=holes.stroke_width[0], high=holes.stroke_width[1])  # (B, K)
    moves = torch.stack([angle.cos(), angle.sin()], dim=-1) * step[..., None]  # (B, K, V - 1, 2)
    vertices = torch.cat([start, start + moves.cumsum(dim=2)], dim=2).clamp(0, 1)  # (B, K, V, 2)
    centre = uniform(batch, max(boxes, 1), 2)  # (B, Kb, 2)
    half_side = uniform(batch, max(boxes, 1), 2, low=holes.box_size[0], high=holes.box_size[1]) / 2
    half = uniform(batch) < holes.half_probability  # (B,)
    plane_point = 0.5 + uniform(batch, 2, low=-0.15, high=0.15)  # (B, 2)
    plane_angle = uniform(batch, high=2 * math.pi)
    nothing = (stroke_count + box_count == 0) & ~half
    if boxes > 0:
        box_count = torch.where(nothing, torch.ones_like(box_count), box_count)
    else:
        stroke_count = torch.where(nothing, torch.ones_like(stroke_count), stroke_count)

    device = torch.device(device)
    coords = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    rows, columns = torch.meshgrid(coords, coords, indexing="ij")
    points = torch.stack([columns.flatten(), rows.flatten()], dim=-1)  # (P, 2) as (x, y)
    hidden = torch.zeros(batch, size * size, dtype=torch.bool, device=device)
    vertices, width = vertices.to(device), width.to(device)
    for index in range(strokes):
        distance = segment_distance(points, vertices[:, index, :-1], vertices[:, index, 1:])  # (B, V-1, P)
        inside = (distance.amin(dim=1) <= width[:, index, None] / 2) & (stroke_count.to(device) > index)[
            :, None
        ]
        hidden |= inside
    centre, half_side = centre.to(device), half_side.to(device)
    for index in range(boxes):
        offset = (points[None] - centre[:, index, None]).abs()  # (B, P, 2)
        inside = (offset <= half_side[:, index, None]).all(dim=-1) & (box_count.to(device) > index)[:, None]
        hidden |= inside
    normal = torch.stack([plane_angle.cos(), plane_angle.sin()], dim=-1).to(device)  # (B, 2)
    side = ((points[None] - plane_point.to(device)[:, None]) * normal[:, None]).sum(-1) > 0  # (B, P)
    hidden |= side & half.to(device)[:, None]
    return hidden.view(batch, 1, size, size).float()
