"""Fit a shape to an object mask: the symmetric template (``fit_template``) or a given mesh kept near
itself (``fit_refinement``).

**Template** (``fit_template(template, mask, settings, progress)``): per-vertex offsets of the
template's free (plane and right) vertices, mirrored onto the left ones so the mesh stays bilaterally
symmetric, and ``settings.hypotheses`` cameras, with ``optimise``'s losses; the regulariser is
``laplacian_weight *`` the uniform Laplacian (mean over vertices of ``|L v|^2``) ``+ deformation_weight
*`` CMR's deformation loss (mean offset norm). The Laplacian is evaluated from padded rows
(``RowLaplacian``: gathers, the same sums as the sparse product up to their order), not by a sparse
product that checks the faces each step.

**Refinement** (``fit_refinement(mesh, mask, settings, refine, progress, camera=None)``), e.g. of an
artist's edit: topology kept; the photo moves the shape only where it contradicts it. A
silhouette observes the outline and nothing else, so:

1. The camera is fitted first with the mesh frozen (``fit_pose``, the first half of the iterations), so
   the edit is not explained away by offsets that undo it while the camera wanders; the camera then stays
   fixed.
2. The offsets from the given mesh are fitted with per-vertex ``keep`` weights (``refine_terms.
   outline_freedom``): ``outline_keep_weight`` (weak) for vertices the photo constrains (rim vertices on
   the outline of the mesh's silhouette in that view, and vertices projecting outside the mask), fading
   to ``keep_shape_weight`` (strong) over two edge rings; ``depth_weight * mean (o . d)^2`` holds every
   offset off the view direction d, which no silhouette observes (and which Adam's per-axis steps would
   otherwise leak into). The Laplacian is taken on the offsets, not the shape, so the edit is not
   smoothed away; SoftRas's flatten loss (on the absolute shape) is left out for the same reason.
   Alternatives rejected: only a depth penalty would let the Chamfer mask-to-vertex term slide interior
   vertices in the image plane (the "bump on the head"); only outline weights would leave depth free to
   drift under Adam.
3. ``keep_symmetry``: "auto" ties the offsets mirror-symmetric (``(o_i + M o_j) / 2`` over mirror
   partners i, j, M flipping x) when the given vertex set is x -> -x symmetric about x = mean x within
   1e-3 of its size (``refine_terms.mirror_pairs``; it is then snapped exactly symmetric, so the result
   is too); "on" ties mutually nearest mirror vertices of any mesh; "off" for a deliberately asymmetric
   edit. An asymmetric mesh is never tied under "auto".

Known limit: an outline edit the photo contradicts is pulled back only partly, because the camera fit
of step 1 shrinks the camera to explain part of it (a spike of 40 % of the size keeps about 70 %).

Both run on the device of the template / mesh and return a ``ShapeFit`` (vertices (V, 3) in the input's
frame and vertex order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from backend.fitting.optimise import FitProblem, FitSettings, ShapeFit, optimise
from backend.fitting.pose import fit_pose
from backend.fitting.refine_terms import (
    mirror_pairs,
    nearest_mirror_pairs,
    outline_freedom,
    symmetrize_offsets_by_pairs,
    symmetrize_positions,
)
from backend.fitting.targets import resized_mask
from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.geometry.ops import deformation_loss, gather_vertices, uniform_laplacian
from backend.geometry.templates import SymmetricTemplate, symmetrize_vertices
from backend.progress import ProgressCallback, within

KeepSymmetry = Literal["auto", "on", "off"]

POSE_SHARE = 0.5
"""Share of a refinement's iterations (and progress) given to the camera fit with the mesh frozen."""


@dataclass(frozen=True)
class RefineSettings:
    """How strongly a refinement holds the given mesh (module docstring, "Refinement")."""

    keep_shape_weight: float = 10.0
    """Weight of the mean squared offset of the vertices the photo's outline does not constrain."""
    outline_keep_weight: float = 0.1
    """That weight for vertices on the photo's outline (or outside the mask)."""
    depth_weight: float = 100.0
    """Weight of the mean squared offset along the view direction."""
    keep_symmetry: KeepSymmetry = "auto"


# -- template ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymmetricOffsets:
    """Template vertices from offsets of its free vertices: (B, P + K, 3) -> (B, V, 3), mirrored.

    ``symmetrize_vertices``'s values, with its index and signs read off it once (at construction)
    instead of rebuilt every step: vertex i is ``sign[i] *`` free row ``source[i]``, gathered by
    ``gather_vertices`` (a gradient independent of the thread count).
    """

    template: SymmetricTemplate
    base_free: Tensor
    """(P + K, 3) the template's free vertices."""
    source: Tensor = field(init=False, repr=False)
    """(V,) int64 the free row each vertex copies."""
    sign: Tensor = field(init=False, repr=False)
    """(V, 3) 1, or -1 / 0 on x for left / plane vertices."""

    def __post_init__(self) -> None:
        count, device = self.template.num_free, self.base_free.device
        rows = torch.arange(count, dtype=torch.float32, device=device)[:, None].expand(count, 3)
        source = symmetrize_vertices(rows + 1, self.template)[:, 1] - 1  # y is copied unsigned: the row
        object.__setattr__(self, "source", source.round().long())
        ones = torch.ones(count, 3, dtype=self.base_free.dtype, device=device)
        object.__setattr__(self, "sign", symmetrize_vertices(ones, self.template))

    @staticmethod
    def of(template: SymmetricTemplate) -> SymmetricOffsets:
        return SymmetricOffsets(template, template.mesh.vertices[template.free_index])

    def __call__(self, offsets: Tensor) -> Tensor:
        return gather_vertices(self.base_free + offsets, self.source) * self.sign


@dataclass(frozen=True)
class RowLaplacian:
    """A sparse (V, V) Laplacian as padded rows, for ``laplacian_loss``'s value without a sparse product
    per step: ``(L v)_i = sum_k weights[i, k] v[columns[i, k]]`` (padding: weight 0, column i).

    Gathered by ``gather_vertices``, so the gradient adds up in the same order for any thread count; the
    same sums as ``torch.sparse.mm`` up to their order (float rounding).
    """

    columns: Tensor
    """(V, K) int64 column of each stored entry, K the most entries of a row."""
    weights: Tensor
    """(V, K) its value, 0 for padding."""

    @staticmethod
    def of(laplacian: Tensor) -> RowLaplacian:
        """The rows of a sparse COO (V, V) matrix (e.g. ``uniform_laplacian``), on its device."""
        matrix = laplacian.coalesce()  # entries sorted by row, then column
        rows, columns = matrix.indices()  # (N,) each
        size, device = matrix.shape[0], matrix.device
        counts = torch.bincount(rows, minlength=size)  # (V,)
        width = max(int(counts.max()), 1) if rows.numel() else 1
        slot = torch.arange(rows.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[rows]
        table = torch.arange(size, device=device)[:, None].repeat(1, width)  # (V, K) padding: column i
        weights = torch.zeros(size, width, dtype=matrix.values().dtype, device=device)
        table[rows, slot] = columns
        weights[rows, slot] = matrix.values()
        return RowLaplacian(table, weights)

    def loss(self, vertices: Tensor) -> Tensor:
        """(B,) mean over vertices of ``|L v|^2`` for vertices (B, V, 3): ``laplacian_loss``."""
        neighbours = gather_vertices(vertices, self.columns)  # (B, V, K, 3)
        delta = (neighbours * self.weights[None, :, :, None].to(vertices.dtype)).sum(2)  # (B, V, 3)
        return delta.pow(2).sum(-1).mean(-1)


@dataclass(frozen=True)
class TemplateRegulariser:
    """``laplacian_weight * laplacian_loss(v) + deformation_weight * deformation_loss(o)``, (B,).

    ``faces`` (F, 3) and the sparse ``laplacian`` (V, V) as ``uniform_laplacian`` gives them; each step
    uses the Laplacian's ``RowLaplacian`` (built once here), which checks no faces: no host
    synchronisation per step on a GPU.
    """

    faces: Tensor
    laplacian: Tensor
    laplacian_weight: float
    deformation_weight: float
    rows: RowLaplacian = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", RowLaplacian.of(self.laplacian))

    def __call__(self, vertices: Tensor, offsets: Tensor) -> Tensor:
        return self.laplacian_weight * self.rows.loss(vertices) + self.deformation_weight * (
            deformation_loss(offsets)
        )


def fit_template(
    template: SymmetricTemplate, mask: np.ndarray, settings: FitSettings, progress: ProgressCallback
) -> ShapeFit:
    """The symmetric ``template`` deformed, with its camera, to explain the (S, S) bool ``mask``."""
    mesh = template.mesh
    device = mesh.vertices.device
    offsets = torch.zeros(settings.hypotheses, template.num_free, 3, device=device)
    regulariser = TemplateRegulariser(
        mesh.faces,
        uniform_laplacian(mesh.faces, mesh.num_vertices, device=device),
        settings.laplacian_weight,
        settings.deformation_weight,
    )
    problem = FitProblem(mesh.faces, offsets, SymmetricOffsets.of(template), regulariser, thickness=True)
    return optimise(problem, mask, settings, progress)


# -- refinement -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedOffsets:
    """Vertices of a base shape (V, 3) moved by offsets (B, V, 3), mirror-tied over ``pairs`` (V,) when
    given (``symmetrize_offsets_by_pairs``)."""

    base: Tensor
    pairs: Tensor | None

    def __call__(self, offsets: Tensor) -> Tensor:
        if self.pairs is not None:
            offsets = symmetrize_offsets_by_pairs(offsets, self.pairs)
        return self.base + offsets


@dataclass(frozen=True)
class KeepRegulariser:
    """The refinement's regulariser (module docstring, step 2), (B,): the Laplacian of the offsets as
    applied, per-vertex ``keep`` (V,) weights on their squared norm, ``depth_weight`` on their squared
    component along ``view_axis`` (3,)."""

    base: Tensor
    laplacian: RowLaplacian
    laplacian_weight: float
    keep: Tensor
    depth_weight: float
    view_axis: Tensor

    def __call__(self, vertices: Tensor, offsets: Tensor) -> Tensor:
        applied = vertices - self.base  # (B, V, 3) as applied (symmetrised)
        return (
            self.laplacian_weight * self.laplacian.loss(applied)
            + (self.keep * applied.pow(2).sum(-1)).mean(-1)
            + self.depth_weight * (applied @ self.view_axis).pow(2).mean(-1)
        )


def symmetry(vertices: Tensor, keep_symmetry: KeepSymmetry) -> tuple[Tensor, Tensor | None]:
    """The vertices (V, 3) a refinement starts from and the (V,) mirror partners it ties, or None
    (module docstring, step 3). Vertices symmetric within float noise come back snapped exactly
    symmetric, so the result is too."""
    if keep_symmetry == "off":
        return vertices, None
    pairs = mirror_pairs(vertices)
    if pairs is not None:
        pairs = pairs.to(vertices.device)
        return symmetrize_positions(vertices, pairs), pairs
    if keep_symmetry == "on":
        return vertices, nearest_mirror_pairs(vertices).to(vertices.device)
    return vertices, None


def fit_refinement(
    mesh: TexturedMesh,
    mask: np.ndarray,
    settings: FitSettings,
    refine: RefineSettings,
    progress: ProgressCallback,
    camera: Camera | None = None,
) -> ShapeFit:
    """The camera, then the shape of ``mesh`` fitted to the (S, S) bool ``mask``
    (module docstring, "Refinement"); ``camera``: a batch-of-one start camera instead of the hypotheses.
    The returned hypothesis and hypothesis losses are the camera fit's."""
    device = mesh.vertices.device
    base, pairs = symmetry(mesh.vertices.float(), refine.keep_symmetry)  # (V, 3), (V,) or None
    faces = mesh.faces
    pose_iterations = round(POSE_SHARE * settings.iterations)

    posed = fit_pose(
        base,
        faces,
        mask,
        settings.with_iterations(pose_iterations),
        within(progress, 0.0, POSE_SHARE),
        camera,
    )
    target = resized_mask(mask, settings.resolution) > 0.5
    freedom = outline_freedom(base, faces, posed.camera, target, settings.resolution)  # (V,)
    if pairs is not None:  # a vertex moves with its mirror partner: free when either one is
        partner = torch.where(pairs >= 0, pairs, torch.arange(pairs.shape[0], device=device))
        freedom = torch.maximum(freedom, freedom[partner])
    regulariser = KeepRegulariser(
        base=base,
        laplacian=RowLaplacian.of(uniform_laplacian(faces, mesh.num_vertices, device=device)),
        laplacian_weight=settings.laplacian_weight,
        keep=refine.keep_shape_weight * (1 - freedom) + refine.outline_keep_weight * freedom,  # (V,)
        depth_weight=refine.depth_weight,
        view_axis=posed.camera.to(device).view_transform()[0][0, 2],  # (3,) depth direction
    )
    problem = FitProblem(
        faces,
        torch.zeros(1, mesh.num_vertices, 3, device=device),
        PairedOffsets(base, pairs),
        regulariser,
        train_camera=False,
        flatten=False,
        camera=posed.camera,
    )
    shaped = optimise(
        problem,
        mask,
        settings.with_iterations(settings.iterations - pose_iterations),
        within(progress, POSE_SHARE, 1 - POSE_SHARE),
    )
    return ShapeFit(
        vertices=shaped.vertices,
        camera=shaped.camera,
        hypothesis=posed.hypothesis,
        hypothesis_losses=posed.hypothesis_losses,
        final_loss=shaped.final_loss,
    )
