"""Meshing tests run torch on one thread (the CI machine has two busy cores; see tests/training/conftest.py).

``sphere_points``: 3000 points uniform on a sphere of radius 0.4 at the origin (fixed seed), (N, 3) float64.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

SPHERE_RADIUS = 0.4


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def sphere_points() -> np.ndarray:
    directions = np.random.default_rng(0).normal(size=(3000, 3))
    return SPHERE_RADIUS * directions / np.linalg.norm(directions, axis=1, keepdims=True)
