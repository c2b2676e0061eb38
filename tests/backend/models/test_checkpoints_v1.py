"""Checkpoints written before the pydantic configs (tests/data/checkpoints_v1, SOURCE.md there) still load:
their ``config["model"]`` parses to today's model configs unchanged, and the backend rebuilds and loads
the networks through ``load_method_network`` and the method registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.config import Config
from backend.methods.checkpointed import load_method_network
from backend.methods.registry import create_method
from backend.models.adaptive_flow import AdaptiveFlowModel, AdaptiveFlowModelConfig
from backend.models.pointcloud import PointCloudModel, PointCloudModelConfig
from backend.models.softras import SoftRasModel, SoftRasModelConfig
from backend.models.texture_completion import (
    TEXTURE_METHOD,
    TEXTURE_TEMPLATE,
    TextureGeneratorConfig,
    build_texture_generator,
)

V1 = Path(__file__).resolve().parents[2] / "data" / "checkpoints_v1"
CPU = torch.device("cpu")

MODELS: dict[str, tuple[type[Config], Any]] = {
    "softras": (SoftRasModelConfig, SoftRasModel),
    "adaptive-flow": (AdaptiveFlowModelConfig, AdaptiveFlowModel),
    "pointcloud-poisson": (PointCloudModelConfig, PointCloudModel),
    "pointcloud-texture": (TextureGeneratorConfig, build_texture_generator),
}


def v1_document(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((V1 / f"{name}.json").read_text())
    return document


@pytest.mark.parametrize("name", list(MODELS))
def test_v1_model_settings_parse_to_the_same_config(name: str) -> None:
    settings = v1_document(name)["config"]["model"]
    config_class, _ = MODELS[name]
    config = config_class.model_validate(settings)
    assert config.model_dump(mode="json") == settings  # same fields, same values, nothing added
    assert list(config.model_dump(mode="json")) == list(settings)  # and in the same order


def test_a_v1_pointcloud_checkpoint_loads_through_the_registry() -> None:
    path = V1 / "pointcloud-poisson.safetensors"
    network, name = load_method_network(
        "pointcloud-poisson", path, "point-cloud", CPU,
        lambda settings: PointCloudModel(PointCloudModelConfig.model_validate(settings)),
    )  # fmt: skip
    assert name == "pointcloud-poisson.safetensors"
    assert network.config == PointCloudModelConfig(
        image_size=16, num_points=2000, channels=1, z_dim=1, hidden=2, pose_candidates=2
    )
    weights = load_file(str(path))
    for key, value in network.state_dict().items():
        assert torch.equal(value, weights[key]), key
    method = create_method("pointcloud-poisson", "cpu", checkpoint=str(path))
    assert method.network.config == network.config  # type: ignore[attr-defined]
    with torch.no_grad():
        assert method.network(torch.rand(1, 4, 16, 16)).points.shape == (1, 2000, 3)  # type: ignore[attr-defined]


def test_a_v1_texture_generator_checkpoint_loads_under_its_old_method_name() -> None:
    generator, name = load_method_network(
        TEXTURE_METHOD, V1 / "pointcloud-texture.safetensors", TEXTURE_TEMPLATE, CPU, build_texture_generator
    )
    assert name == "pointcloud-texture.safetensors"
    assert generator.config == TextureGeneratorConfig(
        image_size=16, base_channels=2, depth=2, working_size=16
    )
    weights = load_file(str(V1 / "pointcloud-texture.safetensors"))
    assert all(torch.equal(value, weights[key]) for key, value in generator.state_dict().items())


@pytest.mark.parametrize(
    ("name", "template"), [("softras", "icosphere-642"), ("adaptive-flow", "icosphere-642")]
)
def test_v1_metadata_rebuilds_the_network_the_backend_loads(name: str, template: str, tmp_path: Path) -> None:
    """softras and adaptive-flow keep only their metadata (their weights are tens of MB): weights of the
    network that metadata describes, saved under the v1 metadata, load through the registry."""
    document = v1_document(name)
    config_class, build = MODELS[name]
    torch.manual_seed(0)
    network = build(config_class.model_validate(document["config"]["model"]))
    meta = CheckpointMeta(
        method=document["method"], template=template, config=document["config"], step=document["step"]
    )
    path = save_checkpoint(tmp_path / name, network.state_dict(), meta)
    method = create_method(name, "cpu", checkpoint=str(path))
    loaded = method.network  # type: ignore[attr-defined]
    assert loaded.config == network.config
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
