"""The ``adaptive-flow`` method: checkpoint loading through the registry, one forward pass giving shape,
camera and texture, the shared icosphere UV layout, the optional ``fit`` refinement.

The network is untrained (random weights from a fixed seed): what is tested is that the served result is
exactly the network's prediction. Training is tested in tests/training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.geometry.templates import icosphere_template, mirror_texture
from backend.methods.adaptive_flow import AdaptiveFlowMethod, AdaptiveFlowOptions
from backend.methods.base import MethodError, no_progress
from backend.methods.registry import create_method, method_info, parse_options
from backend.models.adaptive_flow import TEMPLATE_ID, AdaptiveFlowModel, AdaptiveFlowModelConfig
from tests.backend.methods.test_fit import ellipsoid_mask

CONFIG = AdaptiveFlowModelConfig(image_size=64, flow_height=32, flow_width=64)


pytestmark = pytest.mark.usefixtures("method_home")


def network() -> AdaptiveFlowModel:
    torch.manual_seed(0)
    return AdaptiveFlowModel(CONFIG).eval()


def write_checkpoint(stem: Path, model: AdaptiveFlowModel, method: str = "adaptive-flow") -> Path:
    meta = CheckpointMeta(
        method=method, template=TEMPLATE_ID, config={"model": model.config.model_dump(mode="json")}, step=1
    )
    return save_checkpoint(stem, model.state_dict(), meta)


def photo(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """The red ellipsoid's mask filled with noise (a uniform colour would hide texture sampling errors)."""
    _, mask = ellipsoid_mask(size)
    rng = np.random.default_rng(0)
    image = np.where(mask[..., None], rng.uniform(0.2, 0.8, (size, size, 3)), 1.0).astype(np.float32)
    return image, mask


def test_unavailable_until_a_checkpoint_is_installed(method_home: Path) -> None:
    info = {entry["name"]: entry for entry in method_info()}["adaptive-flow"]
    assert info["needs_checkpoint"] and not info["available"]
    assert "mono2mesh-train adaptive-flow" in info["reason"]
    with pytest.raises(MethodError, match="no adaptive-flow checkpoint"):
        create_method("adaptive-flow", "cpu")
    write_checkpoint(method_home / "checkpoints" / "birds", network())
    info = {entry["name"]: entry for entry in method_info()}["adaptive-flow"]
    assert info["available"] and info["checkpoints"][0]["name"] == "birds"


def test_another_methods_checkpoint_is_refused(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "other", network(), method="softras")
    with pytest.raises(MethodError, match="softras"):
        create_method("adaptive-flow", "cpu", checkpoint=str(path))


def test_the_result_is_the_networks_prediction(tmp_path: Path) -> None:
    model = network()
    method = create_method("adaptive-flow", "cpu", checkpoint=str(write_checkpoint(tmp_path / "c", model)))
    assert isinstance(method, AdaptiveFlowMethod)
    image, mask = photo()
    options = parse_options("adaptive-flow", {"crop_size": 96, "texture_scale": 2, "resolution": 64})
    result = method.reconstruct(image, mask, options, no_progress)

    small = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None], size=(64, 64), mode="area"
    )
    with torch.no_grad():
        output = model(small)
    torch.testing.assert_close(result.mesh.vertices, output.vertices[0])
    best = int(output.probs[0].argmax())
    assert result.report.extra["hypothesis"] == best
    torch.testing.assert_close(result.camera.weak.rotation[0], output.rotation[0, best])
    torch.testing.assert_close(result.camera.weak.scale[0], output.scale[0, best])
    # the icosphere's topology and UV layout: textures move to and from fit results by copying
    template = icosphere_template(3).mesh
    assert torch.equal(result.mesh.faces, template.faces) and torch.equal(
        result.mesh.face_uvs, template.face_uvs
    )
    assert result.report.template == TEMPLATE_ID
    # the texture is sampled at twice the flow's size and is mirror-symmetric (the flow is)
    assert tuple(result.mesh.texture.shape) == (64, 128, 3)
    torch.testing.assert_close(result.mesh.texture, mirror_texture(result.mesh.texture))
    assert 0 <= result.report.silhouette_iou <= 1 and result.report.timings["network"] > 0


def test_refinement_moves_the_shape_and_keeps_the_layout(tmp_path: Path) -> None:
    method = create_method(
        "adaptive-flow", "cpu", checkpoint=str(write_checkpoint(tmp_path / "c", network()))
    )
    image, mask = photo()
    plain = method.reconstruct(image, mask, AdaptiveFlowOptions(crop_size=96, resolution=64), no_progress)
    options = AdaptiveFlowOptions(crop_size=96, resolution=64, refine=True, refine_iterations=30)
    refined = method.reconstruct(image, mask, options, no_progress)
    assert refined.report.extra["refined"] and not torch.equal(refined.mesh.vertices, plain.mesh.vertices)
    assert torch.equal(refined.mesh.face_uvs, plain.mesh.face_uvs)
    assert refined.report.silhouette_iou >= plain.report.silhouette_iou - 0.02
    assert "shape" in refined.report.timings


def test_unknown_options_and_empty_masks_are_errors(tmp_path: Path) -> None:
    with pytest.raises(MethodError, match="iterations"):
        parse_options("adaptive-flow", {"iterations": 5})
    method = create_method(
        "adaptive-flow", "cpu", checkpoint=str(write_checkpoint(tmp_path / "c", network()))
    )
    image, mask = photo()
    with pytest.raises(ValueError, match="empty"):
        method.reconstruct(image, np.zeros_like(mask), AdaptiveFlowOptions(crop_size=96), no_progress)
