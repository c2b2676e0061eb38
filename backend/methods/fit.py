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

import dataclasses

import numpy as np
import torch

from backend.fitting.optimise import FitSettings
from backend.fitting.shape import fit_template
from backend.geometry.mesh import TexturedMesh
from backend.geometry.templates import SymmetricTemplate, icosphere_template
from backend.methods.base import BaseMethod, MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.fit_options import FittingOptions, TemplateRegularisers
from backend.methods.fitted import refine_with_options, textured_result

TEMPLATE_ID = "icosphere-642"


class FitOptions(FittingOptions, TemplateRegularisers):  # the regularisers after laplacian_weight
    """Options of the ``fit`` method (defaults: about ten seconds per photo on a 2-core CPU)."""

    def fit_settings(self) -> FitSettings:
        """The engine's settings of the shape (and camera) fit, the template regularisers included."""
        return dataclasses.replace(
            super().fit_settings(),
            flatten_weight=self.flatten_weight,
            deformation_weight=self.deformation_weight,
        )


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
                return refine_with_options(self, opts, init_mesh, image, mask, progress)
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
