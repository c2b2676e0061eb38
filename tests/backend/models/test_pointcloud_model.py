"""The DPC-style point-cloud network: shapes, the output box, unit quaternions, the encoder's depth,
configurable point counts and the config's round trip and validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backend.models.pointcloud import (
    TEMPLATE_ID,
    PointCloudModel,
    PointCloudModelConfig,
    PointCloudPrediction,
)

SMALL = {"image_size": 32, "num_points": 2000, "channels": 4, "z_dim": 32, "hidden": 32}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_shapes_box_and_unit_quaternions() -> None:
    torch.manual_seed(0)
    model = PointCloudModel(PointCloudModelConfig(**SMALL, pose_candidates=3))
    prediction = model(torch.rand(5, 4, 32, 32))
    assert isinstance(prediction, PointCloudPrediction)
    assert prediction.points.shape == (5, 2000, 3)
    assert prediction.candidates.shape == (5, 3, 4) and prediction.student.shape == (5, 4)
    assert prediction.points.abs().max() <= 0.5
    torch.testing.assert_close(prediction.candidates.norm(dim=-1), torch.ones(5, 3))
    torch.testing.assert_close(prediction.student.norm(dim=-1), torch.ones(5))
    assert (prediction.points[0] - prediction.points[1]).abs().max() > 1e-4  # they depend on the image
    assert TEMPLATE_ID == "point-cloud"


def test_untrained_clouds_spread_over_the_box() -> None:
    torch.manual_seed(0)
    model = PointCloudModel(PointCloudModelConfig(num_points=2000))  # DPC's sizes otherwise
    points = model(torch.rand(2, 4, 64, 64)).points
    assert points.std(dim=1).min() > 0.1  # DPC's decoder initialisation: not collapsed on the centre


def test_points_stay_in_the_box_for_extreme_codes() -> None:
    model = PointCloudModel(PointCloudModelConfig(**SMALL))
    with torch.no_grad():
        model.point_head.weight.mul_(1e4)
    points = model(torch.rand(2, 4, 32, 32)).points
    assert points.abs().max() <= 0.5 and points.isfinite().all()


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(1)
    model = PointCloudModel(PointCloudModelConfig(**SMALL))
    prediction = model(torch.rand(2, 4, 32, 32))
    loss = (
        prediction.points.square().sum()
        + prediction.candidates[..., 1].sum()
        + prediction.student[:, 2].sum()
    )
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(("size", "convolutions"), [(8, 1), (32, 5), (64, 7), (128, 9)])
def test_encoder_reaches_four_by_four(size: int, convolutions: int) -> None:
    config = PointCloudModelConfig(**{**SMALL, "image_size": size})
    model = PointCloudModel(config)
    convs = [m for m in model.convolutions.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == convolutions  # DPC at 128: 9 convolutions
    assert convs[-1].out_channels == 4 * 2**config.num_blocks
    grid = model.convolutions(torch.rand(1, 4, size, size))
    assert grid.shape[-2:] == (4, 4)


@pytest.mark.parametrize("count", [2000, 8000, 16000])
def test_point_count_is_configurable(count: int) -> None:
    model = PointCloudModel(PointCloudModelConfig(**{**SMALL, "num_points": count}))
    assert model(torch.rand(1, 4, 32, 32)).points.shape == (1, count, 3) and model.num_points == count


def test_config_round_trip_and_errors() -> None:
    config = PointCloudModelConfig(**SMALL, pose_candidates=2)
    assert PointCloudModelConfig.model_validate(config.model_dump(mode="json")) == config
    default = PointCloudModelConfig()
    assert (default.image_size, default.num_points, default.channels) == (64, 8000, 16)
    assert (default.z_dim, default.hidden, default.pose_candidates) == (1024, 1024, 4)
    with pytest.raises(ValueError, match=r"unknown config key\(s\) depth for PointCloudModelConfig"):
        PointCloudModelConfig.model_validate({"num_points": 2000, "depth": 3})
    for bad in (1999, 16001):
        with pytest.raises(ValueError, match=r"num_points must lie in 2000\.\.16000"):
            PointCloudModelConfig(num_points=bad)
    with pytest.raises(ValueError, match="power of two"):
        PointCloudModelConfig(image_size=48)
    with pytest.raises(ValueError, match="pose_candidates must be positive"):
        PointCloudModelConfig(pose_candidates=0)


def test_wrong_input_is_refused() -> None:
    model = PointCloudModel(PointCloudModelConfig(**SMALL))
    with pytest.raises(ValueError, match=r"expected RGBA images \(B, 4, 32, 32\)"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="expected RGBA images"):
        model(torch.rand(1, 4, 64, 64))
