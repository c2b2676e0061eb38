"""The contract every reconstruction method keeps, and the types it returns.

A method is a class with a registry ``name``, a pydantic ``Options`` model (its tunable settings,
unknown keys rejected, defaults sensible for a laptop CPU) and

    reconstruct(image, mask, options, progress, *, init_mesh=None) -> Reconstruction

where ``image`` is the square crop around the object, (S, S, 3) float32 in [0, 1], row 0 at the top,
with S = ``crop_size(options)``, and ``mask`` its (S, S) bool object mask (``backend.imaging.crop_to_mask``
makes both); ``progress``
is called as ``progress(fraction, stage)`` with ``fraction`` in [0, 1] of that stage (stages: "shape",
"texture"; the pipeline adds "mask" and "export"). ``progress`` raises ``Cancelled`` when the caller
wants the job stopped, so a method only has to call it often (at least every few hundred ms).
``init_mesh`` asks for a refinement: start from that mesh (its topology kept) instead of the
method's template; a method that cannot refine raises ``MethodError``.

A method instance is built once per device (``create`` in ``backend.methods.registry``) and may hold
loaded weights; ``reconstruct`` must not keep state between calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import pydantic
import torch

from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh

ProgressCallback = Callable[[float, str], None]
"""``progress(fraction, stage)``; may raise ``Cancelled``."""

STAGES = ("mask", "shape", "texture", "export")
"""The stages of a reconstruction, in order."""


class MethodError(ValueError):
    """A request a method cannot serve (unknown method, missing checkpoint, refinement unsupported)."""


class Cancelled(Exception):
    """Raised from a progress callback to stop a running reconstruction."""


class MethodOptions(pydantic.BaseModel):
    """Base of every method's options: unknown keys are an error, values are validated on assignment."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True, frozen=True)


@dataclass
class Report:
    """What a reconstruction did, JSON-ready through ``to_dict``.

    Attributes:
        method: registry name.
        options: the resolved options (defaults filled in).
        device: the torch device it ran on, e.g. "cpu" or "cuda:0".
        checkpoint: checkpoint id, or None for methods without one.
        timings: stage -> seconds.
        silhouette_iou: hard IoU of the re-rendered reconstruction against the mask, on the crop.
        num_vertices, num_faces: of the returned mesh.
        template: topology id of the mesh (e.g. "icosphere-642"); results with the same id share UVs.
        extra: method-specific numbers (final losses, chosen hypothesis, ...).
    """

    method: str
    options: dict[str, Any]
    device: str
    checkpoint: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    silhouette_iou: float | None = None
    num_vertices: int = 0
    num_faces: int = 0
    template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "options": self.options,
            "device": self.device,
            "checkpoint": self.checkpoint,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "silhouette_iou": self.silhouette_iou,
            "num_vertices": self.num_vertices,
            "num_faces": self.num_faces,
            "template": self.template,
            "extra": self.extra,
        }


@dataclass
class Reconstruction:
    """A method's result.

    Attributes:
        mesh: the UV-mapped, textured mesh in world space (conventions of ``backend.geometry``).
        camera: a batch-of-one camera that projects ``mesh`` onto the crop it was given (crop NDC).
        mask: (S, S) bool, the crop mask the method fitted.
        report: what was done, with timings and the re-projection IoU.
    """

    mesh: TexturedMesh
    camera: Camera
    mask: np.ndarray
    report: Report


class Method(Protocol):
    """A reconstruction method (see the module docstring for the contract)."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_checkpoint: ClassVar[bool]
    Options: ClassVar[type[MethodOptions]]

    device: torch.device

    def crop_size(self, options: MethodOptions) -> int:
        """Side in pixels of the square crop ``reconstruct`` wants for these options."""
        ...

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction: ...


def no_progress(fraction: float, stage: str) -> None:
    """A progress callback that ignores everything."""


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch intra-op threads (None: unchanged), restoring the previous number.

    The fit's tensors are small (thousands of pairs per op), where thread start-up costs more than it
    saves and, on a busy machine, waiting for a descheduled worker thread costs far more: on the
    2-core CI machine with other processes running, a 60-step test fit took 29 s with 2 threads and
    2.2 s with 1 (see docs/BENCHMARKS.md).
    """
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
