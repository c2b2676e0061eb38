"""Test doubles for the server: a fake method, its factory, and a backend serving them.

- ``FakeMethod`` keeps the ``Method`` protocol: it calls ``progress`` ``steps`` times, sleeping ``delay``
  seconds between calls (so a test can hold a job in "running"), then sleeps ``block`` seconds without a
  progress call (a long library call), or with ``crash`` kills its own process (as the out-of-memory
  killer would), and returns the level-0 icosphere (or the ``init_mesh`` it was given) with a fixed
  camera, textured with a ``texture_size`` x 2 ``texture_size`` texture when that is not 0 (so that
  exporting it takes as long as a real result of that size).
- ``FakeFactory`` offers "fake" (the default) and "needs-weights" (never available), counting the
  instances it creates.

Run as a module, it is ``mono2mesh serve`` with these fakes (same options), for the subprocess tests
that need many or long jobs: ``python -m tests.backend.server.fakes --port 0 --state-file F --jobs-dir D``
(from the repository root).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, ClassVar

import numpy as np
import pydantic
import torch

from backend.geometry import Camera, icosphere_template
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import (
    MethodError,
    MethodOptions,
    ProgressCallback,
    Reconstruction,
    Report,
)


class FakeOptions(MethodOptions):
    steps: int = pydantic.Field(2, ge=0, le=1_000_000, description="progress calls")
    delay: float = pydantic.Field(0.0, ge=0.0, le=10.0, description="seconds between progress calls")
    block: float = pydantic.Field(0.0, ge=0.0, le=600.0, description="seconds without a progress call")
    crash: bool = pydantic.Field(False, description="kill the process running the job")
    texture_size: int = pydantic.Field(0, ge=0, le=4096, description="texture height of the result; 0: 1x1")


class FakeMethod:
    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "a stand-in that returns a 20-face sphere"
    needs_checkpoint: ClassVar[bool] = False
    Options: ClassVar[type[MethodOptions]] = FakeOptions

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def crop_size(self, options: MethodOptions) -> int:
        return 32

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction:
        if not isinstance(options, FakeOptions):
            raise TypeError(f"expected FakeOptions, got {type(options).__name__}")
        for step in range(options.steps):
            progress(step / options.steps, "shape")
            time.sleep(options.delay)
        progress(1.0, "shape")
        if options.crash:
            os.kill(os.getpid(), signal.SIGKILL)
        if options.block:
            time.sleep(options.block)
        progress(1.0, "texture")
        mesh = init_mesh if init_mesh is not None else icosphere_template(0).mesh
        if options.texture_size:
            side = options.texture_size
            ramp = torch.linspace(0, 1, 2 * side, device="cpu")  # (2T,) a gradient PNG cannot shrink away
            noise = torch.rand(side, 2 * side, 3, generator=torch.Generator().manual_seed(0), device="cpu")
            mesh = mesh.with_texture(0.5 * noise + 0.5 * ramp[None, :, None])  # (T, 2T, 3)
        camera = Camera.weak_perspective(
            torch.tensor([0.8]), torch.zeros(1, 2), torch.tensor([[1.0, 0, 0, 0]])
        )
        report = Report(
            method=self.name,
            options=options.model_dump(),
            device=str(self.device),
            num_vertices=mesh.num_vertices,
            num_faces=mesh.num_faces,
            extra={"refined": init_mesh is not None},
        )
        return Reconstruction(mesh, camera, mask, report)


class NeedsWeights(FakeMethod):
    name: ClassVar[str] = "needs-weights"
    needs_checkpoint: ClassVar[bool] = True


class FakeFactory:
    """A ``MethodFactory`` over ``FakeMethod`` (available) and ``NeedsWeights`` (not installed)."""

    default_method = "fake"
    classes: ClassVar[dict[str, type[FakeMethod]]] = {"fake": FakeMethod, "needs-weights": NeedsWeights}

    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []

    def _class(self, name: str) -> type[FakeMethod]:
        if name not in self.classes:
            raise MethodError(f"unknown method {name!r}; available: {', '.join(self.classes)}")
        return self.classes[name]

    def method_info(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "description": cls.description,
                "needs_checkpoint": cls.needs_checkpoint,
                "available": self.availability(name)[0],
                "reason": self.availability(name)[1],
                "options_schema": cls.Options.model_json_schema(),
            }
            for name, cls in self.classes.items()
        ]

    def availability(self, name: str) -> tuple[bool, str | None]:
        if self._class(name).needs_checkpoint:
            return False, f"{name} needs a checkpoint and none is installed"
        return True, None

    def parse_options(self, name: str, data: dict[str, Any]) -> MethodOptions:
        try:
            return self._class(name).Options.model_validate(data)
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'options'}: {item['msg']}"
                for item in error.errors()
            )  # as backend.methods.registry.parse_options words them
            raise MethodError(f"invalid options for {name}: {problems}") from None

    def create_method(self, name: str, device: str) -> FakeMethod:
        self.created.append((name, device))
        return self._class(name)(torch.device(device))


if __name__ == "__main__":
    from backend.server.command import add_arguments, main

    parser = argparse.ArgumentParser(prog="python -m tests.backend.server.fakes")
    add_arguments(parser)
    sys.exit(main(parser.parse_args(), method_factory=FakeFactory()))
