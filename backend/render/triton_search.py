"""The candidate search on fixed shapes, as one Triton kernel: no ``nonzero``, no host synchronisation.

``search_dense(vertices_ndc, faces, settings)`` answers the questions of ``backend.render.search`` for
B images of S x S pixels (P = B * S * S pixel ids ``b * S * S + row * S + col``), without autograd:

- the visible face at each pixel centre: the nearest covering face by a z-buffer (depth for
  orthographic cameras, perspective-correct inverse depth for look-at ones), -1 where none covers;
- up to K = ``settings.max_band_faces`` soft-band faces per pixel (faces whose boundary lies within the
  band of the pixel centre, as in ``search``), each with the nearest edge's two vertex rows and whether
  the pixel centre is inside the face; and how many band faces there were in all (``count``);
- the saturated pixels: deeper than the band inside some face, or whose accumulated
  ``log(1 - coverage)`` over all band faces is below ``log(dist_eps)`` (coverage 1 within dist_eps).

Faces with a corner nearer than ``settings.near`` and faces of zero projected area are skipped.

**Overflow.** A pixel in the band of more than K faces keeps the first K in face order. The others
are not lost from the forward value: their summed ``log(1 - coverage)`` is returned (``dropped``) and
``shade.soft_silhouette`` adds it, so the silhouette's value is that of all band faces; only their
gradient is missing. ``count - K`` (where positive) says how many were dropped, without a host read.
With the default K = 32 the renderer benchmark's icosphere (1280 faces, about one pixel of band) does
not overflow at 64 x 64 to 256 x 256 (its worst pixels have 26, 18 and 14 band faces); a denser mesh
or a wider band (larger sigma) can. Memory: the slots take about 40 bytes each with their gradients
(P * K slots: 0.3 GB at batch 16, 128 x 128, K = 32).

The kernel (``backend.render._triton_kernel``) is compiled by Triton at run time on CUDA, and runs in
Triton's interpreter on CPU tensors when ``TRITON_INTERPRET=1`` was set before ``triton`` was
imported (slow: for tests). ``triton`` is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from backend.render.settings import RasterSettings

BLOCKS = {"cuda": (8, 8, 32), "cpu": (16, 16, 128)}
"""(TILE_H, TILE_W, BLOCK_F) per device type: small tiles on CUDA (registers); on the CPU (Triton's
interpreter, NumPy) large ones, which mean fewer interpreted steps."""


@dataclass(frozen=True)
class DenseSearch:
    """Fixed-shape search results for P = B * S * S pixels and K band slots per pixel.

    Attributes:
        visible_rows: (P, 3) int64 rows ``b * V + faces[f]`` of the visible face's corners in the
            (B * V, 3) vertex rows; 0 where no face covers the pixel.
        visible_face: (P,) int64 visible face f (into the (F, 3) faces), -1 where none.
        band_face: (P, K) int32 band face per slot; only slots ``< min(count, K)`` are written.
        band_start, band_end: (P, K) int32 vertex rows of the nearest edge's start and end corners.
        band_inside: (P, K) int8, 1 where the pixel centre lies inside the face.
        band_count: (P,) int32 band faces found (more than K: overflow, see the module docstring).
        saturated: (P,) int8, 1 where the coverage is 1 within ``dist_eps``.
        dropped: (P,) float32 summed ``log(1 - coverage)`` of the band faces beyond K (0 without overflow).
    """

    visible_rows: Tensor
    visible_face: Tensor
    band_face: Tensor
    band_start: Tensor
    band_end: Tensor
    band_inside: Tensor
    band_count: Tensor
    saturated: Tensor
    dropped: Tensor


def _kernel() -> Any:
    """The Triton kernel, importing ``triton`` on first use."""
    from backend.render._triton_kernel import search_kernel

    return search_kernel


@torch.no_grad()
def search_dense(vertices_ndc: Tensor, faces: Tensor, settings: RasterSettings) -> DenseSearch:
    """Run the search kernel on vertices (B, V, 3) (NDC x, y and depth) and faces (F, 3) int64.

    Inputs are not validated here (``dense.rasterize_dense`` does it without host reads); faces must
    index the vertices, or the kernel reads out of bounds.
    """
    batch, num_vertices = vertices_ndc.shape[:2]
    num_faces = faces.shape[0]
    if batch * num_vertices >= 2**31 // 3:
        raise ValueError(f"{batch} x {num_vertices} vertices: too many for int32 rows")
    size = settings.image_size
    k = settings.max_band_faces
    device = vertices_ndc.device
    pixels = batch * size * size
    vertices = vertices_ndc.detach().contiguous()
    faces = faces.to(device=device, dtype=torch.long).contiguous()
    band_px = math.sqrt(settings.band_sq_ndc) * size / 2.0
    out = DenseSearch(
        visible_rows=torch.empty((pixels, 3), dtype=torch.long, device=device),
        visible_face=torch.empty((pixels,), dtype=torch.long, device=device),
        band_face=torch.empty((pixels, k), dtype=torch.int32, device=device),
        band_start=torch.empty((pixels, k), dtype=torch.int32, device=device),
        band_end=torch.empty((pixels, k), dtype=torch.int32, device=device),
        band_inside=torch.empty((pixels, k), dtype=torch.int8, device=device),
        band_count=torch.empty((pixels,), dtype=torch.int32, device=device),
        saturated=torch.empty((pixels,), dtype=torch.int8, device=device),
        dropped=torch.empty((pixels,), dtype=torch.float32, device=device),
    )
    tile_h, tile_w, block_f = BLOCKS.get(device.type, BLOCKS["cuda"])
    tiles = math.ceil(size / tile_h) * math.ceil(size / tile_w)
    with torch.profiler.record_function("triton_search_kernel"):
        _kernel()[(tiles, batch)](
            vertices, faces, out.visible_rows, out.visible_face, out.band_face, out.band_start,
            out.band_end, out.band_inside, out.band_count, out.saturated, out.dropped,
            num_vertices, num_faces, size, band_px, (2.0 / size) ** 2 / settings.sigma,
            math.log(settings.dist_eps), settings.near,
            PERSPECTIVE=settings.perspective_correct, SOFT=settings.soft, K=k,
            TILE_H=tile_h, TILE_W=tile_w, BLOCK_F=block_f,
        )  # fmt: skip
    return out
