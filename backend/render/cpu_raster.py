"""The renderer's CPU path compiled (the ``numba`` backend): four loops, each with its backward pass.

- ``cpu_soft_silhouette(vertices_ndc, faces, settings)``: the SoftRas silhouette, ``1 - prod_j (1 -
  sigmoid(s_j d_j^2 / sigma))`` over the faces j whose soft band holds the pixel (pixels deeper than the
  band inside a face, or whose coverage is within ``dist_eps`` of 1, are exactly 1 and carry no
  gradient), by a loop over faces and the pixels of each face's box enlarged by the band; the forward
  pass records each band pair's gradient terms, so the backward pass is one loop over them.
- ``cpu_visible_search``: the visible face of each pixel (a z-buffer), as ``search.search`` finds it.
- ``cpu_barycentric_depth``: the visible pixels' barycentrics and depth (perspective-correct or not),
  differentiable in the vertices (x, y and z).
- ``cpu_sample_texture``: UV interpolation and bilinear texture lookup, differentiable in the
  barycentrics and the texture.

Contract, as the packed path (``rasterize``, ``shade``), which stays the reference: faces with a corner
nearer than ``settings.near`` and faces of (almost) zero projected area are skipped; ``d`` is the
distance from the pixel centre to the face's nearest edge (the segment), ``s`` +1 inside and -1 outside;
pairs outside the band add nothing; no gradient reaches the depths through the silhouette. The
arithmetic runs in float64 whatever the input dtype, in a fixed order (faces in index order, pixels row
by row): the same bits on every run and for any thread count (the loops run on one thread). Results
match the packed path within float32 rounding (float64: within 1e-12), except where a pair lies on the
band's edge (coverage ``dist_eps``), where the two may decide differently by about ``dist_eps``, and,
for the visible face, where two faces have exactly the same depth.

numba compiles the loops (``_numba_kernel``) at run time, nothing at install; the machine code is cached
on disk after the first call (numba's ``cache=True``). ``numba_problem()`` says why they cannot run
(numba missing or broken), or None.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from backend.render.search import SearchResult
from backend.render.settings import RasterSettings

if TYPE_CHECKING:  # rasterize imports this module
    from backend.render.rasterize import Fragments


def _kernels() -> Any:
    """The module of compiled loops (``_numba_kernel``: numba imported, and each loop compiled or loaded
    from numba's cache, on first use), typed loosely: numba's dispatchers take any arrays."""
    from backend.render import _numba_kernel

    return _numba_kernel


@lru_cache(maxsize=1)
def numba_problem() -> str | None:
    """None when the compiled kernel runs here (numba imports and compiles a one-triangle image), else
    the reason, in words."""
    try:
        vertices = torch.tensor(
            [[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]]], dtype=torch.float64, device="cpu"
        )
        faces = torch.tensor([[0, 1, 2]], device="cpu")
        alpha = cpu_soft_silhouette(vertices, faces, RasterSettings(image_size=8, sigma=1e-3))
        if float(alpha.max()) != 1.0:
            return "the numba kernel ran but covered nothing (a broken numba installation)"
    except ImportError as error:
        return f"numba does not import ({error})"
    except Exception as error:  # a compile failure of any kind
        return f"the numba kernel failed ({type(error).__name__}: {error})"
    return None


def _constants(settings: RasterSettings) -> tuple[int, float, float, float, float]:
    size = settings.image_size
    band_px = math.sqrt(settings.band_sq_ndc) * size / 2.0
    to_logit = (2.0 / size) ** 2 / settings.sigma  # squared pixel distance -> d^2 / sigma in NDC units
    return size, band_px, to_logit, settings.near, -math.log(settings.dist_eps)


class _CpuSoftSilhouette(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, vertices_ndc: Tensor, faces: Tensor, settings: RasterSettings) -> Tensor:
        forward = _kernels().forward
        size, band_px, to_logit, near, log_saturation = _constants(settings)
        batch = vertices_ndc.shape[0]
        points = vertices_ndc.detach().to(torch.float64).contiguous().numpy()  # (B, V, 3)
        face_table = faces.detach().to(torch.int64).contiguous().numpy()  # (F, 3)
        total = np.zeros((batch, size * size))
        saturated = np.zeros((batch, size * size), dtype=np.bool_)
        pairs = forward(points, face_table, size, band_px, to_logit, near, log_saturation, total, saturated)
        total_t = torch.from_numpy(total)
        saturated_t = torch.from_numpy(saturated)
        alpha = torch.where(saturated_t, 1.0, -torch.expm1(-total_t))  # (B, S * S) float64
        ctx.pairs = pairs  # the band pairs and their gradient terms (numpy, kept for backward)
        ctx.uncovered = torch.where(saturated_t, 0.0, torch.exp(-total_t))  # d alpha / d total
        ctx.shape = tuple(vertices_ndc.shape)
        ctx.dtype = vertices_ndc.dtype
        return alpha.to(vertices_ndc.dtype).reshape(batch, size, size, 1)

    @staticmethod
    def backward(ctx: Any, grad_alpha: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        backward = _kernels().backward
        batch, num_vertices, _ = ctx.shape
        grad_total = (grad_alpha.detach().to(torch.float64).reshape(batch, -1) * ctx.uncovered).reshape(-1)
        grad = np.zeros((batch * num_vertices, 2))
        backward(*ctx.pairs, grad_total.contiguous().numpy(), grad)
        grad_xy = torch.from_numpy(grad).reshape(batch, num_vertices, 2).to(ctx.dtype)  # (B, V, 2)
        return torch.cat([grad_xy, torch.zeros_like(grad_xy[..., :1])], dim=-1), None, None


def cpu_visible_search(vertices_ndc: Tensor, faces: Tensor, settings: RasterSettings) -> SearchResult:
    """The visible surface of B meshes sharing ``faces`` (no autograd): ``search.search``'s visible
    fields, found by one numba loop (``_numba_kernel.visible``), with no soft-band pairs (empty band
    fields, nothing saturated: a soft silhouette comes from ``cpu_soft_silhouette``).

    Args:
        vertices_ndc: (B, V, 3) CPU NDC vertices (x, y up, depth).
        faces: (F, 3) int64.
        settings: image size, near and ``perspective_correct``.
    The same pixels and faces as the packed search, but for pixel centres within rounding of an edge
    (float64 here) and, of faces at exactly the same depth, which one wins.
    """
    batch = vertices_ndc.shape[0]
    size = settings.image_size
    winner = np.full((batch, size * size), -1, dtype=np.int64)
    _kernels().visible(
        vertices_ndc.detach().to(torch.float64).contiguous().numpy(),
        faces.detach().to(torch.int64).contiguous().numpy(),
        size, settings.near, settings.perspective_correct, winner,
    )  # fmt: skip
    flat = torch.from_numpy(winner).reshape(-1)  # (B * S * S,)
    pixel = (flat >= 0).nonzero().squeeze(1)  # (P,) ascending
    image = torch.div(pixel, size * size, rounding_mode="floor")
    within = pixel - image * (size * size)
    row = torch.div(within, size, rounding_mode="floor")
    dtype = vertices_ndc.dtype
    empty = torch.zeros(0, dtype=torch.long, device="cpu")
    none = torch.zeros(0, dtype=dtype, device="cpu")
    return SearchResult(
        visible_face=flat.index_select(0, pixel) + image * faces.shape[0],
        visible_pixel=pixel,
        visible_row=row.to(dtype),
        visible_col=(within - row * size).to(dtype),
        band_face=empty, band_pixel=empty, band_row=none, band_col=none, band_edge=empty,
        band_inside=empty.bool(),
        saturated=torch.zeros(batch * size * size, dtype=torch.bool, device="cpu"),
    )  # fmt: skip


def cpu_soft_silhouette(vertices_ndc: Tensor, faces: Tensor, settings: RasterSettings) -> Tensor:
    """(B, S, S, 1) SoftRas silhouette of B meshes sharing ``faces`` (module docstring).

    Args:
        vertices_ndc: (B, V, 3) CPU x_ndc, y_ndc (y up) and depth; differentiable in x and y.
        faces: (F, 3) int64 CPU vertex indices.
        settings: image size, sigma, dist_eps and near (``soft`` must be True).
    Raises:
        ValueError: a tensor is not on the CPU, or the settings ask for a hard silhouette.
        ImportError: numba is not installed.
    """
    if vertices_ndc.device.type != "cpu" or faces.device.type != "cpu":
        raise ValueError(f"the numba silhouette runs on CPU tensors, got {vertices_ndc.device}")
    if not settings.soft:
        raise ValueError("the numba silhouette is the soft one: settings.soft must be True")
    result: Tensor = _CpuSoftSilhouette.apply(vertices_ndc, faces, settings)
    return result


class _CpuTexture(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, bary: Tensor, texture: Tensor, face: Tensor, image: Tensor, uvs: Tensor, face_uvs: Tensor
    ) -> Tensor:
        arrays = (
            bary.detach().to(torch.float64).contiguous().numpy(),
            face.to(torch.int64).contiguous().numpy(),
            image.to(torch.int64).contiguous().numpy(),
            uvs.detach().to(torch.float64).contiguous().numpy(),
            face_uvs.to(torch.int64).contiguous().numpy(),
            texture.detach().to(torch.float64).contiguous().numpy(),
        )
        out = np.empty((bary.shape[0], texture.shape[3]))
        _kernels().texture_forward(*arrays, out)
        ctx.arrays = arrays
        ctx.dtypes = (bary.dtype, texture.dtype)
        ctx.texture_shape = tuple(texture.shape)
        return torch.from_numpy(out).to(bary.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None, None]:
        grad_bary = np.zeros((grad_out.shape[0], 3))
        grad_texture = np.zeros(ctx.texture_shape)
        upstream = grad_out.detach().to(torch.float64).contiguous().numpy()
        _kernels().texture_backward(*ctx.arrays, upstream, grad_bary, grad_texture)
        bary_dtype, texture_dtype = ctx.dtypes
        return (
            torch.from_numpy(grad_bary).to(bary_dtype) if ctx.needs_input_grad[0] else None,
            torch.from_numpy(grad_texture).to(texture_dtype) if ctx.needs_input_grad[1] else None,
            None, None, None, None,
        )  # fmt: skip


def cpu_sample_texture(fragments: Fragments, uvs: Tensor, face_uvs: Tensor, texture: Tensor) -> Tensor:
    """(P, C) colours of the covered pixels: ``shade.interpolate_face_attributes`` of the UVs, then
    ``shade.sample_texture``, in one numba loop (``_numba_kernel.texture_forward``), differentiable in
    ``fragments.bary`` (hence the vertices) and ``texture``; the same values and gradients within
    rounding (float64 inside).

    Args:
        fragments: packed fragments (``fragments.face`` indexes ``face_uvs``).
        uvs: (T, 2) texture coordinates; face_uvs: (F, 3) their indices per face corner.
        texture: (H, W, C) shared by the batch, or (B, H, W, C).
    """
    if texture.dim() == 3:
        texture = texture.unsqueeze(0)
    if texture.dim() != 4:
        raise ValueError(f"texture must have shape (H, W, C) or (B, H, W, C), got {tuple(texture.shape)}")
    if texture.shape[0] not in (1, fragments.batch_size):
        raise ValueError(
            f"texture batch {texture.shape[0]} does not match the render batch {fragments.batch_size}"
        )
    image = torch.div(fragments.pixel, fragments.image_size**2, rounding_mode="floor")  # (P,)
    if texture.shape[0] == 1:
        image = torch.zeros_like(image)
    result: Tensor = _CpuTexture.apply(fragments.bary, texture, fragments.face, image, uvs, face_uvs)
    return result


class _CpuBarycentrics(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, vertices_ndc: Tensor, faces: Tensor, found: SearchResult, size: int, perspective: bool
    ) -> tuple[Tensor, Tensor]:
        num_faces = faces.shape[0]
        image = torch.div(found.visible_face, num_faces, rounding_mode="floor")  # (P,)
        arrays = (
            vertices_ndc.detach().to(torch.float64).contiguous().numpy(),
            faces.to(torch.int64).contiguous().numpy(),
            (found.visible_face - image * num_faces).numpy(),
            image.numpy(),
            found.visible_col.to(torch.float64).numpy(),
            found.visible_row.to(torch.float64).numpy(),
        )
        count = found.visible_face.shape[0]
        bary, depth = np.empty((count, 3)), np.empty(count)
        _kernels().bary_forward(*arrays, size, perspective, bary, depth)
        ctx.arrays, ctx.size, ctx.perspective = arrays, size, perspective
        ctx.shape, ctx.dtype = tuple(vertices_ndc.shape), vertices_ndc.dtype
        return torch.from_numpy(bary).to(vertices_ndc.dtype), torch.from_numpy(depth).to(vertices_ndc.dtype)

    @staticmethod
    def backward(
        ctx: Any, grad_bary: Tensor, grad_depth: Tensor
    ) -> tuple[Tensor | None, None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        batch, num_vertices, _ = ctx.shape
        grad = np.zeros((batch * num_vertices, 3))
        _kernels().bary_backward(
            *ctx.arrays, ctx.size, ctx.perspective,
            grad_bary.detach().to(torch.float64).contiguous().numpy(),
            grad_depth.detach().to(torch.float64).contiguous().numpy(), grad,
        )  # fmt: skip
        return torch.from_numpy(grad).reshape(ctx.shape).to(ctx.dtype), None, None, None, None


def cpu_barycentric_depth(
    vertices_ndc: Tensor, faces: Tensor, found: SearchResult, settings: RasterSettings
) -> tuple[Tensor, Tensor]:
    """(P, 3) barycentrics and (P,) depth of the visible pixels of ``found`` (``cpu_visible_search``),
    differentiable in ``vertices_ndc`` (B, V, 3): ``rasterize``'s gather + ``barycentric_depth`` in one
    numba loop forward and one backward (``_numba_kernel.bary_forward``, ``bary_backward``)."""
    result: tuple[Tensor, Tensor] = _CpuBarycentrics.apply(
        vertices_ndc, faces, found, settings.image_size, settings.perspective_correct
    )
    return result
