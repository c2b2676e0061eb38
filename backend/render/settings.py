"""Settings of the rasterizer: image size, the SoftRas soft-silhouette parameters and the backend."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

BACKENDS = ("auto", "torch", "triton", "numba")
"""The values of ``RasterSettings.backend``."""


@dataclass(frozen=True)
class RasterSettings:
    """How to rasterize.

    Attributes:
        image_size: side of the square output image in pixels (S x S).
        sigma: SoftRas sharpness: a face's coverage of a pixel is ``sigmoid(+-d^2 / sigma)`` where d is
            the NDC distance from the pixel centre to the face's boundary (+ inside, - outside).
            SoftRas's ShapeNet recipe uses 1e-4.
        dist_eps: coverage below this is treated as zero (and above ``1 - dist_eps`` as one), which
            bounds the band of pixels around each face that receive gradients, as in SoftRas's kernel.
            The band half-width is ``sqrt(sigma * ln(1 / dist_eps - 1))`` in NDC units.
        soft: compute the soft silhouette (and its gradients to vertex positions). When False the
            alpha channel is the hard coverage and only the visible surface gets gradients.
        near: faces with a vertex closer than this depth are dropped (no clipping).
        perspective_correct: interpolate attributes with perspective-correct barycentrics (set by the
            renderer from the camera kind; off for weak-perspective cameras).
        backend: which rasterizer runs. ``"torch"``: the packed PyTorch path (``rasterize``; CPU, CUDA,
            MPS). ``"triton"``: the fixed-shape path (``dense.rasterize_dense``: a Triton search kernel,
            no host synchronisation) on CUDA, or on the CPU under ``TRITON_INTERPRET=1`` (slow).
            ``"numba"``: on the CPU, the visible surface and the soft silhouette from compiled loops
            (``cpu_raster``; numba, compiled at run time), the rest as torch. ``"auto"``: triton on
            CUDA when Triton imports and its kernel launches there, numba on the CPU when numba runs,
            else torch (``backends.select_backend`` says which and why).
        max_band_faces: K, the soft-band faces kept per pixel by the triton path (the forward value
            counts all of them; the gradient of those beyond K is dropped: see ``triton_search``).
    """

    image_size: int = 128
    sigma: float = 1e-4
    dist_eps: float = 1e-4
    soft: bool = True
    near: float = 1e-3
    perspective_correct: bool = False
    backend: str = "auto"
    max_band_faces: int = 32

    def __post_init__(self) -> None:
        size: Any = self.image_size
        if isinstance(size, tuple | list):
            if len(size) == 2 and size[0] == size[1]:
                raise ValueError(f"image_size must be an int, got {size!r}: pass {size[0]}")
            raise ValueError(f"render targets must be square; got image_size {size!r}")
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError(f"image_size must be a positive int, got {size!r}")
        if size <= 0 or size > 8192:
            raise ValueError(f"image_size must lie in 1..8192, got {size}")
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be a positive finite number, got {self.sigma}")
        if not 0 < self.dist_eps < 0.5:
            raise ValueError(f"dist_eps must lie in (0, 0.5), got {self.dist_eps}")
        if not self.near > 0:
            raise ValueError(f"near must be positive, got {self.near}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        k: Any = self.max_band_faces
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 256:
            raise ValueError(f"max_band_faces must be an int in 1..256, got {k!r}")

    @property
    def band_sq_ndc(self) -> float:
        """Squared NDC half-width of the band where a face's coverage lies in (eps, 1 - eps)."""
        return self.sigma * math.log(1.0 / self.dist_eps - 1.0) if self.soft else 0.0
