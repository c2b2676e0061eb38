"""The ``fit`` method on masks rendered from known shapes: shape, camera hypotheses, texture, refinement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.fitting.report import topology_id
from backend.geometry.camera import Camera, axis_angle_to_quaternion
from backend.geometry.mesh import TexturedMesh
from backend.geometry.metrics import mask_iou
from backend.geometry.templates import icosphere_template
from backend.imaging.errors import MaskError
from backend.methods.base import Cancelled, MethodError, no_progress
from backend.methods.fit import FitMethod, FitOptions
from backend.methods.registry import create_method, method_info, parse_options
from backend.render.backends import select_backend
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from tests.devices import DEVICES

SMALL = {"iterations": 60, "resolution": 64, "hypotheses": 2, "crop_size": 128, "texture_size": 64}


def ellipsoid_mask(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A red ellipsoid (a stretched template) seen from the side on white, and its mask."""
    vertices = icosphere_template().mesh.vertices * torch.tensor([0.5, 0.6, 1.0])
    faces = icosphere_template().mesh.faces
    side = axis_angle_to_quaternion(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([math.pi / 2]))
    camera = Camera.weak_perspective(torch.tensor([0.85]), torch.tensor([[0.05, -0.05]]), side)
    mask = render(vertices, faces, camera, RasterSettings(size, soft=False)).mask[0, ..., 0].numpy() > 0.5
    image = np.ones((size, size, 3), np.float32)
    image[mask] = [0.9, 0.1, 0.1]
    return image, mask


@pytest.mark.parametrize("device", DEVICES)
def test_fit_runs_on_the_device(device: str) -> None:
    image, mask = ellipsoid_mask()
    result = FitMethod(device).reconstruct(image, mask, FitOptions(**SMALL), no_progress)
    assert result.report.device.startswith(device)
    assert result.report.silhouette_iou is not None and result.report.silhouette_iou > 0.9
    assert torch.isfinite(result.mesh.vertices).all() and result.mesh.texture.shape == (64, 128, 3)


def test_fit_reaches_the_mask_and_stays_symmetric() -> None:
    image, mask = ellipsoid_mask()
    method = FitMethod("cpu")
    calls: list[tuple[float, str]] = []
    result = method.reconstruct(
        image, mask, FitOptions(**SMALL), lambda fraction, stage: calls.append((fraction, stage))
    )
    assert result.report.silhouette_iou is not None and result.report.silhouette_iou > 0.9
    # The sphere the fit starts from covers far less of this mask.
    start = render(
        icosphere_template().mesh.vertices,
        icosphere_template().mesh.faces,
        result.camera,
        RasterSettings(64, soft=False),
    ).mask[0, ..., 0]
    target = torch.from_numpy(mask[::2, ::2].astype(np.float32))
    assert float(mask_iou(start, target, soft=False)) < result.report.silhouette_iou - 0.05
    template = icosphere_template()
    vertices = result.mesh.vertices
    mirrored = vertices[template.mirror_index] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(vertices, mirrored, atol=1e-6, rtol=0)
    assert result.report.num_vertices == 642 and result.report.num_faces == 1280
    assert result.report.template == "icosphere-642"
    # the raster backend its renders used, and why (numba on the CPU where it runs, else torch)
    expected = select_backend("cpu")
    assert result.report.to_dict()["renderer"] == {"backend": expected.name, "reason": expected.reason}
    assert len(result.report.extra["hypothesis_losses"]) == 2
    assert result.report.extra["hypothesis"] == int(np.argmin(result.report.extra["hypothesis_losses"]))
    # Progress: per stage, fractions in [0, 1] and non-decreasing, shape then texture, one call per step.
    stages = [stage for _, stage in calls]
    assert stages.index("texture") > len(stages) - 4 and stages.count("shape") >= SMALL["iterations"]
    for stage in ("shape", "texture"):
        fractions = [fraction for fraction, s in calls if s == stage]
        assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0


def test_fit_texture_comes_from_the_photo() -> None:
    image, mask = ellipsoid_mask()
    result = FitMethod("cpu").reconstruct(image, mask, FitOptions(**SMALL), lambda f, s: None)
    texture = result.mesh.texture
    assert texture.shape == (64, 128, 3)
    red = (texture[..., 0] > 0.6) & (texture[..., 1] < 0.35) & (texture[..., 2] < 0.35)
    assert float(red.float().mean()) > 0.9  # the hidden side is mirrored and inpainted, not black or white


def test_rendering_the_result_reproduces_the_photo() -> None:
    image, mask = ellipsoid_mask()
    result = FitMethod("cpu").reconstruct(image, mask, FitOptions(**SMALL), lambda f, s: None)
    out = render(
        result.mesh.vertices,
        result.mesh.faces,
        result.camera,
        RasterSettings(128, soft=False),
        uvs=result.mesh.uvs,
        face_uvs=result.mesh.face_uvs,
        texture=result.mesh.texture,
    )
    both = (out.mask[0, ..., 0] > 0.5).numpy() & mask
    error = np.abs(out.rgb[0].numpy()[both] - image[both]).mean()
    assert both.sum() > 0.8 * mask.sum() and error < 0.1


def test_cancel_from_progress_stops_the_fit() -> None:
    image, mask = ellipsoid_mask()
    steps = []

    def progress(fraction: float, stage: str) -> None:
        steps.append(fraction)
        if len(steps) > 5:
            raise Cancelled

    with pytest.raises(Cancelled):
        FitMethod("cpu").reconstruct(image, mask, FitOptions(**SMALL), progress)
    assert len(steps) == 6


def test_refinement_keeps_topology_and_stays_near_the_given_mesh() -> None:
    image, mask = ellipsoid_mask()
    template = icosphere_template().mesh
    # An "edited" mesh: an ellipsoid close to the target with a dent, and a green texture.
    vertices = template.vertices * torch.tensor([0.5, 0.6, 1.0])
    vertices[0] = vertices[0] * 0.7
    given = TexturedMesh(
        vertices=vertices,
        faces=template.faces,
        uvs=template.uvs,
        face_uvs=template.face_uvs,
        texture=torch.tensor([0.1, 0.8, 0.1]).expand(32, 64, 3).clone(),
    )
    options = FitOptions(**{**SMALL, "keep_shape_weight": 100.0})
    result = FitMethod("cpu").reconstruct(image, mask, options, lambda f, s: None, init_mesh=given)
    assert torch.equal(result.mesh.faces, given.faces) and torch.equal(result.mesh.face_uvs, given.face_uvs)
    assert result.report.extra["refined"] is True
    assert result.report.template == topology_id(result.mesh) == topology_id(given)
    moved = (result.mesh.vertices - given.vertices).norm(dim=-1)
    assert float(moved.max()) < 0.2
    assert float((result.mesh.vertices[0] - given.vertices[0]).norm()) < 0.1  # the dent survives
    texture = result.mesh.texture
    green = (texture[..., 1] > 0.6) & (texture[..., 0] < 0.3)
    # where the surface stayed (here: nearly everywhere) the given texture stays, seen or not
    # (tests/backend/methods/test_refine.py: the photo's colour where it moved)
    assert float(green.float().mean()) > 0.9


def test_options_are_validated_by_name() -> None:
    assert parse_options("fit", {"iterations": 10}).iterations == 10  # type: ignore[attr-defined]
    with pytest.raises(MethodError, match="unknown_thing"):
        parse_options("fit", {"unknown_thing": 1})
    with pytest.raises(MethodError, match="iterations"):
        parse_options("fit", {"iterations": -3})
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        parse_options("nope", {})
    with pytest.raises(MethodError, match="JSON object"):
        parse_options("fit", [1, 2])  # type: ignore[arg-type]


def test_registry_describes_and_creates_methods() -> None:
    info = {entry["name"]: entry for entry in method_info()}
    assert info["fit"]["available"] and not info["fit"]["needs_checkpoint"]
    assert "iterations" in info["fit"]["options_schema"]["properties"]
    method = create_method("fit", "cpu")
    assert isinstance(method, FitMethod) and method.device == torch.device("cpu")
    with pytest.raises(MethodError, match="takes no checkpoint"):
        create_method("fit", "cpu", checkpoint="x.safetensors")
    if not torch.cuda.is_available():
        with pytest.raises(MethodError, match="no usable CUDA"):
            create_method("fit", "cuda")
    with pytest.raises(MethodError, match="unknown device"):
        create_method("fit", "tpu-9")


def test_bad_inputs_are_refused() -> None:
    method = FitMethod("cpu")
    with pytest.raises(MaskError, match="empty"):
        method.reconstruct(
            np.ones((64, 64, 3), np.float32), np.zeros((64, 64), bool), FitOptions(), lambda f, s: None
        )
    with pytest.raises(ValueError, match="S, S, 3"):
        method.reconstruct(
            np.ones((64, 32, 3), np.float32), np.ones((64, 32), bool), FitOptions(), lambda f, s: None
        )


def test_the_options_set_the_template_fit_s_own_settings() -> None:
    settings = FitOptions().fit_settings()
    assert (settings.hypotheses, settings.selection_resolution, settings.start_elevation) == (8, 32, 20.0)
    assert settings.thickness_weight == 0.0  # the prior is off by default (docs/BENCHMARKS.md, issue 20)
    chosen = FitOptions(hypotheses=3, start_elevation=-5, thickness_weight=2.0, thickness_slack=1.5)
    settings = chosen.fit_settings()
    assert (settings.hypotheses, settings.start_elevation) == (3, -5.0)
    assert (settings.thickness_weight, settings.thickness_slack) == (2.0, 1.5)
