"""The ``softras`` method: the Soft Rasterizer network predicts the shape; the fitting engine finds the
camera and textures it.

1. **Network** (stage "shape", first 5 %): the crop and its mask, resized to the network's input
   (64 x 64 RGBA, RGB multiplied by the mask), give the 642 icosphere vertices in the object's
   canonical frame (``backend.models.softras``).
2. **Camera** (rest of "shape"): the network says nothing about the view, so ``fit_pose`` fits a
   weak-perspective camera to the mask with the predicted mesh frozen (the azimuth hypotheses, soft IoU
   and Chamfer mask loss of ``fit``). With ``refine`` on, the shape may move too (``fit_refinement``:
   offsets held near the prediction by ``keep_shape_weight``).
3. **Texture** (stage "texture"): projected from the photo, the unseen half mirrored (the icosphere's
   UV layout is symmetric), the rest inpainted, as ``fit`` does.

Given ``init_mesh`` (a result to refine) the network has nothing to add: the mesh is refined as ``fit``
refines one (``methods.fitted.refine_given_mesh``).

Options: the engine settings the camera fit, the refinement and the texture use. ``fit``'s
``flatten_weight`` and ``deformation_weight`` are not options here: the deformation loss belongs to the
template fit alone, and the flatten loss of a frozen shape moves nothing (the refinement leaves it out);
both keep the engine's defaults in the reported losses.

The result shares the icosphere's topology and UVs (template ``icosphere-642``) with ``fit`` results,
so textures move between them by copying. Checkpoints are ``backend.checkpoints`` files of method
``softras``; without ``--checkpoint`` the newest installed one is used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pydantic
import torch

from backend.fitting.pose import fit_pose
from backend.fitting.shape import fit_refinement
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.checkpointed import CheckpointedMethod, masked_crop_input
from backend.methods.fit_options import FittingOptions
from backend.methods.fitted import refine_with_options, textured_result
from backend.models.softras import TEMPLATE_ID, SoftRasModel, SoftRasModelConfig
from backend.progress import within

Field = pydantic.Field
NETWORK_SHARE = 0.05
"""Share of the "shape" stage's progress given to the network's forward pass."""


class SoftRasOptions(FittingOptions):
    """Options of the ``softras`` method: the network has none; these set the camera fit (and, with
    ``refine`` or a given mesh, the refinement) and the texture."""

    iterations: int = Field(100, ge=0, le=20000, description="camera (and, with refine, shape) fit steps")
    refine: bool = Field(False, description="let the shape move during the fit, held near the prediction")


class SoftRasMethod(CheckpointedMethod[SoftRasOptions, SoftRasModel]):
    """The ``softras`` method (module docstring); one instance per device and checkpoint."""

    name = "softras"
    Options = SoftRasOptions
    template = TEMPLATE_ID
    train_command = "mono2mesh-train softras"

    def build_network(self, settings: dict[str, Any]) -> SoftRasModel:
        return SoftRasModel(SoftRasModelConfig.from_dict(settings))

    @torch.no_grad()
    def predict(self, image: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """Vertices (642, 3) predicted from a crop (S, S, 3) float in [0, 1] and its mask (S, S)."""
        size = self.network.config.image_size
        return self.network(masked_crop_input(image, mask, size, self.device))[0]

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
            if init_mesh is not None:  # a result to refine: the network has nothing to add
                return refine_with_options(self, opts, init_mesh, image, mask, progress)
            watch = Stopwatch()
            progress(0.0, "shape")
            with watch.stage("network"):
                vertices = self.predict(image, mask).cpu()
            progress(NETWORK_SHARE, "shape")
            predicted = dataclasses.replace(self.network.template.mesh, vertices=vertices)
            fit_progress = within(progress, NETWORK_SHARE, 1 - NETWORK_SHARE)
            with watch.stage("shape"):
                mesh = predicted.to(self.device)
                if opts.refine:
                    fitted = fit_refinement(
                        mesh, mask, opts.fit_settings(), opts.refine_settings(), fit_progress
                    )
                else:
                    fitted = fit_pose(
                        mesh.vertices.float(), mesh.faces, mask, opts.fit_settings(), fit_progress
                    )
            extra = {
                **fitted.summary(),
                "refined": opts.refine,
                "shape": "refine" if opts.refine else "pose",
                "encoder": self.network.config.encoder,
            }
            return textured_result(
                self, opts, fitted, predicted, image, mask, progress,
                watch=watch, texture=opts.texture_settings(), resolution=opts.resolution,
                template=TEMPLATE_ID, extra=extra,
            )  # fmt: skip


SPEC = SoftRasMethod.spec(
    "Soft Rasterizer network (SoftRas's ShapeNet recipe) predicts the shape; fitted camera, texture "
    "projected from the photo (needs a trained checkpoint)"
)
