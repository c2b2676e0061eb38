"""The ``adaptive-flow`` method: one forward pass of the seed paper's network gives shape, camera and texture.

1. **Network** (stage "shape"): the crop, resized to the network's input (``config.image_size``, the
   photo as it is, background included, as CMR/UMR feed it), gives the symmetric 642-vertex mesh (learned
   template + D_shape offsets), H camera hypotheses with probabilities (the most probable one is used)
   and the texture flow with the variance map I_var (``backend.models.adaptive_flow``).
2. **Texture** (stage "texture"): the UV texture is ``grid_sample(I_r * I_var, I_flow)`` (eq. 11), sampled
   from the full-resolution crop (I_var upsampled to it) with the flow upsampled ``texture_scale`` times,
   so the texture is sharper than the network's 128 x 256 flow without changing what it learned. The
   flow is symmetric, so the hidden half is the mirror of the visible one (CMR/UMR).
3. **Refinement** (optional, ``refine``): ``fit`` moves the shape and camera for ``refine_iterations``
   steps, held near the prediction, and re-projects the photo onto what it sees (the network's texture
   stays elsewhere).

The result has the icosphere's topology and UVs (template ``icosphere-642``), shared with ``fit`` and
``softras`` results, so textures move between them by copying. Checkpoints are ``backend.checkpoints``
files of method ``adaptive-flow`` (``mono2mesh-train adaptive-flow``); without ``--checkpoint`` the newest
installed one is used.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydantic
import torch
import torch.nn.functional as F

from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import (
    MethodOptions,
    ProgressCallback,
    Reconstruction,
    Report,
    cpu_threads,
)
from backend.methods.checkpointed import checkpoint_availability, load_method_network
from backend.methods.fit import FitMethod, FitOptions, reprojection_iou
from backend.models.adaptive_flow import (
    TEMPLATE_ID,
    AdaptiveFlowModel,
    AdaptiveFlowModelConfig,
    sample_texture,
)

Field = pydantic.Field


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


class AdaptiveFlowMethod:
    """The ``adaptive-flow`` method (module docstring); one instance per device and checkpoint."""

    name: ClassVar[str] = "adaptive-flow"
    description: ClassVar[str] = (
        "Adaptive-gradient texture flow (UMR-style network with a variance decoder and FID loss): shape, "
        "camera and texture from one forward pass (needs a trained checkpoint)"
    )
    needs_checkpoint: ClassVar[bool] = True
    Options: ClassVar[type[MethodOptions]] = AdaptiveFlowOptions

    def __init__(self, device: torch.device | str = "cpu", checkpoint: str | Path | None = None) -> None:
        self.device = torch.device(device)
        self.model, self.checkpoint_id = load_method_network(
            self.name, checkpoint, TEMPLATE_ID, self.device,
            lambda settings: AdaptiveFlowModel(AdaptiveFlowModelConfig.from_dict(settings)),
        )  # fmt: skip
        self.fit = FitMethod(self.device)

    @classmethod
    def availability(cls) -> tuple[bool, str | None]:
        """Whether a checkpoint is installed (``checkpoint_root()``); the reason when not."""
        return checkpoint_availability(cls.name, "mono2mesh-train adaptive-flow")

    def crop_size(self, options: MethodOptions) -> int:
        return _options(options).crop_size

    @torch.no_grad()
    def predict(self, image: np.ndarray, texture_scale: int = 2) -> tuple[TexturedMesh, torch.Tensor, dict]:
        """Mesh, camera parameters and hypothesis numbers from a crop (S, S, 3) float in [0, 1].

        Returns:
            mesh: the 642-vertex mesh with its (128 k, 256 k, 3) texture, k = ``texture_scale``.
            camera: (7,) ``[scale, tx, ty, qw, qx, qy, qz]`` of the most probable hypothesis (crop NDC).
            extra: the chosen hypothesis and every hypothesis' probability.
        """
        size = self.model.config.image_size
        full = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        full = full.to(self.device)  # (1, 3, S, S)
        small = F.interpolate(full, size=(size, size), mode="area") if full.shape[-1] != size else full
        output = self.model(small)
        best = output.probs.argmax(dim=1)
        camera = self.model.camera(output, best)
        flow = output.flow  # (1, Ht, Wt, 2)
        if texture_scale > 1:
            height, width = flow.shape[1] * texture_scale, flow.shape[2] * texture_scale
            flow = F.interpolate(flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear")
            flow = flow.permute(0, 2, 3, 1)
        variance = output.variance
        if variance is not None:
            variance = F.interpolate(variance, size=full.shape[-2:], mode="bilinear")
        texture = sample_texture(full, flow, variance)[0].clamp(0, 1)  # (Ht k, Wt k, 3)
        template = self.model.template.mesh
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
        opts = _options(options)
        if init_mesh is not None:  # a result to refine: the network has nothing to add
            return self.fit.fit_mesh(
                init_mesh,
                image,
                mask,
                self._fit_options(opts),
                progress,
                shape="refine",
                mirror_texture=False,
                keep_texture=True,
            )
        if not mask.any():
            raise ValueError("the mask is empty")
        progress(0.0, "shape")
        started = time.perf_counter()
        with cpu_threads(opts.cpu_threads if self.device.type == "cpu" else None):
            mesh, vector, extra = self.predict(image, opts.texture_scale)
        timings = {"network": time.perf_counter() - started}
        camera = Camera.weak_perspective(vector[None, 0], vector[None, 1:3], vector[None, 3:7])
        progress(1.0, "texture")
        if opts.refine:
            refined = self.fit.fit_mesh(
                mesh, image, mask, self._fit_options(opts), progress, shape="refine", mirror_texture=False,
                template_id=TEMPLATE_ID, initial_camera=camera,
            )  # fmt: skip
            timings.update(refined.report.timings)
            mesh, camera = refined.mesh, refined.camera
            iou = refined.report.silhouette_iou or 0.0
        else:
            vertices, faces = mesh.vertices.to(self.device), mesh.faces.to(self.device)
            iou = reprojection_iou(vertices, faces, camera, mask, opts.resolution)
        report = Report(
            method=self.name,
            options=opts.model_dump(),
            device=str(self.device),
            checkpoint=self.checkpoint_id,
            timings=timings,
            silhouette_iou=round(iou, 4),
            num_vertices=mesh.num_vertices,
            num_faces=mesh.num_faces,
            template=TEMPLATE_ID,
            extra={**extra, "refined": opts.refine, "variance": self.model.config.variance},
        )
        return Reconstruction(mesh=mesh, camera=camera, mask=mask.copy(), report=report)

    def _fit_options(self, opts: AdaptiveFlowOptions) -> FitOptions:
        return FitOptions(
            iterations=opts.refine_iterations, resolution=opts.resolution, crop_size=opts.crop_size,
            texture_size=self.model.config.flow_height * opts.texture_scale,
        )  # fmt: skip


def _options(options: MethodOptions) -> AdaptiveFlowOptions:
    if not isinstance(options, AdaptiveFlowOptions):
        raise TypeError(f"adaptive-flow expects AdaptiveFlowOptions, got {type(options).__name__}")
    return options
