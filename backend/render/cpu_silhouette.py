"""The soft silhouette on the CPU as one compiled loop: ``cpu_soft_silhouette(vertices_ndc, faces, s)``.

The same image as ``shade.soft_silhouette(rasterize(...))`` (SoftRas: ``1 - prod_j (1 - sigmoid(s_j d_j^2
/ sigma))`` over the faces j whose soft band holds the pixel; pixels deeper than the band inside a face,
or whose coverage is within ``dist_eps`` of 1, are exactly 1 and carry no gradient), with its gradient
to the x and y of ``vertices_ndc``, computed by a loop over faces and the pixels of each face's box
enlarged by the band, compiled by numba at run time (nothing is built at install; the machine code is
cached on disk after the first call, ``numba``'s ``cache=True``). For the renders that read the
silhouette alone (``render(..., outputs="alpha")``: the fit loop, the multi-view fit, SoftRas's
silhouette loss), where the packed PyTorch path makes a few thousand whole-tensor passes per call.

Contract, as the packed path (``rasterize``): faces with a corner nearer than ``settings.near`` and faces
of (almost) zero projected area are skipped; ``d`` is the distance from the pixel centre to the face's
nearest edge (the segment), ``s`` +1 inside and -1 outside; pairs outside the band add nothing. The
arithmetic runs in float64 whatever the input dtype, pixel by pixel in a fixed order (faces in index
order): the same bits on every run and for any thread count (the kernel runs on one thread). The
result matches the packed path within float32 rounding, except where a pair lies on the band's edge
(coverage ``dist_eps``): there the two paths may decide differently, a difference of about
``dist_eps``. No gradient reaches the depths (as in the packed path).

``numba_problem()`` says why the kernel cannot run (numba missing or broken), or None.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from backend.render.settings import RasterSettings


@lru_cache(maxsize=1)
def _kernels() -> tuple[Any, Any]:
    """The compiled forward and backward loops (numba imported, and the loops compiled or loaded from
    its cache, on first use)."""
    from backend.render import _numba_kernel

    return _numba_kernel.forward, _numba_kernel.backward


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
        forward, _ = _kernels()
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
        ctx.pairs = pairs[:3]  # the band pairs and their gradient terms (numpy, kept for backward)
        ctx.uncovered = torch.where(saturated_t, 0.0, torch.exp(-total_t))  # d alpha / d total
        ctx.shape = tuple(vertices_ndc.shape)
        ctx.dtype = vertices_ndc.dtype
        return alpha.to(vertices_ndc.dtype).reshape(batch, size, size, 1)

    @staticmethod
    def backward(ctx: Any, grad_alpha: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        _, backward = _kernels()
        batch, num_vertices, _ = ctx.shape
        grad_total = (grad_alpha.detach().to(torch.float64).reshape(batch, -1) * ctx.uncovered).reshape(-1)
        grad = np.zeros((batch * num_vertices, 2))
        backward(*ctx.pairs, grad_total.contiguous().numpy(), grad)
        grad_xy = torch.from_numpy(grad).reshape(batch, num_vertices, 2).to(ctx.dtype)  # (B, V, 2)
        return torch.cat([grad_xy, torch.zeros_like(grad_xy[..., :1])], dim=-1), None, None


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
