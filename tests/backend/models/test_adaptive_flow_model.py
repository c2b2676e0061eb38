"""The adaptive-flow network: shapes, exact symmetry, config and checkpoint round trips, camera
initialisation, and the variance test of the paper's eq. 24-30 (sec. 3.2)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torchvision

from backend.geometry.camera import quaternion_to_matrix
from backend.geometry.templates import icosphere_template, mirror_texture
from backend.models.adaptive_flow import (
    INITIAL_SILHOUETTE_RADIUS,
    AdaptiveFlowModel,
    AdaptiveFlowModelConfig,
    AdaptiveFlowOutput,
    sample_texture,
    symmetrize_flow,
)

SIZE = 64


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> AdaptiveFlowModel:
    torch.manual_seed(0)
    return AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=SIZE)).eval()


@pytest.fixture(scope="module")
def output(model: AdaptiveFlowModel) -> AdaptiveFlowOutput:
    torch.manual_seed(1)
    with torch.no_grad():
        return model(torch.rand(2, 3, SIZE, SIZE))


def test_output_shapes_and_ranges(output: AdaptiveFlowOutput) -> None:
    assert output.features.shape == (2, 200)
    assert output.offsets.shape == output.vertices.shape == (2, 642, 3)
    assert output.scale.shape == output.camera_logits.shape == output.probs.shape == (2, 8)
    assert output.translation.shape == (2, 8, 2) and output.rotation.shape == (2, 8, 4)
    assert output.flow.shape == (2, 128, 256, 2) and output.flow.abs().max() <= 1
    assert output.variance is not None and output.variance.shape == (2, 1, SIZE, SIZE)
    assert (output.variance > 0.5).all() and (output.variance < 1.5).all()
    assert output.variance[0].std() > 0  # D_var's default initialisation is not constant
    assert (output.scale > 0).all()
    torch.testing.assert_close(output.rotation.norm(dim=-1), torch.ones(2, 8))
    torch.testing.assert_close(output.probs.sum(dim=-1), torch.ones(2))
    torch.testing.assert_close(output.probs, torch.softmax(output.camera_logits, dim=-1))


def test_training_step_reaches_every_head() -> None:
    torch.manual_seed(2)
    model = AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=SIZE, num_hypotheses=2))
    image = torch.rand(2, 3, SIZE, SIZE)
    output = model(image)
    loss = (
        model.texture(image, output).sum()
        + output.vertices.sum()
        + output.scale.sum()
        + output.translation.sum()
        + output.rotation[..., 1:].sum()
        + output.camera_logits[:, 0].sum()
    )
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_vertices_and_texture_are_exactly_symmetric() -> None:
    torch.manual_seed(3)
    model = AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=SIZE, num_hypotheses=1)).eval()
    torch.nn.init.normal_(model.shape_head.weight, 0.0, 0.1)  # offsets far from zero
    template = icosphere_template(3)
    model.set_template(template.mesh.vertices * torch.tensor([0.3, 0.4, 0.5]))
    image = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        output = model(image)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    assert output.offsets.abs().max() > 0.01
    for vertices in (output.offsets, output.vertices, model.template_vertices[None]):
        assert torch.equal(vertices[:, template.mirror_index] * flip, vertices)
        assert (vertices[:, template.plane_index, 0] == 0).all()
    texture = model.texture(image, output)
    assert texture.shape == (2, 128, 256, 3)
    assert torch.equal(mirror_texture(texture), texture)
    assert torch.equal(output.flow[:, :, :128], output.flow[:, :, 128:].flip(2))


def test_other_flow_sizes_and_no_variance() -> None:
    torch.manual_seed(4)
    config = AdaptiveFlowModelConfig(image_size=96, flow_height=32, flow_width=64, variance=False)
    model = AdaptiveFlowModel(config).eval()
    assert model.variance_decoder is None
    image = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        output = model(image)
    assert output.flow.shape == (1, 32, 64, 2) and output.variance is None
    texture = model.texture(image, output)
    assert torch.equal(mirror_texture(texture), texture)
    expected = torch.nn.functional.grid_sample(
        image, output.flow, padding_mode="border", align_corners=False
    ).permute(0, 2, 3, 1)
    torch.testing.assert_close(texture, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 96, 96\)"):
        model(torch.rand(1, 3, 64, 64))


def test_variance_decoder_reaches_three_channels_at_other_sizes() -> None:
    torch.manual_seed(5)
    model = AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=96, variance_channels=3, num_hypotheses=1))
    with torch.no_grad():
        output = model.eval()(torch.rand(1, 3, 96, 96))
    assert output.variance is not None and output.variance.shape == (1, 3, 96, 96)


def test_config_round_trip_and_errors() -> None:
    config = AdaptiveFlowModelConfig(image_size=128, variance=False, num_hypotheses=4, shape_scale=0.5)
    assert AdaptiveFlowModelConfig.model_validate(config.model_dump(mode="json")) == config
    with pytest.raises(ValueError, match=r"unknown config key\(s\) depth for AdaptiveFlowModelConfig"):
        AdaptiveFlowModelConfig.model_validate({"image_size": 64, "depth": 3})
    with pytest.raises(ValueError, match="multiple of 32"):
        AdaptiveFlowModelConfig(image_size=80)
    with pytest.raises(ValueError, match="flow_width even"):
        AdaptiveFlowModelConfig(flow_width=255)
    with pytest.raises(ValueError, match="variance_channels"):
        AdaptiveFlowModelConfig(variance_channels=2)


def test_state_dict_round_trip_keeps_the_learned_template() -> None:
    torch.manual_seed(6)
    config = AdaptiveFlowModelConfig(image_size=SIZE, num_hypotheses=2)
    model = AdaptiveFlowModel(config).eval()
    learned = icosphere_template(3).mesh.vertices * torch.tensor([0.2, 0.35, 0.45])
    model.set_template(learned)
    state = model.state_dict()
    assert "template_free" in state and "faces" not in state and "mirror_index" not in state
    fresh = AdaptiveFlowModel(AdaptiveFlowModelConfig.model_validate(config.model_dump(mode="json"))).eval()
    assert not torch.equal(fresh.template_vertices, model.template_vertices)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.template_vertices, learned, rtol=0, atol=1e-7)
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        first, second = model(image), fresh(image)
    for name in ("vertices", "scale", "rotation", "flow", "variance"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name


def test_set_template_symmetrises_and_checks_shapes() -> None:
    model = AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=SIZE, num_hypotheses=1))
    template = icosphere_template(3)
    initial = model.template_vertices.clone()
    torch.testing.assert_close(initial, template.mesh.vertices * 0.5)
    model.set_template(initial + 0.01 * torch.randn(642, 3))  # not symmetric: projected
    vertices = model.template_vertices
    assert torch.equal(vertices[template.mirror_index] * torch.tensor([-1.0, 1.0, 1.0]), vertices)
    assert (vertices - initial).abs().max() < 0.05
    model.set_template(torch.ones(337, 3))  # free vertices: plane x is set to 0
    assert (model.template_vertices[template.plane_index, 0] == 0).all()
    with pytest.raises(ValueError, match=r"\(642, 3\) or \(337, 3\)"):
        model.set_template(torch.zeros(10, 3))


def test_hypotheses_start_at_distinct_azimuths_about_y(output: AdaptiveFlowOutput) -> None:
    rotation = quaternion_to_matrix(output.rotation[0])  # (H, 3, 3)
    # rotations about Y keep the Y axis
    torch.testing.assert_close(
        rotation[:, :, 1], torch.tensor([0.0, 1.0, 0.0]).expand(8, 3), atol=0.05, rtol=0
    )
    angles = torch.atan2(rotation[:, 0, 2], rotation[:, 0, 0])  # (H,) angle about Y
    expected = torch.arange(8) * (2 * math.pi / 8)
    difference = torch.remainder(angles - expected + math.pi, 2 * math.pi) - math.pi
    assert difference.abs().max() < math.radians(5)
    # the template's silhouette starts at INITIAL_SILHOUETTE_RADIUS of the crop's half width
    torch.testing.assert_close(
        output.scale * 0.5, torch.full((2, 8), INITIAL_SILHOUETTE_RADIUS), atol=0.05, rtol=0
    )
    assert output.translation.abs().max() < 0.1


def test_cameras_pick_hypotheses_item_major(model: AdaptiveFlowModel, output: AdaptiveFlowOutput) -> None:
    every = model.all_cameras(output)
    assert every.batch_size == 16
    hypothesis = torch.tensor([5, 2])
    chosen = model.camera(output, hypothesis)
    assert chosen.batch_size == 2
    for b, h in enumerate(hypothesis.tolist()):
        for name, value in chosen.tensors().items():
            assert torch.equal(value[b], every.tensors()[name][b * 8 + h]), name
        assert torch.equal(every.weak.rotation[b * 8 + h], output.rotation[b, h])
    points = every.project(model.template_vertices)  # (B * H, V, 3)
    assert points.shape == (16, 642, 3)
    with pytest.raises(ValueError, match="long tensor"):
        model.camera(output, torch.tensor([0.0, 1.0]))


def test_encoder_weights_module_is_used() -> None:
    resnet = torchvision.models.resnet18(weights=None)
    model = AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=SIZE), encoder_weights=resnet)
    assert model.encoder.conv1.weight is resnet.conv1.weight
    assert "encoder.layer4.1.bn2.running_var" in model.state_dict()
    with pytest.raises(TypeError, match="torchvision ResNet"):
        AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=SIZE), encoder_weights=torch.nn.Linear(2, 2))


def test_symmetrize_flow_copies_mirror_columns() -> None:
    flow = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32).view(2, 3, 4, 2)
    symmetric = symmetrize_flow(flow)
    assert torch.equal(symmetric[:, :, 2:], flow[:, :, 2:])
    assert torch.equal(symmetric[:, :, 0], flow[:, :, 3]) and torch.equal(symmetric[:, :, 1], flow[:, :, 2])


def _texel_centre_flow(rows: range, columns: range, size: int) -> torch.Tensor:
    """grid_sample coordinates (1, len(rows), len(columns), 2) of pixel centres (align_corners=False)."""
    y = (2 * torch.tensor(rows, dtype=torch.float32) + 1) / size - 1
    x = (2 * torch.tensor(columns, dtype=torch.float32) + 1) / size - 1
    grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)[None]


def test_variance_gives_flow_a_gradient_in_uniform_regions(model: AdaptiveFlowModel) -> None:
    """Eq. 24-26: bilinear sampling at texel centres of a constant region has zero gradient w.r.t. the
    sample position; sampling ``image * I_var`` (eq. 27-30) with a non-constant I_var does not."""
    torch.manual_seed(7)
    image = torch.rand(1, 3, SIZE, SIZE)
    image[:, :, 16:48, 16:48] = torch.tensor([0.2, 0.5, 0.3])[:, None, None]  # uniform region
    with torch.no_grad():
        output = model(image)
    assert output.variance is not None and output.variance[:, :, 16:48, 16:48].std() > 0
    target = torch.full((1, 8, 8, 3), 0.9)  # != the region's colour: the loss wants to move

    def flow_gradient(variance: torch.Tensor | None) -> torch.Tensor:
        flow = _texel_centre_flow(range(20, 28), range(24, 32), SIZE).requires_grad_(True)
        texture = model.texture(image, replace(output, flow=flow, variance=variance))
        ((texture - target) ** 2).sum().backward()
        assert flow.grad is not None
        return flow.grad

    plain = flow_gradient(None)
    assert torch.count_nonzero(plain) == 0
    adaptive = flow_gradient(output.variance)
    assert (adaptive.abs().sum(dim=-1) > 0).all()  # every texel gets a gradient
    # the function the model's texture path uses gives the same
    flow = _texel_centre_flow(range(20, 28), range(24, 32), SIZE)
    torch.testing.assert_close(
        sample_texture(image, flow, output.variance),
        model.texture(image, replace(output, flow=flow)),
        rtol=0,
        atol=0,
    )


def test_sample_texture_checks_shapes() -> None:
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="flow must have shape"):
        sample_texture(image, torch.zeros(1, 4, 4, 3))
    with pytest.raises(ValueError, match="variance must have shape"):
        sample_texture(image, torch.zeros(1, 4, 4, 2), torch.ones(1, 2, 8, 8))
    torch.testing.assert_close(
        sample_texture(image, torch.zeros(1, 4, 4, 2), torch.full((1, 1, 8, 8), 2.0)),
        2 * sample_texture(image, torch.zeros(1, 4, 4, 2)),
    )
