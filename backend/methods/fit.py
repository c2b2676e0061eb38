"""The embedded default method ``fit``: a symmetric template fitted to the mask by test-time optimisation.

No checkpoint, no download; seconds on a laptop CPU. Given the square crop and its object mask:

1. **Shape** (stage "shape"): the 642-vertex symmetric icosphere (``icosphere_template``) deformed by
   mirrored per-vertex offsets, with a weak-perspective camera, fitted to the mask
   (``backend.fitting.shape.fit_template``: SoftRas soft IoU, MeshInversion's Chamfer mask loss,
   Laplacian, flatten and deformation regularisers; ``hypotheses`` camera azimuths run together at half
   resolution for the first ``selection_fraction`` of the steps, the best continues).
2. **Texture** (stage "texture"): the photo projected onto the visible, camera-facing surface, the
   hidden side filled from the mirrored visible side, the rest inpainted
   (``backend.fitting.texture.texture_from_photo``).

**Refinement** (``init_mesh`` given, e.g. an artist's edit): topology and UVs kept; the camera is fitted
with the mesh frozen, then offsets held near the given shape except where the photo's outline
contradicts it (``backend.fitting.shape.fit_refinement``; ``keep_shape_weight``, ``outline_keep_weight``,
``depth_weight``, ``keep_symmetry``); texels whose surface moved less than ``texture_keep_distance``
keep the given texture, the photo is projected onto visible texels that moved (``methods.fitted.
refine_given_mesh``).

The world frame of the result is the template's: Y up, the object's symmetry plane x = 0. The report's
extra holds the chosen hypothesis, every hypothesis' loss, the final loss, ``refined`` and ``shape``
("template" or "refine"). Not bit-reproducible from process to process: see ``backend.fitting.optimise``.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.fitting.optimise import FitSettings
from backend.fitting.shape import RefineSettings, fit_template
from backend.fitting.texture import TextureSettings
from backend.geometry.mesh import TexturedMesh
from backend.geometry.templates import SymmetricTemplate, icosphere_template
from backend.methods.base import BaseMethod, MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.fit_options import (
    ChamferWeight,
    CpuThreads,
    CropSize,
    DeformationWeight,
    DepthWeight,
    FlattenWeight,
    Hypotheses,
    Iterations,
    KeepShapeWeight,
    KeepSymmetry,
    LaplacianWeight,
    LearningRate,
    OutlineKeepWeight,
    Resolution,
    Seed,
    SelectionFraction,
    Sigma,
    SilhouetteWeight,
    TextureKeepDistance,
    TextureSize,
)
from backend.methods.fitted import refine_given_mesh, textured_result

TEMPLATE_ID = "icosphere-642"


class FitOptions(MethodOptions):
    """Options of the ``fit`` method (defaults: about ten seconds per photo on a 2-core CPU)."""

    iterations: Iterations = 200
    resolution: Resolution = 128
    hypotheses: Hypotheses = 4
    selection_fraction: SelectionFraction = 0.25
    learning_rate: LearningRate = 0.01
    sigma: Sigma = 1e-4
    silhouette_weight: SilhouetteWeight = 1.0
    chamfer_weight: ChamferWeight = 1.0
    laplacian_weight: LaplacianWeight = 20.0
    flatten_weight: FlattenWeight = 5e-4
    deformation_weight: DeformationWeight = 0.05
    keep_shape_weight: KeepShapeWeight = 10.0
    outline_keep_weight: OutlineKeepWeight = 0.1
    depth_weight: DepthWeight = 100.0
    keep_symmetry: KeepSymmetry = "auto"
    texture_keep_distance: TextureKeepDistance = 0.01
    texture_size: TextureSize = 512
    crop_size: CropSize = 512
    seed: Seed = 0
    cpu_threads: CpuThreads = 1

    def fit_settings(self) -> FitSettings:
        """The engine's settings of the shape (and camera) fit."""
        return FitSettings(
            iterations=self.iterations, resolution=self.resolution, hypotheses=self.hypotheses,
            selection_fraction=self.selection_fraction, learning_rate=self.learning_rate, sigma=self.sigma,
            silhouette_weight=self.silhouette_weight, chamfer_weight=self.chamfer_weight,
            laplacian_weight=self.laplacian_weight, flatten_weight=self.flatten_weight,
            deformation_weight=self.deformation_weight, seed=self.seed,
        )  # fmt: skip

    def refine_settings(self) -> RefineSettings:
        """The engine's settings of a refinement."""
        return RefineSettings(
            keep_shape_weight=self.keep_shape_weight, outline_keep_weight=self.outline_keep_weight,
            depth_weight=self.depth_weight, keep_symmetry=self.keep_symmetry,
        )  # fmt: skip

    def texture_settings(self, refinement: bool = False) -> TextureSettings:
        """The template's texture (unseen texels mirrored), or a refinement's (the given texture kept)."""
        size = (self.texture_size, 2 * self.texture_size)
        if refinement:
            return TextureSettings(size, unseen="given", keep_distance=self.texture_keep_distance)
        return TextureSettings(size)


class FitMethod(BaseMethod[FitOptions]):
    """The ``fit`` method (module docstring); one instance per device."""

    name = "fit"
    Options = FitOptions

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.template: SymmetricTemplate = icosphere_template().to(self.device)

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction:
        opts = self.options_of(options)
        self.check_inputs(image, mask)
        with self.threads(opts.cpu_threads):
            if init_mesh is not None:
                return refine_given_mesh(
                    self, opts, init_mesh, image, mask, progress,
                    fit=opts.fit_settings(), refine=opts.refine_settings(),
                    texture=opts.texture_settings(refinement=True),
                )  # fmt: skip
            watch = Stopwatch()
            with watch.stage("shape"):
                fitted = fit_template(self.template, mask, opts.fit_settings(), progress)
            return textured_result(
                self, opts, fitted, self.template.mesh, image, mask, progress,
                watch=watch, texture=opts.texture_settings(), resolution=opts.resolution,
                template=TEMPLATE_ID, extra={**fitted.summary(), "refined": False, "shape": "template"},
            )  # fmt: skip


SPEC = FitMethod.spec(
    "Fit a symmetric sphere to the object's mask by optimisation and texture it from the photo "
    "(no checkpoint; a few seconds on a CPU)"
)
