"""Shading: small differentiable functions that turn ``Fragments`` into values and images.

Each function consumes the ``Fragments`` of ``backend.render.rasterize`` (packed: one row per covered
pixel) or of ``backend.render.dense`` (dense: one row per pixel, masked by ``Fragments.covered``) and
returns per-row (P, C) values or (B, S, S, C) images. On dense fragments, rows of uncovered pixels
hold placeholder values, which the image functions replace by the background, and the band slots
outside ``Fragments.band_valid`` contribute nothing; no function issues a host synchronisation there.
They are plain PyTorch, so gradients flow to whatever the inputs depend on (vertex positions
through barycentrics and distances, textures, vertex colours).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.ops import gather_rows
from backend.render.rasterize import Fragments
from backend.render.search import sigmoid

_LOG_1E7 = math.log(1e-7)
"""``log(1 - coverage)`` at the largest coverage the soft silhouette uses, ``1 - 1e-7``."""


def to_image(fragments: Fragments, values: Tensor, background: Tensor | float = 0.0) -> Tensor:
    """Scatter packed values (P, C) of the covered pixels into images (B, S, S, C) over ``background``.

    ``background`` is a float or a (C,) tensor; differentiable in ``values``.
    """
    channels = values.shape[1]
    size = fragments.image_size
    if fragments.covered is not None:  # dense: one row per pixel
        fill = torch.as_tensor(background, dtype=values.dtype, device=values.device)
        image = torch.where(fragments.covered[:, None], values, fill)
        return image.reshape(fragments.batch_size, size, size, channels)
    fill = torch.as_tensor(background, dtype=values.dtype, device=values.device).expand(channels)
    image = fill.expand(fragments.num_pixels, channels).clone()
    image = image.index_copy(0, fragments.pixel, values)
    return image.reshape(fragments.batch_size, size, size, channels)


def hard_silhouette(fragments: Fragments) -> Tensor:
    """Coverage (B, S, S, 1): 1 where a face covers the pixel centre, else 0 (no gradient)."""
    size = fragments.image_size
    if fragments.covered is not None:
        mask = fragments.covered.to(fragments.bary.dtype)
        return mask.reshape(fragments.batch_size, size, size, 1)
    mask = torch.zeros(fragments.num_pixels, dtype=fragments.bary.dtype, device=fragments.bary.device)
    mask.index_fill_(0, fragments.pixel, 1.0)
    return mask.reshape(fragments.batch_size, size, size, 1)


def soft_silhouette(fragments: Fragments, sigma: float) -> Tensor:
    """SoftRas silhouette (B, S, S, 1): ``1 - prod_j (1 - sigmoid(sign_j d_j^2 / sigma))`` over faces j.

    Pairs outside every face's band contribute nothing; pixels deep inside a face are 1. Both are
    within ``dist_eps`` of the exact product over all faces. On dense fragments the K slots of each
    pixel are summed (empty slots add exact zeros) with the band faces dropped beyond K
    (``Fragments.band_dropped``, no gradient).
    """
    size = fragments.image_size
    if fragments.band_valid is not None:  # dense: E = P * K slots, pixel-major
        # log(1 - sigmoid(x)) = logsigmoid(-x) in one kernel (the GPU path); clamped as below
        log_uncovered = F.logsigmoid(fragments.band_signed_sq_dist * (-1.0 / sigma)).clamp_min(_LOG_1E7)
        log_uncovered = torch.where(fragments.band_valid, log_uncovered, 0.0)
        total = log_uncovered.reshape(fragments.num_pixels, -1).sum(1)
        if fragments.band_dropped is not None:
            total = total + fragments.band_dropped
        alpha = torch.where(fragments.saturated, 1.0, -torch.expm1(total))
        return alpha.reshape(fragments.batch_size, size, size, 1)
    coverage = sigmoid(fragments.band_signed_sq_dist / sigma)  # (E,) torch.sigmoid, thread-count-proof
    # log1p kept (issue 19): the cheaper -log(1 + exp(x)) agrees within float rounding, but with it the
    # fit of one test photo (bird_warbler) ended below the baseline's IoU spread in 2 of 3 runs
    log_uncovered = torch.log1p(-coverage.clamp(max=1.0 - 1e-7))  # (E,)
    total = torch.zeros(fragments.num_pixels, dtype=coverage.dtype, device=coverage.device)  # (B * S * S,)
    total = total.index_add(0, fragments.band_pixel, log_uncovered)
    alpha = torch.where(fragments.saturated, torch.ones_like(total), 1.0 - torch.exp(total))
    return alpha.reshape(fragments.batch_size, size, size, 1)


def _visible_corners(fragments: Fragments, values: Tensor, corner_index: Tensor) -> Tensor:
    """Rows (B, T, C), or (1, T, C) shared by the batch, at the corners ``corner_index`` (F, 3) of each
    covered pixel's face -> (P, 3, C).

    Gathered by ``gather_rows`` from the (B * T, C) rows, so the gradient does not depend on the
    thread count or the run (advanced indexing's backward races on a CPU with several threads).
    """
    count, num_rows, channels = values.shape
    rows = corner_index.to(values.device).index_select(0, fragments.face)  # (P, 3)
    if count > 1:
        batch_index = torch.div(fragments.pixel, fragments.image_size**2, rounding_mode="floor")
        rows = rows + batch_index[:, None] * num_rows
    return gather_rows(values.reshape(count * num_rows, channels), rows)


def interpolate_vertex_attributes(fragments: Fragments, attributes: Tensor, faces: Tensor) -> Tensor:
    """Interpolate per-vertex attributes (B, V, C) or (V, C) at the covered pixels -> (P, C)."""
    if attributes.dim() == 2:
        attributes = attributes.unsqueeze(0)
    if attributes.shape[0] not in (1, fragments.batch_size):
        raise ValueError(
            f"attributes have batch {attributes.shape[0]}, the render has {fragments.batch_size}"
        )
    corners = _visible_corners(fragments, attributes, faces)  # (P, 3, C)
    return (fragments.bary[..., None] * corners).sum(1)


def interpolate_face_attributes(fragments: Fragments, corner_values: Tensor, corner_index: Tensor) -> Tensor:
    """Interpolate values (T, C) indexed per face corner by ``corner_index`` (F, 3) -> (P, C).

    Used for UVs, whose indices (``face_uvs``) differ from the vertex indices at seams.
    """
    corners = _visible_corners(fragments, corner_values.unsqueeze(0), corner_index)  # (P, 3, C)
    return (fragments.bary[..., None] * corners).sum(1)


def sample_texture(fragments: Fragments, uv: Tensor, texture: Tensor) -> Tensor:
    """Bilinearly sample textures at packed UVs.

    Args:
        fragments: the fragments the UVs belong to (for each row's batch index).
        uv: (P, 2) texture coordinates, (0, 0) at the bottom-left of the image; clamped to the edge.
        texture: (H, W, C) shared by the batch, or (B, H, W, C).
    Returns:
        (P, C) colours, differentiable in ``uv`` and ``texture``.
    """
    if texture.dim() == 3:
        texture = texture.unsqueeze(0)
    if texture.dim() != 4:
        raise ValueError(f"texture must have shape (H, W, C) or (B, H, W, C), got {tuple(texture.shape)}")
    count, height, width, channels = texture.shape
    if count not in (1, fragments.batch_size):
        raise ValueError(f"texture batch {count} does not match the render batch {fragments.batch_size}")
    if fragments.covered is not None and not torch.are_deterministic_algorithms_enabled():
        return _sample_texture_dense(fragments, uv, texture)  # CUDA's grid_sample backward uses atomics
    batch_index = torch.div(fragments.pixel, fragments.image_size**2, rounding_mode="floor")
    if count == 1:
        batch_index = torch.zeros_like(batch_index)
    x = uv[:, 0] * width - 0.5  # (P,) texel-centre coordinates
    y = (1.0 - uv[:, 1]) * height - 0.5
    x0, y0 = torch.floor(x.detach()), torch.floor(y.detach())
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.long(), y0.long()
    flat = texture.reshape(-1, channels)
    base = batch_index * (height * width)

    def texel(yy: Tensor, xx: Tensor) -> Tensor:
        return flat.index_select(0, base + yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1))

    top = texel(y0, x0) * (1 - fx) + texel(y0, x0 + 1) * fx
    bottom = texel(y0 + 1, x0) * (1 - fx) + texel(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def _sample_texture_dense(fragments: Fragments, uv: Tensor, texture: Tensor) -> Tensor:
    """``sample_texture`` for dense fragments (uv (P, 2) in pixel order, texture (1 or B, H, W, C)).

    One ``grid_sample`` (bilinear, border padding, ``align_corners=False``): the same texel-centre
    convention and edge clamping as the packed path's four gathers, in one kernel and one backward
    (not used under ``torch.use_deterministic_algorithms``: its CUDA backward adds with atomics).
    """
    batch, channels = fragments.batch_size, texture.shape[3]
    image = texture.permute(0, 3, 1, 2).expand(batch, -1, -1, -1)  # (B, C, H, W)
    scale = torch.tensor([2.0, -2.0], dtype=uv.dtype, device=uv.device)
    grid = torch.addcmul(-scale / 2, uv, scale).reshape(batch, -1, 1, 2)  # (B, S * S, 1, 2) in [-1, 1]
    colours = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return colours.reshape(batch, channels, -1).transpose(1, 2).reshape(-1, channels)  # (P, C)


def face_normals_at_pixels(fragments: Fragments, vertices_view: Tensor, faces: Tensor) -> Tensor:
    """Unit normals (P, 3) in view space of the visible face at each covered pixel, turned to face the camera.

    ``vertices_view`` (B, V, 3) are view-space positions (the camera looks down -Z), so a normal facing
    the camera has a positive z; normals of faces seen from behind are flipped (two-sided surfaces).
    """
    corners = _visible_corners(fragments, vertices_view, faces)  # (P, 3, 3)
    normal = F.normalize(
        torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1), dim=1
    )
    return torch.where(normal[:, 2:] < 0, -normal, normal)


def lambert(
    colors: Tensor, normals: Tensor, light_direction: Tensor, ambient: float, diffuse: float
) -> Tensor:
    """Lambert shading (P, 3): ``colors * (ambient + diffuse * max(0, n . l))``.

    ``normals`` (P, 3) unit and ``light_direction`` (3,) (from the surface towards the light) in the
    same space, e.g. view space with (0, 0, 1) a light at the camera.
    """
    light = F.normalize(light_direction.to(normals), dim=0)
    cosine = (normals @ light).clamp_min(0.0)[:, None]  # (P, 1)
    return colors * (ambient + diffuse * cosine)
