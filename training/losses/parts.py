"""Part losses of the adaptive-flow method (seed paper eq. 13, 14; UMR's SCOPS-part terms).

Part maps are (B, P + 1, S, S) probabilities (SCOPS: channel 0 the background, channels 1..P the parts),
row 0 at the top. Vertex parts label the template's vertices (V,) with 1..P, or -1 for none.

- ``part_chamfer_loss`` (eq. 13): projected vertices of each part against pixels sampled from that
  part's map, symmetric 2-D Chamfer distance in NDC (x right, y up).
- ``part_probability_loss`` (eq. 14): per-channel mean squared error between the rendered vertex part
  probabilities and the part maps (UMR uses MSE), weighted mean over channels.
- ``render_part_probabilities``: the renderer's image of per-vertex part probabilities, background
  pixels showing the background channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.camera import Camera
from backend.render import shade
from backend.render.renderer import render
from backend.render.settings import RasterSettings


def _pixel_centres_ndc(indices: Tensor, size: int, dtype: torch.dtype) -> Tensor:
    """NDC (x right, y up) centres (..., 2) of flat pixel indices ``row * size + col`` (...)."""
    row = torch.div(indices, size, rounding_mode="floor").to(dtype)
    col = (indices % size).to(dtype)
    return torch.stack([(2 * col + 1) / size - 1, 1 - (2 * row + 1) / size], dim=-1)


def _check_part_maps(part_maps: Tensor) -> None:
    if part_maps.dim() != 4 or part_maps.shape[2] != part_maps.shape[3] or part_maps.shape[1] < 2:
        raise ValueError(
            f"part_maps must have shape (B, P + 1, S, S) with P >= 1, got {tuple(part_maps.shape)}"
        )


def part_chamfer_loss(
    projected: Tensor,
    vertex_parts: Tensor,
    part_maps: Tensor,
    points_per_part: int,
    generator: torch.Generator | None = None,
    *,
    min_pixels: float = 1.0,
) -> Tensor:
    """(B,) eq. 13: Chamfer distance between each part's projected vertices and points of its map.

    For each part p >= 1 and item, ``points_per_part`` pixels are drawn (with replacement) with
    probability proportional to ``part_maps[:, p]`` and their centres taken in NDC; the part's loss is
    the mean squared distance from each of its vertices to the nearest point plus that from each point
    to the nearest vertex. An item's loss is the mean over its present parts: parts whose map sums to
    less than ``min_pixels`` in that item, and parts with no vertex, are skipped; an item with none gets 0.

    Args:
        projected: (B, V, 2) vertices projected to NDC (x right, y up); differentiable.
        vertex_parts: (V,) int64 part of each vertex in 1..P, -1 (or 0) for none.
        part_maps: (B, P + 1, S, S) part probabilities, channel 0 the background.
        points_per_part: points drawn per part and item.
        generator: random generator (on any device: the draw happens there); None uses the global one.
        min_pixels: least probability mass (in pixels) for a part to count as present.
    """
    _check_part_maps(part_maps)
    batch, channels, size, _ = part_maps.shape
    if projected.dim() != 3 or projected.shape[0] != batch or projected.shape[2] != 2:
        raise ValueError(f"projected must have shape ({batch}, V, 2), got {tuple(projected.shape)}")
    if vertex_parts.shape != projected.shape[1:2] or vertex_parts.dtype != torch.long:
        raise ValueError(
            f"vertex_parts must be int64 of shape ({projected.shape[1]},), "
            f"got {vertex_parts.dtype} {tuple(vertex_parts.shape)}"
        )
    if points_per_part < 1:
        raise ValueError(f"points_per_part must be positive, got {points_per_part}")
    vertex_parts = vertex_parts.to(projected.device)
    mass = part_maps[:, 1:].detach().flatten(2).clamp(min=0)  # (B, P, S * S)
    present = mass.sum(-1) >= min_pixels  # (B, P)
    # absent parts draw from a uniform map (multinomial refuses all-zero rows); their loss is masked out
    mass = torch.where(present[..., None], mass, torch.ones_like(mass))
    if generator is not None:  # sample where the generator lives (a CPU generator draws the same anywhere)
        mass = mass.to(generator.device)
    drawn = torch.multinomial(mass.flatten(0, 1), points_per_part, replacement=True, generator=generator)
    points = _pixel_centres_ndc(drawn, size, projected.dtype).view(batch, channels - 1, points_per_part, 2)
    points = points.to(projected.device)  # (B, P, K, 2)
    present = present.to(projected.device)
    total = projected.new_zeros(batch)
    count = projected.new_zeros(batch)
    for part in range(1, channels):
        selected = (vertex_parts == part).nonzero().squeeze(1)  # (n,)
        if selected.numel() == 0:
            continue
        vertices = projected[:, selected]  # (B, n, 2)
        squared = (vertices[:, :, None] - points[:, part - 1, None]).pow(2).sum(-1)  # (B, n, K)
        chamfer = squared.min(dim=2).values.mean(1) + squared.min(dim=1).values.mean(1)  # (B,)
        weight = present[:, part - 1].to(projected.device, projected.dtype)  # (B,)
        total = total + weight * chamfer
        count = count + weight
    return total / count.clamp(min=1)


def part_probability_loss(
    rendered: Tensor, part_maps: Tensor, weights: Sequence[float] | None = None
) -> Tensor:
    """(B,) eq. 14: per-channel mean squared error over the image, weighted mean over the channels.

    Args:
        rendered: (B, P + 1, S, S) rendered part probabilities (``render_part_probabilities``).
        part_maps: (B, P + 1, S, S) target part maps.
        weights: P + 1 non-negative channel weights (UMR weights some parts only); None: equal weights.
    """
    if rendered.shape != part_maps.shape:
        raise ValueError(
            f"rendered and part_maps shapes differ: {tuple(rendered.shape)} vs {tuple(part_maps.shape)}"
        )
    _check_part_maps(part_maps)
    channels = rendered.shape[1]
    error = (rendered - part_maps).pow(2).mean(dim=(2, 3))  # (B, P + 1)
    if weights is None:
        return error.mean(dim=1)
    weight = torch.as_tensor(list(weights), dtype=error.dtype, device=error.device)  # (P + 1,)
    if weight.shape != (channels,):
        raise ValueError(f"weights must have {channels} entries, got {len(weight)}")
    if (weight < 0).any() or not weight.sum() > 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    return (error * weight).sum(dim=1) / weight.sum()


def render_part_probabilities(
    vertices: Tensor, faces: Tensor, camera: Camera, vertex_probs: Tensor, settings: RasterSettings
) -> Tensor:
    """Part probability images (B, P + 1, S, S) of meshes with per-vertex part probabilities.

    The probabilities are interpolated over the visible surface (from one rasterization by ``render``;
    the renderer's colour path takes 3 channels, ``shade`` interpolates any number) and composited over
    a background that is all channel 0: ``alpha * surface + (1 - alpha) * onehot(0)``, ``alpha`` the
    renderer's (soft) silhouette. Differentiable in vertices, camera and probabilities.

    Args:
        vertices: (B, V, 3) world positions.
        faces: (F, 3) int64.
        camera: B cameras.
        vertex_probs: (V, P + 1) or (B, V, P + 1) part probabilities, channel 0 the background.
        settings: raster settings (image size S).
    """
    if vertex_probs.dim() not in (2, 3) or vertex_probs.shape[-2] != vertices.shape[-2]:
        raise ValueError(
            f"vertex_probs must have shape (V, P + 1) or (B, V, P + 1) with V = {vertices.shape[-2]}, "
            f"got {tuple(vertex_probs.shape)}"
        )
    output = render(vertices, faces, camera, settings)
    fragments = output.fragments
    values = shade.interpolate_vertex_attributes(fragments, vertex_probs.to(output.alpha), faces)  # (P, C)
    surface = shade.to_image(fragments, values)  # (B, S, S, C)
    background_index = torch.zeros((), dtype=torch.long, device=surface.device)
    background = F.one_hot(background_index, vertex_probs.shape[-1]).to(surface)  # (C,)
    alpha = output.alpha  # (B, S, S, 1)
    return (alpha * surface + (1 - alpha) * background).permute(0, 3, 1, 2)
