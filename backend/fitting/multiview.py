"""Multi-view silhouette fitting: deform one icosphere until it explains N silhouettes from known cameras.

Contract: ``fit_multiview(silhouettes, camera, options, progress) -> MultiViewResult``.

- ``silhouettes`` (N, S, S) float in [0, 1], row 0 at the top, seen by ``camera``: N ``look_at`` (or
  weak-perspective) cameras of the geometry conventions (right-handed; SoftRas data must be mirrored
  first, see ``backend.geometry.camera.from_softras_images``).
- The mesh is the icosphere template (``backend.geometry.templates.icosphere_template``) of
  ``options.levels[0]`` scaled to ``options.radius``, with a free offset per vertex, optionally tied
  to be mirror-symmetric about x = 0 (``symmetrize_offsets``). Every step renders the soft silhouette
  (``backend.render.render``, SoftRas aggregation) from ``views_per_step`` of the N views, drawn
  epoch by epoch from a seeded permutation, and takes one Adam step on

      loss = 1 - mean soft IoU + w_lap(t) * laplacian_loss + w_flat(t) * flatten_loss

  with the uniform Laplacian (mean over vertices of ``|L v|^2``) and SoftRas's flatten loss; both
  weights decay geometrically from their start to their end value over the fit (t = step / steps).
- Coarse to fine: at each fraction in ``subdivide_at`` the mesh moves to the next level of
  ``levels``; the finer icosphere's first vertices are the coarser one's, and each new vertex is put at
  the midpoint of its edge of the fitted coarse mesh, so the shape carries over exactly. The Adam
  state restarts there.
- Resolution and sharpness schedule: ``resolutions`` lists (fraction of steps, image size); from each
  fraction on, the silhouettes are rendered at that size (targets resized bilinearly) with
  ``sigma = sigma_64(t) * (64 / size)^2``, where ``sigma_64`` decays geometrically from
  ``sigma[0]`` to ``sigma[1]``. Why: SoftRas's silhouette ``1 - prod(1 - D_f)`` adds up the many
  nearly edge-on faces along a mesh's outline, so it reaches 0.5 a fraction of a pixel *outside* the
  hard outline, and a fit of the soft silhouette comes out thin by that much (on SoftRas's airplane,
  a fit at 64 x 64 with sigma 1e-4 throughout scores a hard IoU of about 0.75, its wings too thin).
  A narrower band late in the fit (finer pixels, smaller sigma) shrinks that bias in proportion.
- The learning rate follows a cosine from ``lr`` to ``lr * final_lr_fraction``, restarted at each
  subdivision.
- After the fit, every view is rendered hard at S x S and compared with ``silhouettes > 0.5``
  (``mask_iou(soft=False)``): the per-view IoU of the result.

Deterministic for a given ``options.seed``: on a CPU two fits give the same bits, also at different
``torch.get_num_threads()`` (the test runs 1, 2 and 16 threads). Every gather whose gradient adds rows
up (renderer, regularisers) goes through ``backend.geometry.ops.gather_rows``, because the backward of
advanced indexing ``v[:, faces]`` adds float32 with racing atomics on a CPU with 3 or more threads
(which made two fits differ on a 16-core machine), and the SoftRas coverage uses
``backend.render.search.sigmoid``, because ``torch.sigmoid``'s last bit depends on how the threads
split the tensor. Another machine or PyTorch build may differ in the last bits, and CUDA runs are not
bit-identical (the renderer's ``index_add`` adds with atomics there). ``progress(fraction, "shape")``
is called every step and may raise to stop the fit.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.geometry.metrics import mask_iou
from backend.geometry.ops import (
    edge_adjacent_faces,
    flatten_loss,
    laplacian_loss,
    uniform_laplacian,
)
from backend.geometry.templates import SymmetricTemplate, icosphere_template, symmetrize_offsets
from backend.progress import ProgressCallback
from backend.render import RasterSettings, render


@dataclass(frozen=True)
class MultiViewOptions:
    """Settings of ``fit_multiview``; the defaults are the benchmark's (SoftRas's 120-view airplane)."""

    steps: int = 1000
    """Adam steps in all (every stage together)."""

    views_per_step: int = 24
    """Views rendered per step, drawn without replacement from a seeded permutation of the N views."""

    levels: tuple[int, ...] = (3,)
    """Icosphere subdivision levels, coarse to fine: the fit starts on ``levels[0]`` (3: 642 vertices,
    4: 2562 vertices) and moves to the next level at each fraction of ``subdivide_at``. On SoftRas's
    airplane ``(3, 4)`` (subdividing at 0.7) scored the same mean IoU in 1.8 times the time, so the
    default stays on level 3."""

    subdivide_at: tuple[float, ...] = ()
    """Fractions of ``steps`` (increasing, in (0, 1)) at which to move to the next level; one per
    level after the first."""

    resolutions: tuple[tuple[float, int], ...] = ((0.0, 64), (0.4, 128), (0.8, 256))
    """(fraction of steps, image size) pairs, fractions increasing from 0: the render size from that
    point of the fit on. Targets are resized bilinearly when the size differs from theirs."""

    radius: float = 0.5
    """Radius of the initial sphere (world units)."""

    lr: float = 0.01
    """Adam learning rate on the vertex offsets at the start of each level."""

    final_lr_fraction: float = 0.1
    """The learning rate decays by a cosine to ``lr * final_lr_fraction`` at the end of each level."""

    betas: tuple[float, float] = (0.5, 0.99)
    """Adam betas (SoftRas's demo)."""

    sigma: tuple[float, float] = (1e-4, 2e-5)
    """SoftRas sharpness at 64 x 64 pixels at the start and at the end (geometric decay); scaled by
    ``(64 / size)^2`` at other sizes so the soft band keeps its width in pixels."""

    laplacian_weight: tuple[float, float] = (0.03, 0.003)
    """Weight of the uniform Laplacian loss at the start and at the end (geometric decay)."""

    flatten_weight: tuple[float, float] = (3e-4, 3e-5)
    """Weight of the flatten loss at the start and at the end (geometric decay)."""

    symmetric: bool = True
    """Tie the offsets to be mirror-symmetric about x = 0 (the object's symmetry plane must be x = 0)."""

    seed: int = 0
    """Seed of the view order."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.views_per_step < 1:
            raise ValueError(f"views_per_step must be >= 1, got {self.views_per_step}")
        if not self.levels or any(b <= a for a, b in itertools.pairwise(self.levels)):
            raise ValueError(f"levels must be a non-empty increasing tuple, got {self.levels}")
        if len(self.subdivide_at) != len(self.levels) - 1:
            raise ValueError(
                f"subdivide_at needs one fraction per level after the first ({len(self.levels) - 1}), "
                f"got {self.subdivide_at}"
            )
        fractions = (0.0, *self.subdivide_at, 1.0)
        if any(b <= a for a, b in itertools.pairwise(fractions)):
            raise ValueError(f"subdivide_at must increase strictly inside (0, 1), got {self.subdivide_at}")
        if not self.resolutions or self.resolutions[0][0] != 0.0:
            raise ValueError(f"resolutions must start at fraction 0.0, got {self.resolutions}")
        starts = [start for start, _ in self.resolutions]
        if any(b <= a for a, b in itertools.pairwise(starts)) or starts[-1] >= 1.0:
            raise ValueError(f"resolution fractions must increase inside [0, 1), got {self.resolutions}")
        if any(size < 8 for _, size in self.resolutions):
            raise ValueError(f"render sizes must be >= 8, got {self.resolutions}")
        if self.radius <= 0 or self.lr <= 0 or min(self.sigma) <= 0:
            raise ValueError("radius, lr and sigma must be positive")
        if not 0 < self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction must lie in (0, 1], got {self.final_lr_fraction}")
        if min(*self.laplacian_weight, *self.flatten_weight) < 0:
            raise ValueError("loss weights must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return asdict(self)


@dataclass
class MultiViewResult:
    """What ``fit_multiview`` found.

    Attributes:
        vertices: (V, 3) float32 fitted positions (world space).
        faces: (F, 3) int64, the faces of ``icosphere_template(level)``.
        level: icosphere level of the result (its UVs are that template's).
        iou: (N,) hard silhouette IoU of each view against ``silhouettes > 0.5``.
        losses: total loss of every step (``steps`` floats).
        seconds: wall time of the fit and the evaluation.
    """

    vertices: Tensor
    faces: Tensor
    level: int
    iou: Tensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_mesh(self) -> TexturedMesh:
        """The result as a TexturedMesh with the icosphere's UV layout and grey texture."""
        template = icosphere_template(self.level).mesh
        return TexturedMesh(
            self.vertices.detach().cpu(), self.faces.cpu(), template.uvs, template.face_uvs, template.texture
        )


def fit_multiview(
    silhouettes: Tensor,
    camera: Camera,
    options: MultiViewOptions | None = None,
    progress: ProgressCallback | None = None,
) -> MultiViewResult:
    """Fit one mesh to N silhouettes seen by N known cameras (see the module docstring).

    Args:
        silhouettes: (N, S, S) float in [0, 1], row 0 at the top.
        camera: N cameras (batch N), the i-th sees ``silhouettes[i]``.
        options: fit settings; defaults when None.
        progress: called as ``progress(fraction, "shape")`` after every step.

    Returns:
        The fitted vertices (V, 3), faces (F, 3), per-view hard IoU (N,), loss history and seconds.
    """
    options = options or MultiViewOptions()
    if silhouettes.dim() != 3 or silhouettes.shape[1] != silhouettes.shape[2]:
        raise ValueError(f"silhouettes must have shape (N, S, S), got {tuple(silhouettes.shape)}")
    if camera.batch_size != silhouettes.shape[0]:
        raise ValueError(
            f"camera has batch {camera.batch_size} but there are {silhouettes.shape[0]} silhouettes"
        )
    if silhouettes.min() < 0 or silhouettes.max() > 1:
        raise ValueError("silhouettes must lie in [0, 1]")
    start_time = time.perf_counter()
    device = silhouettes.device
    silhouettes = silhouettes.float()
    camera = camera.to(device, torch.float32)
    num_views, size = silhouettes.shape[0], silhouettes.shape[-1]
    generator = torch.Generator().manual_seed(options.seed)
    order = _ViewOrder(num_views, min(options.views_per_step, num_views), generator)

    stage_ends = [round(f * options.steps) for f in (*options.subdivide_at, 1.0)]
    template = icosphere_template(options.levels[0]).to(device)
    vertices = template.mesh.vertices * options.radius  # (V, 3)
    losses: list[float] = []
    step = 0
    for stage, level in enumerate(options.levels):
        if stage > 0:
            finer = icosphere_template(level).to(device)
            vertices = subdivide_to(vertices.detach(), template, finer)
            template = finer
        vertices = _fit_level(
            vertices.detach(), template, silhouettes, camera, options, order, step, stage_ends[stage],
            losses, progress,
        )  # fmt: skip
        step = stage_ends[stage]

    with torch.no_grad():
        hard = render(vertices, template.mesh.faces, camera, RasterSettings(image_size=size, soft=False))
        iou = mask_iou(hard.mask[..., 0], silhouettes, soft=False)  # (N,)
    return MultiViewResult(
        vertices=vertices.detach(),
        faces=template.mesh.faces,
        level=options.levels[-1],
        iou=iou,
        losses=losses,
        seconds=time.perf_counter() - start_time,
    )


def subdivide_to(vertices: Tensor, coarse: SymmetricTemplate, fine: SymmetricTemplate) -> Tensor:
    """Carry a deformed coarse icosphere (V_c, 3) onto the next level's topology: (V_f, 3).

    The fine template's first V_c vertices are the coarse ones; each other fine vertex is adjacent to
    exactly the two coarse vertices of the edge it splits, and is placed at their midpoint, so the
    fine mesh has the same surface as the coarse one.
    """
    num_coarse, num_fine = coarse.mesh.num_vertices, fine.mesh.num_vertices
    if vertices.shape != (num_coarse, 3):
        raise ValueError(f"vertices must have shape ({num_coarse}, 3), got {tuple(vertices.shape)}")
    if num_fine <= num_coarse or not torch.allclose(
        fine.mesh.vertices[:num_coarse], coarse.mesh.vertices, atol=1e-6
    ):
        raise ValueError("the fine template does not start with the coarse template's vertices")
    edges = edge_adjacent_faces(fine.mesh.faces).edges  # (E, 2), smaller index first
    links = edges[(edges[:, 0] < num_coarse) & (edges[:, 1] >= num_coarse)]  # (old, new) pairs
    links = links[torch.sort(links[:, 1] * num_coarse + links[:, 0]).indices]
    if links.shape[0] != 2 * (num_fine - num_coarse) or not torch.equal(
        links[::2, 1], torch.arange(num_coarse, num_fine, device=links.device)
    ):
        raise ValueError("the fine template is not a midpoint subdivision of the coarse one")
    parents = links[:, 0].reshape(-1, 2)  # (V_f - V_c, 2)
    midpoints = vertices[parents].mean(dim=1)  # (V_f - V_c, 3)
    return torch.cat([vertices, midpoints])


class _ViewOrder:
    """Batches of view indices: consecutive slices of seeded permutations (every view once per epoch)."""

    def __init__(self, num_views: int, per_step: int, generator: torch.Generator) -> None:
        self.num_views, self.per_step, self.generator = num_views, per_step, generator
        self.queue = torch.empty(0, dtype=torch.long, device="cpu")  # indices drawn from a CPU generator

    def next(self) -> Tensor:
        while self.queue.shape[0] < self.per_step:
            drawn = torch.randperm(self.num_views, generator=self.generator, device="cpu")  # CPU generator
            self.queue = torch.cat([self.queue, drawn])
        batch, self.queue = self.queue[: self.per_step], self.queue[self.per_step :]
        return batch


def _geometric(start: float, end: float, t: float) -> float:
    """``start * (end / start)^t`` for t in [0, 1]; linear when either end is 0."""
    if start == 0.0 or end == 0.0:
        return start * (1.0 - t) + end * t
    return start * (end / start) ** t


def _size_at(options: MultiViewOptions, t: float) -> int:
    """The render size at fraction t of the fit."""
    return [size for start, size in options.resolutions if start <= t][-1]


def _fit_level(
    vertices: Tensor,
    template: SymmetricTemplate,
    silhouettes: Tensor,
    camera: Camera,
    options: MultiViewOptions,
    order: _ViewOrder,
    first_step: int,
    end_step: int,
    losses: list[float],
    progress: ProgressCallback | None,
) -> Tensor:
    """Adam steps ``first_step .. end_step - 1`` on one topology; returns the fitted vertices (V, 3)."""
    faces = template.mesh.faces
    laplacian = uniform_laplacian(faces, template.mesh.num_vertices, vertices.dtype, vertices.device)
    adjacency = edge_adjacent_faces(faces)
    offsets = torch.zeros_like(vertices, requires_grad=True)  # (V, 3)
    optimizer = torch.optim.Adam([offsets], lr=options.lr, betas=options.betas)
    targets: dict[int, Tensor] = {}
    length = max(end_step - first_step, 1)
    for step in range(first_step, end_step):
        t = step / options.steps
        local = (step - first_step) / length
        for group in optimizer.param_groups:
            cosine = 0.5 * (1 + math.cos(math.pi * local))
            group["lr"] = options.lr * (options.final_lr_fraction + (1 - options.final_lr_fraction) * cosine)
        size = _size_at(options, t)
        if size not in targets:
            targets[size] = _resize(silhouettes, size)
        views = order.next().to(vertices.device)
        settings = RasterSettings(image_size=size, sigma=_geometric(*options.sigma, t) * (64.0 / size) ** 2)
        current = vertices + (symmetrize_offsets(offsets, template) if options.symmetric else offsets)
        alpha = render(current, faces, camera[views], settings, outputs="alpha").alpha[
            ..., 0
        ]  # (B, size, size)
        iou_loss = 1.0 - mask_iou(alpha, targets[size][views]).mean()
        loss = (
            iou_loss
            + _geometric(*options.laplacian_weight, t) * laplacian_loss(current, faces, laplacian=laplacian)
            + _geometric(*options.flatten_weight, t) * flatten_loss(current, faces, adjacency)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress((step + 1) / options.steps, "shape")
    with torch.no_grad():
        return vertices + (symmetrize_offsets(offsets, template) if options.symmetric else offsets)


def _resize(silhouettes: Tensor, size: int) -> Tensor:
    """(N, S, S) -> (N, size, size), bilinear (area-averaged when shrinking)."""
    if silhouettes.shape[-1] == size:
        return silhouettes
    mode = "area" if size < silhouettes.shape[-1] else "bilinear"
    resized = F.interpolate(silhouettes[:, None], size=(size, size), mode=mode)
    return resized[:, 0].clamp(0.0, 1.0)
