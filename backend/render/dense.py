"""The fixed-shape rasterizer: the Triton search, then differentiable geometry on dense rows.

``rasterize_dense(vertices_ndc, faces, settings) -> Fragments`` is the GPU counterpart of
``rasterize.rasterize``, with the same two steps and the same results (within float rounding), but no
data-dependent shapes and no host synchronisation, so that a render call issues a fixed, small number
of kernel launches:

1. **Search** (``triton_search.search_dense``, one Triton kernel, no autograd): the visible face of every
   pixel and up to K soft-band faces per pixel, with each band face's nearest edge.
2. **Geometry** (autograd): barycentrics and depth of the visible face at *every* pixel (P = B * S * S
   rows; rows that no face covers are masked by ``Fragments.covered``), and the signed squared distance
   from each pixel centre to the nearest edge of each of its K band faces (E = P * K rows, masked by
   ``Fragments.band_valid``), by the formulas of ``rasterize``. Two implementations:

   - ``_DenseGeometry``: one Triton kernel forward and one backward (the chain rule written out, its
     terms added to the vertex rows with atomics: fast, few launches, float sums in a varying order);
   - ``_geometry_torch``: plain PyTorch on the same rows, gathering vertex rows with
     ``backend.geometry.ops.gather_rows`` (reproducible gradients, about 60 more
     aten operations per step). It runs when ``torch.are_deterministic_algorithms_enabled()``.

Input checks that would need a host read (finite vertices, face indices in range) are made with
``torch._assert_async``: on CUDA a failed check is a device-side assertion that surfaces at the next
synchronisation (and leaves the CUDA context unusable, like any device assertion); on the CPU it raises
``RuntimeError`` at once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from backend.geometry.ops import gather_rows
from backend.render.rasterize import Fragments, check_vertex_shape
from backend.render.settings import RasterSettings
from backend.render.triton_search import DenseSearch, search_dense

_PLACEHOLDER = ((-1.0, -1.0, 1.0), (3.0, -1.0, 1.0), (-1.0, 3.0, 1.0))
"""A triangle (3, 3) that covers the NDC square at depth 1: the geometry of rows no face covers."""


def check_inputs_async(vertices: Tensor, faces: Tensor) -> None:
    """Check vertices (B, V, 3) and faces (F, 3) without a host read (see the module docstring).

    Shapes and dtypes raise ``ValueError`` at once; finiteness and the index range are asserted
    asynchronously.
    """
    check_vertex_shape(vertices)
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if faces.dtype.is_floating_point or faces.dtype == torch.bool:
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    if faces.numel() == 0:
        raise ValueError("faces is empty: a mesh needs at least one face")
    low, high = torch.aminmax(faces)
    total = vertices.detach().sum()  # NaN or infinite when any vertex is (or when the sum overflows)
    torch._assert_async(
        ((total - total) == 0) & (low >= 0) & (high < vertices.shape[1]),
        "vertices contain NaN or infinite values, or faces index a vertex out of range",
    )


GEOMETRY_BLOCK = 128
"""Pixels per program of the geometry kernels."""


def _geometry_kernels() -> tuple[Any, Any]:
    from backend.render._triton_kernel import geometry_backward_kernel, geometry_forward_kernel

    return geometry_forward_kernel, geometry_backward_kernel


class _DenseGeometry(torch.autograd.Function):
    """Barycentrics (P, 3), depth (P,) and signed squared band distances (P, K) from the vertex rows.

    Forward and backward are one Triton kernel each (``_triton_kernel.geometry_*_kernel``): the
    formulas of ``rasterize`` (screen barycentrics, perspective correction, distance to a segment) per
    pixel and slot, and their chain rule, whose terms are added to the vertex rows atomically.
    """

    @staticmethod
    def forward(
        ctx: Any, flat_vertices: Tensor, found: DenseSearch, size: int, perspective: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        flat_vertices = flat_vertices.contiguous()
        pixels, k = found.band_start.shape
        dtype, device = flat_vertices.dtype, flat_vertices.device
        bary = torch.empty((pixels, 3), dtype=dtype, device=device)
        depth = torch.empty((pixels,), dtype=dtype, device=device)
        signed = torch.empty((pixels, k), dtype=dtype, device=device)
        valid = torch.empty((pixels, k), dtype=torch.bool, device=device)
        forward_kernel, _ = _geometry_kernels()
        grid = (triton_cdiv(pixels, GEOMETRY_BLOCK),)
        with torch.profiler.record_function("triton_geometry_forward"):
            forward_kernel[grid](
                flat_vertices, found.visible_rows, found.visible_face, found.band_start, found.band_end,
                found.band_inside, found.band_count, found.saturated, bary, depth, signed, valid,
                pixels, size, PERSPECTIVE=perspective, K=k, BLOCK=GEOMETRY_BLOCK,
            )  # fmt: skip
        ctx.save_for_backward(flat_vertices)
        ctx.found, ctx.size, ctx.perspective = found, size, perspective
        ctx.mark_non_differentiable(valid)
        return bary, depth, signed, valid

    @staticmethod
    def backward(
        ctx: Any, grad_bary: Tensor | None, grad_depth: Tensor | None, grad_signed: Tensor | None, _: Any
    ) -> tuple[Tensor, None, None, None]:
        (flat_vertices,) = ctx.saved_tensors
        found: DenseSearch = ctx.found
        pixels, k = found.band_start.shape
        grads = []
        for grad, shape in ((grad_bary, (pixels, 3)), (grad_depth, (pixels,)), (grad_signed, (pixels, k))):
            grads.append(
                torch.zeros(shape, dtype=flat_vertices.dtype, device=flat_vertices.device)
                if grad is None
                else grad.contiguous()
            )
        grad_vertices = torch.zeros_like(flat_vertices)
        _, backward_kernel = _geometry_kernels()
        with torch.profiler.record_function("triton_geometry_backward"):
            backward_kernel[(triton_cdiv(pixels, GEOMETRY_BLOCK),)](
                flat_vertices, found.visible_rows, found.visible_face, found.band_start, found.band_end,
                found.band_inside, found.band_count, found.saturated, *grads, grad_vertices,
                pixels, ctx.size, PERSPECTIVE=ctx.perspective, K=k, BLOCK=GEOMETRY_BLOCK,
            )  # fmt: skip
        return grad_vertices, None, None, None


def _geometry_torch(
    flat: Tensor, found: DenseSearch, size: int, perspective: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``_DenseGeometry``'s outputs in plain PyTorch: bary (P, 3), depth (P,), signed (P, K), valid (P, K).

    Uncovered rows use ``_PLACEHOLDER`` (finite values, zero gradient), empty slots vertex row 0.
    """
    pixels, k = found.band_start.shape
    dtype, device = flat.dtype, flat.device
    # pixel centres in NDC: x = (2 col + 1) / S - 1 and y = 1 - (2 row + 1) / S = -x at row = col
    centre = (2.0 * torch.arange(size, device=device, dtype=dtype) + 1.0) / size - 1.0  # (S,)
    grid = torch.stack(torch.broadcast_tensors(centre[None, :], -centre[:, None]), dim=-1)  # (S, S, 2)

    # visible face: screen barycentrics l_k = cross(v_{k+1} - p, v_{k+2} - p) / (twice the area)
    covered = found.visible_face >= 0  # (P,)
    corners = gather_rows(flat, found.visible_rows).reshape(-1, size, size, 3, 3)  # (B, S, S, 3, 3)
    placeholder = torch.tensor(_PLACEHOLDER, dtype=dtype, device=device)
    corners = torch.where(covered.reshape(-1, size, size, 1, 1), corners, placeholder)
    relative = corners - torch.nn.functional.pad(grid, (0, 1))[:, :, None, :]  # z kept
    cross = torch.linalg.cross(relative.roll(-1, dims=3), relative.roll(-2, dims=3), dim=-1)[..., 2]
    area2 = cross.sum(-1, keepdim=True)  # (B, S, S, 1)
    area2 = torch.where(area2.abs() < 1e-12, 1e-12, area2)
    screen_bary = cross / area2  # (B, S, S, 3)
    depths = corners[..., 2]  # (B, S, S, 3)
    if perspective:
        weighted = screen_bary / depths
        inverse_depth = weighted.sum(-1, keepdim=True)
        bary, depth = weighted / inverse_depth, inverse_depth.reciprocal()
    else:
        bary, depth = screen_bary, (screen_bary * depths).sum(-1, keepdim=True)

    # band slots: valid below the count, and not at saturated pixels
    slot = torch.arange(k, device=device, dtype=torch.int32)
    valid = (slot < found.band_count[:, None]) & (found.saturated == 0)[:, None]  # (P, K)
    start = gather_rows(flat[:, :2], torch.where(valid, found.band_start, 0))  # (P, K, 2)
    end = gather_rows(flat[:, :2], torch.where(valid, found.band_end, 0))
    edge = (end - start).reshape(-1, size, size, k, 2)
    to_pixel = grid[:, :, None, :] - start.reshape(-1, size, size, k, 2)
    length_sq = (edge * edge).sum(-1, keepdim=True).clamp_min(1e-20)
    t = ((to_pixel * edge).sum(-1, keepdim=True) / length_sq).clamp(0.0, 1.0)
    off = to_pixel - t * edge
    sq_dist = (off * off).sum(-1).reshape(pixels, k)
    signed = torch.where(found.band_inside != 0, sq_dist, -sq_dist)
    return bary.reshape(pixels, 3), depth.reshape(pixels), signed, valid


def triton_cdiv(a: int, b: int) -> int:
    """Ceiling of a / b."""
    return -(-a // b)


def rasterize_dense(vertices_ndc: Tensor, faces: Tensor, settings: RasterSettings) -> Fragments:
    """Rasterize B meshes that share ``faces`` into dense ``Fragments`` (see ``Fragments.covered``).

    Args:
        vertices_ndc: (B, V, 3) x_ndc, y_ndc (y up) and depth (> 0 in front of the camera).
        faces: (F, 3) int64 vertex indices shared by the batch.
        settings: image size, soft-silhouette parameters and K (``max_band_faces``).
    Returns:
        Dense Fragments: P = B * S * S pixel rows and E = P * K band rows.
    """
    check_inputs_async(vertices_ndc, faces)
    batch, num_vertices = vertices_ndc.shape[:2]
    size, k = settings.image_size, settings.max_band_faces
    pixels = batch * size * size
    found = search_dense(vertices_ndc, faces, settings)
    flat = vertices_ndc.reshape(batch * num_vertices, 3)
    if torch.are_deterministic_algorithms_enabled():
        bary, depth, signed, valid = _geometry_torch(flat, found, size, settings.perspective_correct)
    else:
        bary, depth, signed, valid = _DenseGeometry.apply(flat, found, size, settings.perspective_correct)
    device = vertices_ndc.device
    return Fragments(
        batch_size=batch,
        image_size=size,
        pixel=torch.arange(pixels, device=device),
        face=found.visible_face.clamp_min(0),
        bary=bary,
        depth=depth,
        band_pixel=torch.arange(pixels * k, device=device).div(k, rounding_mode="floor"),
        band_face=torch.where(valid, found.band_face, 0).reshape(pixels * k),
        band_signed_sq_dist=signed.reshape(pixels * k),
        saturated=found.saturated.view(torch.bool),
        covered=found.visible_face >= 0,
        band_valid=valid.reshape(pixels * k),
        band_dropped=found.dropped,
        band_count=found.band_count,
    )
