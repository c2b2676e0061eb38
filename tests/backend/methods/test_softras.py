"""The ``softras`` method: checkpoint loading through the registry, the frozen-shape camera fit, refine
(the engine's ``fit_pose`` alone: tests/backend/fitting/test_pose.py).

The network here is untrained, with its heads zeroed so that it predicts the SoftRas start shape (the
sphere of radius 0.25) for any photo: that makes the expected mesh exact. Training is tested in
tests/training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.cli import main as cli_main
from backend.geometry.templates import icosphere_template
from backend.methods.base import MethodError, no_progress
from backend.methods.registry import create_method, method_info, parse_options
from backend.methods.softras import SoftRasMethod, SoftRasOptions
from backend.models.softras import TEMPLATE_ID, SoftRasModel, SoftRasModelConfig
from tests.backend.methods.test_fit import ellipsoid_mask

SMALL = {"iterations": 60, "resolution": 64, "hypotheses": 2, "crop_size": 128, "texture_size": 64}


pytestmark = pytest.mark.usefixtures("method_home")


def sphere_network(config: SoftRasModelConfig | None = None) -> SoftRasModel:
    torch.manual_seed(0)
    model = SoftRasModel(config)
    for head in (model.bias_head, model.centroid_head):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    return model


def write_checkpoint(stem: Path, model: SoftRasModel, method: str = "softras") -> Path:
    meta = CheckpointMeta(
        method=method, template=TEMPLATE_ID, config={"model": model.config.model_dump(mode="json")}, step=1
    )
    return save_checkpoint(stem, model.state_dict(), meta)


def test_unavailable_without_a_checkpoint_then_found_when_installed(
    method_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = {entry["name"]: entry for entry in method_info()}
    assert info["softras"]["needs_checkpoint"] and not info["softras"]["available"]
    assert "no softras checkpoint installed" in info["softras"]["reason"]
    assert str(method_home / "checkpoints") in info["softras"]["reason"]
    with pytest.raises(MethodError, match="no softras checkpoint installed"):
        create_method("softras", "cpu")
    installed = write_checkpoint(method_home / "checkpoints" / "softras" / "bird", sphere_network())
    assert {entry["name"]: entry for entry in method_info()}["softras"]["available"]
    method = create_method("softras", "cpu")  # the newest installed checkpoint
    assert isinstance(method, SoftRasMethod) and method.checkpoint_id == installed.name
    # `mono2mesh methods` lists it, as does GET /v1/methods (the same method_info)
    listed = {entry["name"]: entry for entry in method_info()}["softras"]["checkpoints"]
    assert [(c["name"], c["step"]) for c in listed] == [("bird", 1)]
    assert cli_main(["methods"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint {installed} (default): step 1" in out


def test_reconstruct_predicts_the_shape_and_fits_only_the_camera(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "sphere", sphere_network())
    method = create_method("softras", "cpu", checkpoint=str(path))
    image, mask = ellipsoid_mask()
    calls: list[tuple[float, str]] = []
    result = method.reconstruct(
        image, mask, parse_options("softras", SMALL), lambda f, s: calls.append((f, s))
    )
    template = icosphere_template(3)
    # the mesh is the network's prediction, untouched by the camera fit; layout of the icosphere
    torch.testing.assert_close(result.mesh.vertices, template.mesh.vertices * 0.25, atol=1e-5, rtol=0)
    assert torch.equal(result.mesh.faces, template.mesh.faces)
    assert torch.equal(result.mesh.face_uvs, template.mesh.face_uvs)
    report = result.report
    assert report.method == "softras" and report.checkpoint == "sphere.safetensors"
    assert report.template == TEMPLATE_ID and report.extra["shape"] == "pose"
    assert set(report.timings) >= {"network", "shape", "texture"}
    # a sphere cannot match the ellipsoid's side view, but the camera puts it on the mask
    assert report.silhouette_iou is not None and 0.5 < report.silhouette_iou < 0.9
    assert result.mesh.texture.shape == (64, 128, 3)
    shape_fractions = [fraction for fraction, stage in calls if stage == "shape"]
    assert shape_fractions == sorted(shape_fractions) and shape_fractions[-1] == 1.0
    # with refine, the shape moves toward the mask from the prediction
    refine = parse_options("softras", {**SMALL, "refine": True})
    refined = method.reconstruct(image, mask, refine, no_progress)
    assert refined.report.extra["shape"] == "refine"
    assert refined.report.silhouette_iou > report.silhouette_iou + 0.05


def test_checkpoints_of_another_method_or_a_pickle_are_refused(tmp_path: Path) -> None:
    other = write_checkpoint(tmp_path / "other", sphere_network(), method="adaptive-flow")
    with pytest.raises(MethodError, match="adaptive-flow"):
        create_method("softras", "cpu", checkpoint=str(other))
    pickled = tmp_path / "model.pth"
    torch.save(sphere_network().state_dict(), pickled)
    with pytest.raises(MethodError, match="pickle"):
        create_method("softras", "cpu", checkpoint=str(pickled))
    mismatched = write_checkpoint(tmp_path / "attention", sphere_network())
    meta = mismatched.with_suffix(".json")
    text = meta.read_text().replace('"encoder": "conv"', '"encoder": "attention"')
    meta.write_text(text)
    with pytest.raises(MethodError, match="does not hold a usable softras network"):
        create_method("softras", "cpu", checkpoint=str(mismatched))


def test_options_are_checked() -> None:
    assert isinstance(parse_options("softras", {}), SoftRasOptions)
    with pytest.raises(MethodError, match="invalid options for softras"):
        parse_options("softras", {"iterations": -1})
    with pytest.raises(MethodError, match="invalid options for softras"):
        parse_options("softras", {"encoder": "conv"})  # a training setting, not an option
    assert np.isclose(SoftRasOptions().refine_settings().keep_shape_weight, 10.0)
