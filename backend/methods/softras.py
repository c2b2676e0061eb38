"""The ``softras`` method: the Soft Rasterizer network predicts the shape; ``fit`` finds the camera and
textures it.

1. **Network** (stage "shape", first 5 %): the crop and its mask, resized to the network's input
   (64 x 64 RGBA, RGB multiplied by the mask), give the 642 icosphere vertices in the object's
   canonical frame (``backend.models.softras``).
2. **Camera** (rest of "shape"): the network says nothing about the view, so ``FitMethod.fit_mesh``
   fits a weak-perspective camera to the mask with the predicted mesh frozen (``shape="pose"``: the
   azimuth hypotheses, soft IoU and Chamfer mask loss of ``fit``). With ``refine`` on, the shape may
   move too (``shape="refine"``: offsets held near the prediction by ``keep_shape_weight``).
3. **Texture** (stage "texture"): projected from the photo, the unseen half mirrored (the icosphere's
   UV layout is symmetric), the rest inpainted, as ``fit`` does.

The result shares the icosphere's topology and UVs (template ``icosphere-642``) with ``fit`` results,
so textures move between them by copying. Checkpoints are ``backend.checkpoints`` files of method
``softras``; without ``--checkpoint`` the newest installed one is used.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydantic
import torch

from backend.geometry.mesh import TexturedMesh
from backend.methods.base import (
    MethodOptions,
    ProgressCallback,
    Reconstruction,
    cpu_threads,
)
from backend.methods.checkpointed import checkpoint_availability, load_method_network, masked_crop_input
from backend.methods.fit import FitMethod, FitOptions, ShapeMode
from backend.models.softras import TEMPLATE_ID, SoftRasModel, SoftRasModelConfig

Field = pydantic.Field
NETWORK_SHARE = 0.05
"""Share of the "shape" stage's progress given to the network's forward pass."""


class SoftRasOptions(FitOptions):
    """Options of the ``softras`` method: the network has none, so these are ``fit``'s options for the
    camera fit and the texture (every one of them, for the refinement), plus ``refine``."""

    iterations: int = Field(100, ge=0, le=20000, description="camera (and, with refine, shape) fit steps")
    refine: bool = Field(False, description="let the shape move during the fit, held near the prediction")

    def fit_options(self) -> FitOptions:
        """The ``fit`` options of the camera fit and texturing."""
        return FitOptions(**self.model_dump(exclude={"refine"}))


class SoftRasMethod:
    """The ``softras`` method (module docstring); one instance per device and checkpoint."""

    name: ClassVar[str] = "softras"
    description: ClassVar[str] = (
        "Soft Rasterizer network (SoftRas's ShapeNet recipe) predicts the shape; fitted camera, texture "
        "projected from the photo (needs a trained checkpoint)"
    )
    needs_checkpoint: ClassVar[bool] = True
    Options: ClassVar[type[MethodOptions]] = SoftRasOptions

    def __init__(self, device: torch.device | str = "cpu", checkpoint: str | Path | None = None) -> None:
        self.device = torch.device(device)
        self.model, self.checkpoint_id = load_method_network(
            self.name, checkpoint, TEMPLATE_ID, self.device,
            lambda settings: SoftRasModel(SoftRasModelConfig.from_dict(settings)),
        )  # fmt: skip
        self.fit = FitMethod(self.device)

    @classmethod
    def availability(cls) -> tuple[bool, str | None]:
        """Whether a checkpoint is installed (``checkpoint_root()``); the reason when not."""
        return checkpoint_availability(cls.name, "mono2mesh-train softras")

    def crop_size(self, options: MethodOptions) -> int:
        return _options(options).crop_size

    @torch.no_grad()
    def predict(self, image: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """Vertices (642, 3) predicted from a crop (S, S, 3) float in [0, 1] and its mask (S, S)."""
        return self.model(masked_crop_input(image, mask, self.model.config.image_size, self.device))[0]

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
                init_mesh, image, mask, opts.fit_options(), progress, shape="refine", mirror_texture=False,
                keep_texture=True,
            )  # fmt: skip
        if not mask.any():
            raise ValueError("the mask is empty")
        progress(0.0, "shape")
        started = time.perf_counter()
        with cpu_threads(opts.cpu_threads if self.device.type == "cpu" else None):
            vertices = self.predict(image, mask).cpu()
        network_seconds = time.perf_counter() - started
        template = self.model.template.mesh
        predicted = dataclasses.replace(template, vertices=vertices)

        def fit_progress(fraction: float, stage: str) -> None:
            if stage == "shape":
                fraction = NETWORK_SHARE + (1 - NETWORK_SHARE) * fraction
            progress(fraction, stage)

        progress(NETWORK_SHARE, "shape")
        shape: ShapeMode = "refine" if opts.refine else "pose"
        result = self.fit.fit_mesh(
            predicted, image, mask, opts.fit_options(), fit_progress, shape=shape, template_id=TEMPLATE_ID
        )
        report = dataclasses.replace(
            result.report,
            method=self.name,
            options=opts.model_dump(),
            checkpoint=self.checkpoint_id,
            timings={"network": network_seconds, **result.report.timings},
            extra={**result.report.extra, "encoder": self.model.config.encoder},
        )
        return dataclasses.replace(result, report=report)


def _options(options: MethodOptions) -> SoftRasOptions:
    if not isinstance(options, SoftRasOptions):
        raise TypeError(f"softras expects SoftRasOptions, got {type(options).__name__}")
    return options
