"""The contract every reconstruction method keeps, the types it returns, and the base class they share.

**Declaring a method.** A method module defines a pydantic options type (``MethodOptions`` subclass:
unknown keys rejected, defaults sensible for a laptop CPU, a ``crop_size`` field), a method class and
``SPEC``, its ``backend.methods.spec.MethodSpec`` (name, description, options type, checkpoint need,
optional packages, ``build(device, checkpoint)``), registered by one line in ``registry``. Instances are
made only through the spec (``registry.create_method`` -> ``spec.create``), once per device (and
checkpoint); they may hold loaded weights, and ``reconstruct`` must not keep state between calls.
``BaseMethod`` (below) and ``checkpointed.CheckpointedMethod`` implement everything but
``reconstruct`` and make the spec (``Class.spec(description)``).

**Running one** (the ``Method`` protocol)::

    reconstruct(image, mask, options, progress, *, init_mesh=None) -> Reconstruction

where ``image`` is the square crop around the object, (S, S, 3) float32 in [0, 1], row 0 at the top,
with S = ``crop_size(options)``, and ``mask`` its (S, S) bool object mask (``backend.imaging.crop_to_mask``
makes both; an empty one is a ``MaskError``; a method with ``automatic_mask = False`` gets the whole
photo, all mask, for a photo with neither mask nor alpha); ``progress`` is called as
``progress(fraction, stage)`` with ``fraction`` in [0, 1] of that stage (stages: "shape", "texture"; the
pipeline adds "mask" and "export"). ``progress`` raises ``Cancelled`` when the caller wants the job
stopped, so a method only has to call it often (at least every few hundred ms). ``init_mesh`` asks for
a refinement: start from that mesh (its topology kept) instead of the method's template; a method that
cannot refine raises ``MethodError``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar, cast

import numpy as np
import pydantic
import torch

from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.imaging.errors import MaskError
from backend.methods.errors import MethodError as MethodError
from backend.methods.spec import MethodSpec, RequiredPackage
from backend.progress import Cancelled as Cancelled
from backend.progress import ProgressCallback as ProgressCallback
from backend.progress import no_progress as no_progress
from backend.render.backends import select_backend

STAGES = ("mask", "shape", "texture", "export")
"""The stages of a reconstruction, in order."""


class MethodOptions(pydantic.BaseModel):
    """Base of every method's options: unknown keys are an error, values are validated on assignment,
    floats must be finite (no NaN or infinity), and every numeric field states a finite range (ge/gt and
    le/lt) in its schema (``tests/backend/server/test_options_limits.py`` checks each method)."""

    model_config = pydantic.ConfigDict(
        extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False
    )

    if TYPE_CHECKING:  # every method's options declare it as a field, each in its own place and bounds
        crop_size: int


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
        renderer: the raster backend the renders on ``device`` used and why (``backend``, ``reason``:
            ``backend.render.backends.select_backend``), e.g. the reason of a fall-back to PyTorch.
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
    renderer: dict[str, str] = field(default_factory=dict)

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
            "renderer": self.renderer,
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
    """A reconstruction method instance (see the module docstring), made by its ``MethodSpec.build``."""

    name: ClassVar[str]
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


class Stopwatch:
    """Stage -> seconds: ``with watch.stage("shape"): ...`` adds the stage's wall time to ``timings``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - started


OptionsT = TypeVar("OptionsT", bound=MethodOptions)


class BaseMethod(ABC, Generic[OptionsT]):
    """What every method class shares but ``reconstruct``: options narrowing, crop size, input checks,
    CPU threads, the report, and its ``MethodSpec``.

    Subclasses set ``name`` and ``Options`` (the options type, which is ``OptionsT``) and implement
    ``reconstruct``; one that loads a checkpoint derives from ``checkpointed.CheckpointedMethod``.
    """

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]]
    checkpoint_id: str | None = None
    """The loaded checkpoint's file name (None for a method without one)."""
    automatic_mask: ClassVar[bool] = True
    """Whether the photo pipeline segments a photo that comes without a mask or alpha channel (GrabCut);
    False: the whole photo is the object (``pipeline.reconstruct_photo``)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    @classmethod
    def spec(cls, description: str, *, requires: tuple[RequiredPackage, ...] = ()) -> MethodSpec:
        """This class's ``MethodSpec`` (it takes no checkpoint)."""
        return MethodSpec(cls.name, description, cls._checked_options(), cls._build, requires=requires)

    @classmethod
    def _checked_options(cls) -> type[MethodOptions]:
        if "crop_size" not in cls.Options.model_fields:
            raise TypeError(f"{cls.Options.__name__} of method {cls.name} has no crop_size field")
        return cls.Options

    @classmethod
    def _build(cls, device: torch.device, checkpoint: str | None) -> Self:
        if checkpoint is not None:
            raise MethodError(f"method {cls.name} takes no checkpoint")
        return cls(device)

    def options_of(self, options: MethodOptions) -> OptionsT:
        """``options`` as this method's options type; ``TypeError`` for another method's."""
        if not isinstance(options, self.Options):
            raise TypeError(f"{self.name} expects {self.Options.__name__}, got {type(options).__name__}")
        # ``Options`` is the class of OptionsT (a ClassVar cannot name the type variable)
        return cast(OptionsT, options)

    def crop_size(self, options: MethodOptions) -> int:
        return self.options_of(options).crop_size

    def check_inputs(self, image: np.ndarray, mask: np.ndarray) -> None:
        """``ValueError`` unless ``image`` is (S, S, 3) with an (S, S) ``mask``; ``MaskError`` when the
        mask is empty."""
        size = image.shape[0]
        if image.shape != (size, size, 3) or mask.shape != (size, size):
            raise ValueError(
                f"image must be (S, S, 3) with an (S, S) mask, got {image.shape} and {mask.shape}"
            )
        if not mask.any():
            raise MaskError("the mask is empty: no pixel of the crop belongs to the object")

    def refuse_refinement(self, init_mesh: TexturedMesh | None, because: str) -> None:
        """``MethodError`` when a mesh to refine is given to a method that makes its own: ``because`` says
        why (e.g. "predicts a new point cloud"), and the message points to ``fit``."""
        if init_mesh is not None:
            raise MethodError(
                f"{self.name} {because} and cannot refine a given mesh; refine with the fit method"
            )

    def threads(self, count: int) -> AbstractContextManager[None]:
        """``cpu_threads(count)`` on a CPU device; nothing on another."""
        return cpu_threads(count) if self.device.type == "cpu" else nullcontext()

    def result(
        self,
        options: OptionsT,
        mesh: TexturedMesh,
        camera: Camera,
        mask: np.ndarray,
        *,
        timings: Mapping[str, float],
        silhouette_iou: float,
        template: str,
        extra: Mapping[str, Any],
    ) -> Reconstruction:
        """The ``Reconstruction`` (camera on the CPU, a copy of the mask) with its ``Report``: this
        method's name, ``options`` dumped, device, checkpoint, timings, IoU (rounded), counts, template,
        and the raster backend of its device with the reason."""
        raster = select_backend(self.device)
        report = Report(
            method=self.name,
            options=options.model_dump(),
            device=str(self.device),
            checkpoint=self.checkpoint_id,
            timings=dict(timings),
            silhouette_iou=round(silhouette_iou, 4),
            num_vertices=mesh.num_vertices,
            num_faces=mesh.num_faces,
            template=template,
            extra=dict(extra),
            renderer={"backend": raster.name, "reason": raster.reason},
        )
        return Reconstruction(mesh=mesh, camera=camera.to("cpu"), mask=mask.copy(), report=report)

    @abstractmethod
    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction:
        """The ``Method`` protocol's ``reconstruct`` (module docstring)."""
