"""Test doubles for the server: a fake method, its factory, a light job runner, and a fake backend.

- ``FakeMethod`` keeps the ``Method`` protocol: it calls ``progress`` ``steps`` times, sleeping ``delay``
  seconds between calls (so a test can hold a job in "running"), and returns the level-0 icosphere (or
  the ``init_mesh`` it was given) with a fixed camera.
- ``FakeFactory`` offers "fake" (the default) and "needs-weights" (never available), counting the
  instances it creates.
- ``light_runner`` runs the real ``reconstruct_photo`` (decode, mask, crop) and writes the result files
  without rendering the preview sheet, which costs seconds on a CPU.

Run as a module, it is ``mono2mesh serve`` with these fakes (same options), for the subprocess tests
that need many or long jobs: ``python -m tests.backend.server.fakes --port 0 --state-file F --jobs-dir D``
(from the repository root).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pydantic
import torch
from PIL import Image

from backend.geometry import Camera, icosphere_template
from backend.geometry.io import load_glb, save_glb, texture_to_image
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import (
    MethodError,
    MethodOptions,
    ProgressCallback,
    Reconstruction,
    Report,
)
from backend.methods.pipeline import reconstruct_photo
from backend.server.jobs import IMAGE_FILE, MASK_FILE, MESH_FILE, RESULT_DIR, RESULT_FILES, Job


class FakeOptions(MethodOptions):
    steps: int = pydantic.Field(2, ge=0, le=1_000_000, description="progress calls")
    delay: float = pydantic.Field(0.0, ge=0.0, le=10.0, description="seconds between progress calls")


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
        progress(1.0, "texture")
        mesh = init_mesh if init_mesh is not None else icosphere_template(0).mesh
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
            raise MethodError(f"invalid options for {name}: {error.errors()[0]['msg']}") from None

    def create_method(self, name: str, device: str) -> FakeMethod:
        self.created.append((name, device))
        return self._class(name)(torch.device(device))


def light_runner(
    method: Any, job: Job, folder: Path, options: MethodOptions, progress: ProgressCallback
) -> None:
    """``reconstruct_photo`` for real, then every result file but with the crop as the preview."""
    result = reconstruct_photo(
        method,
        folder / IMAGE_FILE,
        mask=folder / MASK_FILE if job.has_mask else None,
        options=options,
        progress=progress,
        init_mesh=load_glb(folder / MESH_FILE) if job.has_mesh else None,
    )
    progress(0.0, "export")
    out = folder / RESULT_DIR
    out.mkdir(exist_ok=True)
    files = {kind: out / name for kind, (_, name, _) in RESULT_FILES.items()}
    save_glb(result.mesh, files["glb"])
    texture_to_image(result.mesh.texture).save(files["texture"])
    Image.fromarray((result.crop.rgb * 255).astype(np.uint8)).save(files["preview"])
    Image.fromarray(result.photo_mask.astype(np.uint8) * 255).save(files["mask"])
    files["report"].write_text(json.dumps(result.report()))
    progress(1.0, "export")


if __name__ == "__main__":
    from backend.server.command import add_arguments, main

    parser = argparse.ArgumentParser(prog="python -m tests.backend.server.fakes")
    add_arguments(parser)
    sys.exit(main(parser.parse_args(), method_factory=FakeFactory(), job_runner=light_runner))
