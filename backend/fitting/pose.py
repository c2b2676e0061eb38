"""Fit the camera of a fixed mesh to an object mask: what a network that predicts a shape but not the
view needs (``softras``), and the first stage of a refinement (``backend.fitting.shape``).

Contract: ``fit_pose(vertices, faces, mask, settings, progress, camera=None) -> ShapeFit``.

The mesh (V, 3) / (F, 3) stays exactly as given (``ShapeFit.vertices`` equals ``vertices``); only
weak-perspective cameras move, with ``optimise``'s losses and schedule: ``settings.hypotheses`` azimuth
hypotheses around the mask's centroid, or, given ``camera`` (a batch of one, e.g. a network's
prediction), that one camera alone. SoftRas's flatten loss of the fixed shape is a constant that the
reported losses include (so they compare with a template fit's); it moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from backend.fitting.optimise import FitProblem, FitSettings, ShapeFit, optimise
from backend.geometry.camera import Camera
from backend.progress import ProgressCallback


@dataclass(frozen=True)
class Displaced:
    """Vertices of a base shape (V, 3) moved by offsets: (B, V, 3) -> (B, V, 3)."""

    base: Tensor

    def __call__(self, offsets: Tensor) -> Tensor:
        return self.base + offsets


def fit_pose(
    vertices: Tensor,
    faces: Tensor,
    mask: np.ndarray,
    settings: FitSettings,
    progress: ProgressCallback,
    camera: Camera | None = None,
) -> ShapeFit:
    """The camera that best shows the mesh (V, 3), (F, 3) as the (S, S) bool ``mask`` (module docstring).

    Runs on the device of ``vertices``; ``faces`` must be there too.
    """
    count = 1 if camera is not None else settings.hypotheses
    offsets = torch.zeros(count, *vertices.shape, device=vertices.device)
    problem = FitProblem(faces, offsets, Displaced(vertices), train_shape=False, camera=camera)
    return optimise(problem, mask, settings, progress)
