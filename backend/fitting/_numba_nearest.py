"""The numba loop of ``targets.nearest_vertex`` on the CPU (imported only there, on first use: numba is
optional). The same squared distances as the PyTorch path (``dx * dx + dy * dy`` in the inputs' dtype,
no fused multiply-add: numba's default, ``fastmath`` off) and the same choice (the first vertex on ties),
so the two give the same indices."""

from __future__ import annotations

from typing import Any

import numba


@numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
def nearest(px: Any, py: Any, qx: Any, qy: Any, out: Any) -> None:
    """out (B, M) = argmin over v of (qx[m] - px[b, v])^2 + (qy[m] - py[b, v])^2; px, py (B, V);
    qx, qy (M,)."""
    for b in range(px.shape[0]):
        for m in range(qx.shape[0]):
            best = qx.dtype.type(0)
            index = 0
            for v in range(px.shape[1]):
                dx = qx[m] - px[b, v]
                dy = qy[m] - py[b, v]
                squared = dx * dx + dy * dy
                if v == 0 or squared < best:
                    best = squared
                    index = v
            out[b, m] = index
