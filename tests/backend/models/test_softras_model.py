"""The SoftRas network: shapes, the output box, the parameterisation's fixed point, symmetry, encoders."""

from __future__ import annotations

import pytest
import torch

from backend.geometry.templates import icosphere_template
from backend.models.encoders import ImageEncoder
from backend.models.softras import SoftRasModel, SoftRasModelConfig


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["conv", "resnet", "attention"])
def test_encoders_map_images_to_features(kind: str) -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(kind, in_channels=4, image_size=64, features=512)
    features = encoder(torch.rand(3, 4, 64, 64))
    assert features.shape == (3, 512) and (features >= 0).all()
    features.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="expected 64x64"):
        encoder(torch.rand(1, 4, 32, 32))


def test_zero_heads_give_the_quarter_radius_template() -> None:
    model = SoftRasModel()
    torch.nn.init.zeros_(model.bias_head.weight)
    torch.nn.init.zeros_(model.bias_head.bias)
    torch.nn.init.zeros_(model.centroid_head.weight)
    torch.nn.init.zeros_(model.centroid_head.bias)
    model.eval()
    vertices = model(torch.rand(2, 4, 64, 64))
    expected = icosphere_template(3).mesh.vertices * 0.25
    assert vertices.shape == (2, 642, 3)
    torch.testing.assert_close(vertices[0], expected, atol=1e-5, rtol=0)


def test_vertices_stay_in_the_box_and_zero_coordinates_move() -> None:
    torch.manual_seed(1)
    model = SoftRasModel()
    hidden = 20 * torch.randn(4, 2048)  # extreme decoder features
    vertices = model.decode(hidden)
    assert vertices.abs().max() <= 0.5 + 1e-6
    template = icosphere_template(3).mesh.vertices
    on_y_plane = template[:, 1] == 0
    # SoftRas's formula would keep these at y = centroid; here they spread either way
    y = vertices[:, on_y_plane, 1]
    assert (y.max(dim=1).values - y.min(dim=1).values > 0.05).all()


def test_symmetric_outputs_mirror_across_x() -> None:
    torch.manual_seed(2)
    model = SoftRasModel(SoftRasModelConfig(symmetric=True))
    vertices = model.decode(torch.randn(2, 2048))
    mirror = icosphere_template(3).mirror_index
    torch.testing.assert_close(vertices[:, mirror] * torch.tensor([-1.0, 1, 1]), vertices)


def test_config_round_trip_and_errors() -> None:
    config = SoftRasModelConfig(encoder="attention", symmetric=True)
    assert SoftRasModelConfig.model_validate(config.model_dump(mode="json")) == config
    with pytest.raises(ValueError, match=r"unknown config key\(s\) depth for SoftRasModelConfig; valid"):
        SoftRasModelConfig.model_validate({"encoder": "conv", "depth": 3})
    with pytest.raises(ValueError, match="encoder: Input should be 'conv', 'resnet' or 'attention'"):
        SoftRasModelConfig(encoder="vit")  # type: ignore[arg-type]
