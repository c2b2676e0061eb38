"""The texture of an Unsup3d relief at T x T texels, on the depth grid's UVs (``backend.geometry.depth_grid``:
pixel (i, j) of the S x S canonical image at u = (j + 0.5) / S, v = 1 - (i + 0.5) / S, so the canonical
image itself is a texture in that layout).

Contract (maps (1, C, S, S) and textures (T, T, C) on the caller's device; row 0 at the top, v = 1):

- ``texel_pixels(texture_size, size, device)``: (T T, 2) the canonical pixel position (x = column,
  y = row, pixel centres at integers) of each texel centre, row-major: ``(c + 0.5) S / T - 0.5``.
- ``upsample(maps, texture_size)``: the maps bilinearly at the texel centres (1, C, T, T)
  (``F.interpolate``, ``align_corners=False``: exactly the positions above, clamped at the border).
- ``photo_texture(crop, projection, depth, texture_size, symmetric_fill=, tolerance=)`` ->
  ``PhotoTexture``: each texel's canonical surface point (its pixel position at the upsampled depth)
  projected through the predicted view into the crop (``ViewProjection.crop_ndc``), and the crop's
  colour there (bilinear; the crop is first area-resized to T when it is larger, so nothing aliases).
  For the identity view this is the crop resized to T x T. Texels whose point the view hides (deeper, by
  more than ``tolerance``, than the surface the view sees at that pixel: ``warp_to_view``'s depth) are
  ``hidden``; with ``symmetric_fill`` each takes the colour of its mirror texel (r, T - 1 - c) where that
  one is seen (Unsup3d's objects are probably symmetric), ``filled`` says which.
- ``delit(colours, shading, floor)``: the colours divided by the canonical shading (1, 1, S, S)
  upsampled to the texels, at least ``floor``, clamped to [0, 1]: the photo without the predicted light.
- ``albedo_texture(albedo, texture_size)``: the canonical albedo (1, 3, S, S) upsampled, (T, T, 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.methods.unsup3d_view import ViewProjection
from backend.models.unsup3d import warp_to_view

SHADING_FLOOR = 0.05
"""Smallest shading the de-lit texture divides by."""


def texel_pixels(texture_size: int, size: int, device: torch.device | str) -> Tensor:
    """(T T, 2) canonical pixel positions (x, y) of the texel centres, row-major (module docstring)."""
    centres = (
        torch.arange(texture_size, device=device, dtype=torch.float32) + 0.5
    ) * size / texture_size - 0.5
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([cols.flatten(), rows.flatten()], dim=1)


def upsample(maps: Tensor, texture_size: int) -> Tensor:
    """Maps (1, C, S, S) read bilinearly at the T x T texel centres: (1, C, T, T)."""
    return F.interpolate(maps, size=(texture_size, texture_size), mode="bilinear", align_corners=False)


def _read(image: Tensor, ndc: Tensor) -> Tensor:
    """Image (1, C, H, W) read bilinearly at crop NDC (T, T, 2) (y up; edge texels repeat): (1, C, T, T)."""
    grid = torch.stack([ndc[..., 0], -ndc[..., 1]], dim=-1)[None]  # grid_sample's y points down
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class PhotoTexture:
    """The photo on the canonical texels (module docstring).

    Attributes:
        colours: (T, T, 3) in [0, 1].
        hidden: (T, T) bool, texels whose surface point the view hides.
        filled: (T, T) bool, hidden texels that took their mirror texel's colour.
    """

    colours: Tensor
    hidden: Tensor
    filled: Tensor


def photo_texture(
    crop: Tensor,
    projection: ViewProjection,
    depth: Tensor,
    texture_size: int,
    *,
    symmetric_fill: bool,
    tolerance: float,
) -> PhotoTexture:
    """The crop (1, 3, C, C) in [0, 1] on the texels of the canonical ``depth`` (S, S) (module docstring);
    ``tolerance``: the depth by which a hidden texel's point lies behind the seen surface."""
    size, count = projection.size, texture_size
    texel_depth = upsample(depth[None, None], count).flatten()  # (T T,)
    ndc, seen_depth = projection.crop_ndc(texel_pixels(count, size, depth.device), texel_depth)
    ndc = ndc.reshape(count, count, 2)
    source = crop if crop.shape[-1] <= count else F.interpolate(crop, size=(count, count), mode="area")
    colours = _read(source, ndc)[0].permute(1, 2, 0)  # (T, T, 3)
    marker = torch.zeros(1, 1, size, size, device=depth.device, dtype=depth.dtype)
    warp = warp_to_view(marker, depth[None], projection.view, projection.fov, projection.pivot_depth)
    visible_depth = _read(warp.depth[:, None], ndc)[0, 0]  # (T, T) the depth the view sees there
    hidden = seen_depth.reshape(count, count) > visible_depth + tolerance
    filled = hidden & ~hidden.flip(1) if symmetric_fill else torch.zeros_like(hidden)
    colours = torch.where(filled[..., None], colours.flip(1), colours)
    return PhotoTexture(colours=colours.clamp(0, 1).contiguous(), hidden=hidden, filled=filled)


def delit(colours: Tensor, shading: Tensor, floor: float = SHADING_FLOOR) -> Tensor:
    """Colours (T, T, 3) divided by the shading (1, 1, S, S) at the texels, at least ``floor``; in [0, 1]."""
    at_texels = upsample(shading, colours.shape[0])[0, 0].clamp_min(floor)  # (T, T)
    return (colours / at_texels[..., None]).clamp(0, 1)


def albedo_texture(albedo: Tensor, texture_size: int) -> Tensor:
    """The canonical albedo (1, 3, S, S) at the texels: (T, T, 3) in [0, 1]."""
    return upsample(albedo, texture_size)[0].permute(1, 2, 0).clamp(0, 1).contiguous()
