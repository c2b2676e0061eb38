"""One Adam loop that fits a mesh's shape and/or weak-perspective cameras to an object mask.

Contract: ``optimise(problem, mask, settings, progress) -> ShapeFit``.

- ``problem`` (``FitProblem``) says what is fitted: B start offsets (B hypotheses, any trailing shape),
  ``vertices_of(offsets) -> (B, V, 3)``, the faces, ``regulariser(vertices, offsets) -> (B,)``, whether
  the shape and/or the cameras train, whether SoftRas's flatten loss applies, and the start camera
  (None: ``initial_cameras`` at the mask's centroid, one azimuth per hypothesis).
- Loss per hypothesis: ``silhouette_weight * (1 - soft IoU)`` between the SoftRas silhouette and the
  mask (seeds' eq. 1), ``chamfer_weight * chamfer_mask_loss`` (MeshInversion), ``flatten_weight *
  flatten_loss`` (when ``problem.flatten``), ``thickness_weight * thickness_loss`` (when
  ``problem.thickness``: ``backend.fitting.thickness``) and the problem's regulariser.
- Schedule: all hypotheses run the first ``selection_fraction`` of the ``iterations`` at
  ``selection_resolution`` pixels (0: half the resolution), starting ``start_elevation`` degrees above
  the object; the one with the lowest loss at the FULL resolution after those steps (one extra forward
  pass: a coarse silhouette's loss misjudged close hypotheses, issue 20) then continues alone at the
  full resolution, with a fresh Adam. Without a selection phase (one hypothesis, or a fraction of 0) the
  hypothesis with the lowest full-resolution loss after the last step is kept.
- ``progress(fraction, "shape")`` once before the first step and after every step.
- Per step (issue 19): the vertices are projected once (``CameraVariables.project``), the silhouette is
  rendered alone (``render(..., outputs="alpha")``: no colours, no visible-surface search) from the
  projected points through constant cameras built once per fit (``FitTerms``,
  ``camera.ndc_camera``), and nothing is read back to the host: the losses stay on the device, the
  hypothesis is chosen there, and the chosen index and losses are read once after the last step. Adam is
  the fused kernel on CUDA. What still synchronises per step is inside the renderer (its input checks,
  and the torch backend's candidate search).
- ``ShapeFit``: the chosen hypothesis' vertices (V, 3) and detached camera (batch of one, unit
  quaternion), its index, every hypothesis' loss at selection, and the final full-resolution loss.

The Chamfer points are drawn from a generator seeded with ``settings.seed``, Adam's state lives in
this call and the targets are exact (``targets.outside_distance``), so the same mask and settings give
the same bits, in one process and from process to process, on one machine with one thread count
(``tests/backend/methods/test_fit_reproducible.py``). Before issue 20 they did not: OpenCV's precise
distance transform, the source of the Chamfer distance field, is an ulp off in some pixels in a pattern
that follows the heap, and those ulps chose between two visibly different fits of ``bird_warbler.jpg``
(IoU 0.915 or 0.906).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from backend.fitting.camera import CameraVariables, as_view_points, initial_cameras, ndc_camera
from backend.fitting.targets import MaskTarget, chamfer_mask_loss
from backend.fitting.thickness import half_thickness_map, thickness_loss
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
    """How a fit runs: steps, resolution, hypotheses, loss weights (the engine's defaults; the ``fit``
    method's options set 8 hypotheses, ``selection_resolution`` 32 and ``start_elevation`` 20)."""

    iterations: int = 200
    resolution: int = 128
    """Side in pixels of the silhouettes compared with the mask (half of it in the selection phase)."""
    hypotheses: int = 4
    """Camera azimuth hypotheses, evenly spaced, optimised together at first (when no camera is given)."""
    start_elevation: float = 0.0
    """Elevation in degrees (camera above the object: positive) the hypotheses start at."""
    selection_fraction: float = 0.25
    selection_resolution: int = 0
    """Side in pixels of the selection phase's silhouettes (0: half of ``resolution``)."""
    learning_rate: float = 0.01
    sigma: float = 1e-4
    """SoftRas silhouette sharpness."""
    silhouette_weight: float = 1.0
    chamfer_weight: float = 1.0
    laplacian_weight: float = 20.0
    flatten_weight: float = 5e-4
    deformation_weight: float = 0.05
    thickness_weight: float = 0.0
    """Weight of the thickness prior (``backend.fitting.thickness``; template fits only, 0: off)."""
    thickness_slack: float = 1.0
    """Depth allowed by the thickness prior, as a multiple of the round-section depth."""
    seed: int = 0
    """Seed of the mask points of the Chamfer loss."""

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.hypotheses < 1 or self.resolution < 16:
            raise ValueError(
                f"need iterations >= 0, hypotheses >= 1, resolution >= 16; got {self.iterations}, "
                f"{self.hypotheses}, {self.resolution}"
            )
        if self.selection_resolution != 0 and self.selection_resolution < 16:
            raise ValueError(f"selection_resolution must be 0 or >= 16, got {self.selection_resolution}")
        if not -90.0 <= self.start_elevation <= 90.0:
            raise ValueError(f"start_elevation must lie in [-90, 90] degrees, got {self.start_elevation}")
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
        thickness: whether the thickness prior (``settings.thickness_weight``) is added.
        camera: B weak-perspective start cameras; None: ``initial_cameras`` at the mask's centroid.
    """

    faces: Tensor
    offsets: Tensor
    vertices_of: Callable[[Tensor], Tensor]
    regulariser: Regulariser = no_regulariser
    train_shape: bool = True
    train_camera: bool = True
    flatten: bool = True
    thickness: bool = False
    camera: Camera | None = None

    @property
    def hypotheses(self) -> int:
        return int(self.offsets.shape[0])


@dataclass(frozen=True)
class FitState:
    """The variables of a fit at one step: offsets (B, ...) and B cameras."""

    offsets: Tensor
    cameras: CameraVariables

    def select(self, index: int | Tensor) -> FitState:
        """Hypothesis ``index`` (an int, or a one-element int64 tensor on the state's device, read without
        a host synchronisation) alone (batch of one), detached copies."""
        if isinstance(index, int):
            index = torch.tensor([index], device=self.offsets.device)
        index = index.reshape(1)
        return FitState(self.offsets.detach().index_select(0, index), self.cameras.select(index))

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


def start_state(problem: FitProblem, target: MaskTarget, settings: FitSettings) -> FitState:
    """The variables a fit of ``problem`` to ``target`` starts from (copies of ``problem.offsets``)."""
    offsets = problem.offsets.clone()
    if problem.camera is not None:
        return FitState(offsets, CameraVariables.from_camera(problem.camera, offsets.device))
    radius = float(problem.vertices_of(offsets[:1]).detach().norm(dim=-1).max())
    return FitState(
        offsets, initial_cameras(target.mask, problem.hypotheses, radius, settings.start_elevation)
    )


@dataclass
class FitTerms:
    """What every step of one ``optimise`` call shares: the faces (F, 3), their edge adjacency (SoftRas's
    flatten loss) and the constant ``ndc_camera`` of each batch size, built once (a ``Camera`` checks
    its parameters on the host)."""

    faces: Tensor
    adjacency: EdgeAdjacency
    host_faces: Tensor
    """(F, 3) a CPU copy of ``faces``, for the loss functions that only check them (``flatten_loss`` with
    the adjacency given): their check then reads host memory, not the device."""
    cameras: dict[int, Camera] = field(default_factory=dict)
    half_thickness_maps: dict[int, Tensor] = field(default_factory=dict)

    def half_thickness(self, target: MaskTarget) -> Tensor:
        """(R, R) ``half_thickness_map`` of ``target``'s mask, on its device, built on first use."""
        if target.size not in self.half_thickness_maps:
            mask = target.mask.detach().cpu().numpy() > 0.5
            self.half_thickness_maps[target.size] = half_thickness_map(mask).to(target.mask.device)
        return self.half_thickness_maps[target.size]

    @staticmethod
    def of(faces: Tensor) -> FitTerms:
        return FitTerms(faces, edge_adjacent_faces(faces), faces.cpu())

    def camera(self, count: int, device: torch.device) -> Camera:
        """``ndc_camera(count)``, built on first use."""
        if count not in self.cameras:
            self.cameras[count] = ndc_camera(count, device)
        return self.cameras[count]


def fit_losses(
    problem: FitProblem, state: FitState, target: MaskTarget, settings: FitSettings, terms: FitTerms
) -> Tensor:
    """(B,) loss of each hypothesis of ``state`` against ``target`` (module docstring).

    The vertices are projected once (``CameraVariables.project``); the silhouette is rendered from the
    projected points through ``terms``' constant camera (``ndc_camera``), which gives the renderer the
    same x and y as ``render(vertices, faces, state.cameras.camera(), ...)`` would.
    """
    vertices = problem.vertices_of(state.offsets)  # (B, V, 3)
    projected = state.cameras.project(vertices)  # (B, V, 3) x_ndc, y_ndc, depth
    count = projected.shape[0]
    raster = RasterSettings(image_size=target.size, sigma=settings.sigma)
    points = as_view_points(projected)
    camera = terms.camera(count, points.device)
    alpha = render(points, terms.faces, camera, raster, outputs="alpha").alpha[..., 0]  # (B, R, R)
    silhouette = 1 - mask_iou(alpha, target.mask.expand_as(alpha), soft=True)  # (B,)
    chamfer = chamfer_mask_loss(projected[..., :2], target.distance, target.points)
    data = settings.silhouette_weight * silhouette + settings.chamfer_weight * chamfer
    if problem.thickness and settings.thickness_weight > 0:
        prior = thickness_loss(
            projected, state.cameras.log_scale.exp(), terms.half_thickness(target), settings.thickness_slack
        )
        data = data + settings.thickness_weight * prior
    flat = (
        settings.flatten_weight * flatten_loss(vertices, terms.host_faces, terms.adjacency)
        if problem.flatten
        else 0.0
    )
    return data + flat + problem.regulariser(vertices, state.offsets)


def adam(variables: list[Tensor], settings: FitSettings) -> torch.optim.Adam:
    """A fresh Adam over ``variables``: on CUDA the fused kernel (one launch per step instead of about
    ten per variable); elsewhere the default single-tensor code, whose bits do not depend on the CPU
    thread count."""
    fused = all(variable.device.type == "cuda" for variable in variables) or None
    return torch.optim.Adam(variables, lr=settings.learning_rate, betas=ADAM_BETAS, fused=fused)


def optimise(
    problem: FitProblem, mask: np.ndarray, settings: FitSettings, progress: ProgressCallback
) -> ShapeFit:
    """Fit ``problem`` to the (S, S) bool crop ``mask`` (module docstring).

    The steps read nothing back from the device: the losses stay there, the hypothesis is chosen there
    (``argmin``, ``index_select``); the chosen index and the losses are read once, after the last step.
    """
    device = problem.offsets.device
    generator = torch.Generator().manual_seed(settings.seed)
    count = problem.hypotheses
    select_at = round(settings.selection_fraction * settings.iterations) if count > 1 else 0
    full = MaskTarget.build(mask, settings.resolution, generator, device)
    coarse_size = settings.selection_resolution or max(settings.resolution // 2, 16)
    coarse = MaskTarget.build(mask, coarse_size, generator, device)
    terms = FitTerms.of(problem.faces)
    state = start_state(problem, full, settings)
    selection_losses: Tensor | None = None  # (count,) every hypothesis' loss when one was chosen
    chosen = torch.zeros(1, dtype=torch.long, device=device)  # (1,) the chosen hypothesis

    progress(0.0, "shape")
    optimiser: torch.optim.Adam | None = None
    for step in range(settings.iterations):
        if step == select_at and count > 1 and step > 0:
            with torch.no_grad():  # judged at the full resolution the chosen one continues at
                selection_losses = fit_losses(problem, state, full, settings, terms)
            chosen = torch.argmin(selection_losses).reshape(1)
            state, optimiser = state.select(chosen), None
        if optimiser is None:
            optimiser = adam(state.trained(problem), settings)
        optimiser.zero_grad(set_to_none=True)
        per_item = fit_losses(problem, state, coarse if step < select_at else full, settings, terms)
        per_item.sum().backward()
        optimiser.step()
        progress((step + 1) / max(settings.iterations, 1), "shape")
    with torch.no_grad():
        if state.offsets.shape[0] > 1:  # no selection phase ran: choose by the full-resolution loss
            selection_losses = fit_losses(problem, state, full, settings, terms)
            chosen = torch.argmin(selection_losses).reshape(1)
            state = state.select(chosen)
        final = float(fit_losses(problem, state, full, settings, terms)[0])
        vertices = problem.vertices_of(state.offsets)[0].detach()
    hypothesis_losses = [] if selection_losses is None else selection_losses.cpu().tolist()
    hypothesis = int(chosen[0])
    return ShapeFit(
        vertices=vertices,
        camera=state.cameras.result(),
        hypothesis=hypothesis,
        hypothesis_losses=hypothesis_losses,
        final_loss=final,
    )
