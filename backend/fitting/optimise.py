"""One Adam loop that fits a mesh's shape and/or weak-perspective cameras to an object mask.

Contract: ``optimise(problem, mask, settings, progress) -> ShapeFit``.

- ``problem`` (``FitProblem``) says what is fitted: B start offsets (B hypotheses, any trailing shape),
  ``vertices_of(offsets) -> (B, V, 3)``, the faces, ``regulariser(vertices, offsets) -> (B,)``, whether
  the shape and/or the cameras train, whether SoftRas's flatten loss applies, and the start camera
  (None: ``initial_cameras`` at the mask's centroid, one azimuth per hypothesis).
- Loss per hypothesis: ``silhouette_weight * (1 - soft IoU)`` between the SoftRas silhouette and the
  mask (seeds' eq. 1), ``chamfer_weight * chamfer_mask_loss`` (MeshInversion), ``flatten_weight *
  flatten_loss`` (when ``problem.flatten``) and the problem's regulariser.
- Schedule: all hypotheses run the first ``selection_fraction`` of the ``iterations`` at half the
  resolution; the one with the lowest loss (of the last of those steps) then continues alone at the full
  resolution, with a fresh Adam. Without a selection phase (one hypothesis, or a fraction of 0) the
  hypothesis with the lowest full-resolution loss after the last step is kept.
- ``progress(fraction, "shape")`` once before the first step and after every step.
- ``ShapeFit``: the chosen hypothesis' vertices (V, 3) and detached camera (batch of one, unit
  quaternion), its index, every hypothesis' loss at selection, and the final full-resolution loss.

The Chamfer points are drawn from a generator seeded with ``settings.seed``, and Adam's state lives in
this call, so two fits in one process give the same bits. Two processes may not: on a CPU the backward
of ``F.grid_sample`` (the Chamfer loss's vertex-to-mask term) differs in the last bits from process to
process (seen with one torch thread too), and on a photo the fit amplifies that into one of two visibly
different results (issue 16 notes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from backend.fitting.camera import CameraVariables, initial_cameras
from backend.fitting.targets import MaskTarget, chamfer_mask_loss
from backend.geometry.camera import Camera
from backend.geometry.metrics import mask_iou
from backend.geometry.ops import EdgeAdjacency, edge_adjacent_faces, flatten_loss
from backend.progress import ProgressCallback
from backend.render.renderer import render
from backend.render.settings import RasterSettings

ADAM_BETAS = (0.5, 0.99)
"""Adam's betas for every fit (SoftRas's demo)."""


@dataclass(frozen=True)
class FitSettings:
    """How a fit runs: steps, resolution, hypotheses, loss weights (the ``fit`` method's defaults)."""

    iterations: int = 200
    resolution: int = 128
    """Side in pixels of the silhouettes compared with the mask (half of it in the selection phase)."""
    hypotheses: int = 4
    """Camera azimuth hypotheses, evenly spaced, optimised together at first (when no camera is given)."""
    selection_fraction: float = 0.25
    learning_rate: float = 0.01
    sigma: float = 1e-4
    """SoftRas silhouette sharpness."""
    silhouette_weight: float = 1.0
    chamfer_weight: float = 1.0
    laplacian_weight: float = 20.0
    flatten_weight: float = 5e-4
    deformation_weight: float = 0.05
    seed: int = 0
    """Seed of the mask points of the Chamfer loss."""

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.hypotheses < 1 or self.resolution < 16:
            raise ValueError(
                f"need iterations >= 0, hypotheses >= 1, resolution >= 16; got {self.iterations}, "
                f"{self.hypotheses}, {self.resolution}"
            )
        if not 0.0 <= self.selection_fraction <= 1.0:
            raise ValueError(f"selection_fraction must lie in [0, 1], got {self.selection_fraction}")

    def with_iterations(self, iterations: int) -> FitSettings:
        """These settings for a fit of ``iterations`` steps (a stage of a longer fit)."""
        return replace(self, iterations=iterations)


Regulariser = Callable[[Tensor, Tensor], Tensor]
"""``regulariser(vertices (B, V, 3), offsets (B, ...)) -> (B,)``."""


def no_regulariser(vertices: Tensor, offsets: Tensor) -> Tensor:
    """(B,) zeros: nothing added to the data terms."""
    return offsets.new_zeros(offsets.shape[0])


@dataclass(frozen=True)
class FitProblem:
    """What one ``optimise`` call fits.

    Attributes:
        faces: (F, 3) int64, on the device of ``offsets``.
        offsets: (B, ...) start values of the shape variables, B hypotheses (not modified).
        vertices_of: offsets (B, ...) -> vertices (B, V, 3).
        regulariser: (vertices, offsets) -> (B,) added to each hypothesis' loss.
        train_shape: whether Adam moves the offsets (else they stay at their start values).
        train_camera: whether Adam moves the cameras.
        flatten: whether SoftRas's flatten loss (on the absolute shape) is added.
        camera: B weak-perspective start cameras; None: ``initial_cameras`` at the mask's centroid.
    """

    faces: Tensor
    offsets: Tensor
    vertices_of: Callable[[Tensor], Tensor]
    regulariser: Regulariser = no_regulariser
    train_shape: bool = True
    train_camera: bool = True
    flatten: bool = True
    camera: Camera | None = None

    @property
    def hypotheses(self) -> int:
        return int(self.offsets.shape[0])


@dataclass(frozen=True)
class FitState:
    """The variables of a fit at one step: offsets (B, ...) and B cameras."""

    offsets: Tensor
    cameras: CameraVariables

    def select(self, index: int) -> FitState:
        """Hypothesis ``index`` alone (batch of one), detached copies."""
        return FitState(self.offsets.detach()[index : index + 1].clone(), self.cameras.select(index))

    def trained(self, problem: FitProblem) -> list[Tensor]:
        """The variables Adam moves under ``problem``, marked as requiring gradients."""
        variables = (self.cameras.tensors() if problem.train_camera else []) + (
            [self.offsets] if problem.train_shape else []
        )
        for variable in variables:
            variable.requires_grad_(True)
        return variables


@dataclass(frozen=True)
class ShapeFit:
    """The outcome of a fit: one mesh's vertices (V, 3), its camera, losses and choices."""

    vertices: Tensor
    camera: Camera
    hypothesis: int
    hypothesis_losses: list[float]
    final_loss: float

    def summary(self) -> dict[str, Any]:
        """The report's numbers: chosen hypothesis, per-hypothesis and final losses (rounded)."""
        return {
            "hypothesis": self.hypothesis,
            "hypothesis_losses": [round(value, 5) for value in self.hypothesis_losses],
            "final_loss": round(self.final_loss, 5),
        }


def start_state(problem: FitProblem, target: MaskTarget) -> FitState:
    """The variables a fit of ``problem`` to ``target`` starts from (copies of ``problem.offsets``)."""
    offsets = problem.offsets.clone()
    if problem.camera is not None:
        return FitState(offsets, CameraVariables.from_camera(problem.camera, offsets.device))
    radius = float(problem.vertices_of(offsets[:1]).detach().norm(dim=-1).max())
    return FitState(offsets, initial_cameras(target.mask, problem.hypotheses, radius))


def fit_losses(
    problem: FitProblem, state: FitState, target: MaskTarget, settings: FitSettings, adjacency: EdgeAdjacency
) -> Tensor:
    """(B,) loss of each hypothesis of ``state`` against ``target`` (module docstring)."""
    vertices = problem.vertices_of(state.offsets)  # (B, V, 3)
    cameras = state.cameras.camera()
    raster = RasterSettings(image_size=target.size, sigma=settings.sigma)
    alpha = render(vertices, problem.faces, cameras, raster).alpha[..., 0]  # (B, R, R)
    silhouette = 1 - mask_iou(alpha, target.mask.expand_as(alpha), soft=True)  # (B,)
    projected = cameras.project(vertices)[..., :2]  # (B, V, 2)
    chamfer = chamfer_mask_loss(projected, target.distance, target.points)
    data = settings.silhouette_weight * silhouette + settings.chamfer_weight * chamfer
    flat = (
        settings.flatten_weight * flatten_loss(vertices, problem.faces, adjacency) if problem.flatten else 0.0
    )
    return data + flat + problem.regulariser(vertices, state.offsets)


def _chosen(losses: Tensor) -> int:
    return int(torch.argmin(losses))


def optimise(
    problem: FitProblem, mask: np.ndarray, settings: FitSettings, progress: ProgressCallback
) -> ShapeFit:
    """Fit ``problem`` to the (S, S) bool crop ``mask`` (module docstring)."""
    device = problem.offsets.device
    generator = torch.Generator().manual_seed(settings.seed)
    count = problem.hypotheses
    select_at = round(settings.selection_fraction * settings.iterations) if count > 1 else 0
    full = MaskTarget.build(mask, settings.resolution, generator, device)
    coarse = MaskTarget.build(mask, max(settings.resolution // 2, 16), generator, device)
    adjacency = edge_adjacent_faces(problem.faces)
    state = start_state(problem, full)
    hypothesis_losses: list[float] = []
    hypothesis = 0

    progress(0.0, "shape")
    losses = torch.zeros(count, device="cpu")  # per-hypothesis losses of the last step, on the CPU
    optimiser: torch.optim.Adam | None = None
    for step in range(settings.iterations):
        if step == select_at and count > 1 and step > 0:
            hypothesis_losses, hypothesis = losses.tolist(), _chosen(losses)
            state, optimiser = state.select(hypothesis), None
        if optimiser is None:
            optimiser = torch.optim.Adam(state.trained(problem), lr=settings.learning_rate, betas=ADAM_BETAS)
        optimiser.zero_grad(set_to_none=True)
        per_item = fit_losses(problem, state, coarse if step < select_at else full, settings, adjacency)
        per_item.sum().backward()
        optimiser.step()
        losses = per_item.detach().cpu()
        progress((step + 1) / max(settings.iterations, 1), "shape")
    with torch.no_grad():
        if state.offsets.shape[0] > 1:  # no selection phase ran: choose by the full-resolution loss
            losses = fit_losses(problem, state, full, settings, adjacency).cpu()
            hypothesis_losses, hypothesis = losses.tolist(), _chosen(losses)
            state = state.select(hypothesis)
        final = float(fit_losses(problem, state, full, settings, adjacency)[0])
        vertices = problem.vertices_of(state.offsets)[0].detach()
    return ShapeFit(
        vertices=vertices,
        camera=state.cameras.result(),
        hypothesis=hypothesis,
        hypothesis_losses=hypothesis_losses,
        final_loss=final,
    )
