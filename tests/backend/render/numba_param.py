"""``NUMBA``: the ``"numba"`` backend as a pytest parameter, skipped (with the reason) where numba cannot
run, e.g. on a GPU machine that was sent the checkout without numba's wheels."""

from __future__ import annotations

import pytest

from backend.render.cpu_raster import numba_problem

NUMBA = pytest.param(
    "numba", marks=pytest.mark.skipif(numba_problem() is not None, reason=f"numba: {numba_problem()}")
)
