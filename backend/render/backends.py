"""Which rasterizer runs on a device, and why: ``select_backend(device, requested)``.

Two backends produce the same ``Fragments`` (within float rounding):

- ``"torch"``: ``rasterize.rasterize``, packed, plain PyTorch, on every device (the reference, and
  the CPU and MPS path). Its search compacts pairs with ``nonzero``, so it synchronises with the host.
- ``"triton"``: ``dense.rasterize_dense``, fixed shapes, one Triton search kernel, no host
  synchronisation; for CUDA. Triton compiles the kernel at run time (nothing to build at install). On
  CPU tensors it runs in Triton's interpreter when ``TRITON_INTERPRET=1`` was set before ``triton``
  was imported: only when asked for explicitly (tests; slow).

A third, ``"numba"``, is the CPU's: the visible surface and the soft silhouette come from compiled
loops (``cpu_raster``, numba, compiled at run time) where the packed path makes a few thousand
whole-tensor passes; barycentrics, depth, shading and their gradients stay PyTorch. Its fragments hold
the visible surface only (no soft-band pairs), and a soft silhouette rendered alone makes none.

``"auto"`` picks triton on CUDA when ``triton`` imports and the kernel launches on that device (tried
once per device on a one-triangle image), numba on the CPU when numba imports and its kernel runs (tried
once), else torch; ``BackendChoice.reason`` says why, so reports can state the reason for a fallback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch

from backend.render.settings import BACKENDS, RasterSettings


@dataclass(frozen=True)
class BackendChoice:
    """The backend a device gets (``"torch"``, ``"triton"`` or ``"numba"``) and the reason, in words."""

    name: str
    reason: str


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


@lru_cache(maxsize=1)
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401

        from backend.render import _triton_kernel  # noqa: F401
    except Exception as error:  # ImportError, or a broken installation
        return f"triton does not import ({type(error).__name__}: {error})"
    return None


@lru_cache(maxsize=8)
def _cuda_launch_error(device: str) -> str | None:
    """None when the search kernel launches and finishes on ``device`` (a one-triangle 8 x 8 image)."""
    from backend.render.triton_search import search_dense

    try:
        vertices = torch.tensor(
            [[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]]], device=torch.device(device)
        )
        faces = torch.tensor([[0, 1, 2]], device=torch.device(device))
        found = search_dense(vertices, faces, RasterSettings(image_size=8, sigma=1e-3))
        torch.cuda.synchronize(torch.device(device))
        if int(found.visible_face.max()) != 0:
            return f"the triton kernel ran on {device} but found no face (a broken compiler or driver)"
    except Exception as error:  # a compile or launch failure of any kind
        return f"the triton kernel failed on {device} ({type(error).__name__}: {error})"
    return None


def select_backend(device: torch.device | str, requested: str = "auto") -> BackendChoice:
    """The backend for tensors on ``device`` given ``RasterSettings.backend`` (``requested``).

    Raises:
        ValueError: ``requested`` is not a backend name.
        RuntimeError: ``"triton"`` or ``"numba"`` was requested where it cannot run (with the reason).
    """
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    device = torch.device(device)
    if requested == "torch":
        return BackendChoice("torch", "requested")
    if requested == "numba" or (requested == "auto" and device.type == "cpu"):
        return _numba_choice(device, requested)
    if device.type == "cuda":
        problem = _triton_import_error()
        if problem is None:
            index = device.index if device.index is not None else torch.cuda.current_device()
            problem = _cuda_launch_error(f"cuda:{index}")
        if problem is None:
            return BackendChoice("triton", "requested" if requested == "triton" else "CUDA with triton")
    elif device.type == "cpu" and interpreter_enabled():
        problem = _triton_import_error()
        if requested == "triton" and problem is None:
            return BackendChoice("triton", "requested; Triton's interpreter on the CPU (slow)")
        problem = problem or "on the CPU the triton kernel runs only when asked for (backend='triton')"
    elif device.type == "cpu":
        problem = "the triton kernel needs CUDA (or TRITON_INTERPRET=1 and backend='triton' on the CPU)"
    else:
        problem = f"the triton kernel needs CUDA, the device is {device.type}"
    if requested == "triton":
        raise RuntimeError(f"backend 'triton' cannot run on {device}: {problem}")
    return BackendChoice("torch", problem)


def _numba_choice(device: torch.device, requested: str) -> BackendChoice:
    """numba where it runs (the CPU), else torch with the reason; an explicit request that cannot run on
    this device raises."""
    from backend.render.cpu_raster import numba_problem

    problem = (
        numba_problem()
        if device.type == "cpu"
        else f"the numba kernels run on the CPU, the device is {device.type}"
    )
    if problem is not None:
        if requested == "numba":
            raise RuntimeError(f"backend 'numba' cannot run on {device}: {problem}")
        return BackendChoice("torch", problem)
    return BackendChoice("numba", "requested" if requested == "numba" else "CPU with numba")
