"""The ``adaptive-flow`` method: one forward pass of the seed paper's network gives shape, camera and texture.

1. **Network** (stage "shape"): the crop, resized to the network's input (``config.image_size``, the
   photo as it is, background included, as CMR/UMR feed it), gives the symmetric 642-vertex mesh (learned
   template + D_shape offsets), H camera hypotheses with probabilities (the most probable one is used)
   and the texture flow with the variance map I_var (``backend.models.adaptive_flow``).
2. **Texture** (stage "texture"): the UV texture is ``grid_sample(I_r * I_var, I_flow)`` (eq. 11), sampled
   from the full-resolution crop (I_var upsampled to it) with the flow upsampled ``texture_scale`` times,
   so the texture is sharper than the network's 128 x 256 flow without changing what it learned. The
   flow is symmetric, so the hidden half is the mirror of the visible one (CMR/UMR).
3. **Refinement** (optional, ``refine``): the fitting engine (``fit_refinement``, with ``fit``'s
   default weights) moves the camera, from the network's, then the shape, held near the prediction, for
   ``refine_iterations`` steps in all, and re-projects the photo onto what it sees (the network's texture
   stays elsewhere). Given ``init_mesh`` (a result to refine), the network has nothing to add: the mesh
   is refined the same way from the camera hypotheses (``methods.fitted.refine_given_mesh``).

The result has the icosphere's topology and UVs (template ``icosphere-642``), shared with ``fit`` and
``softras`` results, so textures move between them by copying. Checkpoints are ``backend.checkpoints``
files of method ``adaptive-flow`` (``mono2mesh-train adaptive-flow``); without ``--checkpoint`` the newest
installed one is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import torch
import torch.nn.functional as F

from backend.fitting.optimise import FitSettings
from backend.fitting.report import reprojection_iou
from backend.fitting.shape import RefineSettings, fit_refinement
from backend.fitting.texture import TextureSettings
from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.checkpointed import CheckpointedMethod
from backend.methods.fitted import refine_given_mesh, textured_result
from backend.models.adaptive_flow import (
    TEMPLATE_ID,
    AdaptiveFlowModel,
    AdaptiveFlowModelConfig,
    sample_texture,
)

Field = pydantic.Field

REFINE_CPU_THREADS = 1
"""Torch CPU threads of the refinement on a CPU (small tensors: one is fastest, see ``cpu_threads``)."""

TEXTURE_KEEP_DISTANCE = 0.01
"""Refining a given mesh: texels whose surface moved less than this share of its size keep its texture."""


class AdaptiveFlowOptions(MethodOptions):
    """Options of the ``adaptive-flow`` method (the network itself has none)."""

    crop_size: int = Field(
        512, ge=64, le=2048, description="side of the photo crop the texture is sampled from"
    )
    texture_scale: int = Field(
        2, ge=1, le=8, description="texture = the network's flow (128 x 256) upsampled this many times"
    )
    refine: bool = Field(False, description="after the network, let fit move the shape and camera briefly")
    refine_iterations: int = Field(60, ge=1, le=5000, description="fit steps of the refinement")
    resolution: int = Field(128, ge=16, le=1024, description="side of the silhouette the report's IoU uses")
    cpu_threads: int = Field(
        2, ge=1, le=256, description="torch CPU threads for the network on a CPU (a ResNet-18 pass)"
    )


class AdaptiveFlowMethod(CheckpointedMethod[AdaptiveFlowOptions, AdaptiveFlowModel]):
    """The ``adaptive-flow`` method (module docstring); one instance per device and checkpoint."""

    name = "adaptive-flow"
    Options = AdaptiveFlowOptions
    template = TEMPLATE_ID
    train_command = "mono2mesh-train adaptive-flow"

    def build_network(self, settings: dict[str, Any]) -> AdaptiveFlowModel:
        return AdaptiveFlowModel(AdaptiveFlowModelConfig.from_dict(settings))

    @torch.no_grad()
    def predict(self, image: np.ndarray, texture_scale: int = 2) -> tuple[TexturedMesh, torch.Tensor, dict]:
        """Mesh, camera parameters and hypothesis numbers from a crop (S, S, 3) float in [0, 1].

        Returns:
            mesh: the 642-vertex mesh with its (128 k, 256 k, 3) texture, k = ``texture_scale``.
            camera: (7,) ``[scale, tx, ty, qw, qx, qy, qz]`` of the most probable hypothesis (crop NDC).
            extra: the chosen hypothesis and every hypothesis' probability.
        """
        size = self.network.config.image_size
        full = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        full = full.to(self.device)  # (1, 3, S, S)
        small = F.interpolate(full, size=(size, size), mode="area") if full.shape[-1] != size else full
        output = self.network(small)
        best = output.probs.argmax(dim=1)
        camera = self.network.camera(output, best)
        flow = output.flow  # (1, Ht, Wt, 2)
        if texture_scale > 1:
            height, width = flow.shape[1] * texture_scale, flow.shape[2] * texture_scale
            flow = F.interpolate(flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear")
            flow = flow.permute(0, 2, 3, 1)
        variance = output.variance
        if variance is not None:
            variance = F.interpolate(variance, size=full.shape[-2:], mode="bilinear")
        texture = sample_texture(full, flow, variance)[0].clamp(0, 1)  # (Ht k, Wt k, 3)
        template = self.network.template.mesh
        mesh = TexturedMesh(
            vertices=output.vertices[0].float().cpu(),
            faces=template.faces.cpu(),
            uvs=template.uvs.cpu(),
            face_uvs=template.face_uvs.cpu(),
            texture=texture.float().cpu(),
        )
        params = camera.weak
        vector = torch.cat([params.scale[:, None], params.translation, params.rotation], dim=1)[0]
        extra = {
            "hypothesis": int(best[0]),
            "hypothesis_probabilities": [round(float(p), 4) for p in output.probs[0]],
        }
        return mesh, vector.float().cpu(), extra

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
        if init_mesh is not None:  # a result to refine: the network has nothing to add
            with self.threads(REFINE_CPU_THREADS):
                return refine_given_mesh(
                    self, opts, init_mesh, image, mask, progress, fit=self._fit_settings(opts),
                    refine=RefineSettings(), texture=self._texture_settings(opts, TEXTURE_KEEP_DISTANCE),
                )  # fmt: skip
        watch = Stopwatch()
        progress(0.0, "shape")
        with watch.stage("network"), self.threads(opts.cpu_threads):
            mesh, vector, extra = self.predict(image, opts.texture_scale)
        camera = Camera.weak_perspective(vector[None, 0], vector[None, 1:3], vector[None, 3:7])
        extra = {**extra, "refined": opts.refine, "variance": self.network.config.variance}
        if opts.refine:
            with self.threads(REFINE_CPU_THREADS):
                with watch.stage("shape"):
                    fitted = fit_refinement(
                        mesh.to(self.device),
                        mask,
                        self._fit_settings(opts),
                        RefineSettings(),
                        progress,
                        camera,
                    )
                return textured_result(
                    self, opts, fitted, mesh, image, mask, progress,
                    watch=watch, texture=self._texture_settings(opts), resolution=opts.resolution,
                    template=TEMPLATE_ID, extra=extra,
                )  # fmt: skip
        progress(1.0, "shape")
        progress(1.0, "texture")
        vertices, faces = mesh.vertices.to(self.device), mesh.faces.to(self.device)
        iou = reprojection_iou(vertices, faces, camera, mask, opts.resolution)
        return self.result(
            opts, mesh, camera, mask,
            timings=watch.timings, silhouette_iou=iou, template=TEMPLATE_ID, extra=extra,
        )  # fmt: skip

    def _fit_settings(self, opts: AdaptiveFlowOptions) -> FitSettings:
        """``fit``'s default settings with the refinement's steps and the report's resolution."""
        return FitSettings(iterations=opts.refine_iterations, resolution=opts.resolution)

    def _texture_settings(
        self, opts: AdaptiveFlowOptions, keep_distance: float | None = None
    ) -> TextureSettings:
        """The texture at the size ``predict`` samples (the flow's times ``texture_scale``), unseen texels
        keeping the given texture."""
        height = self.network.config.flow_height * opts.texture_scale
        return TextureSettings((height, 2 * height), unseen="given", keep_distance=keep_distance)


SPEC = AdaptiveFlowMethod.spec(
    "Adaptive-gradient texture flow (UMR-style network with a variance decoder and FID loss): shape, "
    "camera and texture from one forward pass (needs a trained checkpoint)"
)
