"""Training configs stored by checkpoints written before the pydantic configs (tests/data/checkpoints_v1)
parse to today's config models unchanged, and a run resumes from such a checkpoint's training state with
its configuration read back from the checkpoint's JSON (``--config``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backend.checkpoints import load_checkpoint
from training.adaptive_flow import AdaptiveFlowTrainConfig
from training.checkpointing import read_state_document
from training.cli import main as train_main
from training.config import TrainConfig
from training.datasets.synthetic import SyntheticConfig, generate
from training.pointcloud_poisson import PointCloudTrainConfig
from training.softras import SoftRasTrainConfig
from training.texture_completion import TextureCompletionTrainConfig

V1 = Path(__file__).resolve().parents[1] / "data" / "checkpoints_v1"

CONFIGS: dict[str, type[TrainConfig]] = {
    "softras": SoftRasTrainConfig,
    "adaptive-flow": AdaptiveFlowTrainConfig,
    "pointcloud-poisson": PointCloudTrainConfig,
    "pointcloud-texture": TextureCompletionTrainConfig,
}


def v1_config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((V1 / f"{name}.json").read_text())["config"]
    return config


@pytest.mark.parametrize("name", list(CONFIGS))
def test_v1_training_configs_parse_unchanged(name: str) -> None:
    data = v1_config(name)
    config = CONFIGS[name].model_validate(data)
    assert config.model_dump(mode="json") == data  # every field kept, with its value; none added
    assert list(config.model_dump(mode="json")) == list(data)


def test_v1_training_state_carries_a_config_that_parses() -> None:
    document, _ = read_state_document(V1 / "pointcloud-poisson-step2.state.json")
    assert document["step"] == 2
    config = PointCloudTrainConfig.model_validate(document["extra"]["config"])
    assert config == PointCloudTrainConfig.model_validate(v1_config("pointcloud-poisson"))


def test_a_run_resumes_from_a_v1_checkpoint_with_its_saved_config(tmp_path: Path) -> None:
    data = tmp_path / "shapenet"
    generate(
        data,
        SyntheticConfig(
            category="bird", n=4, layout="shapenet", views=4, size=32, seed=3,
            splits=(("train", 0.5), ("val", 0.5)),
        ),
    )  # fmt: skip
    out = tmp_path / "resumed"
    state = V1 / "pointcloud-poisson-step2.state.json"
    status = train_main([
        "pointcloud-poisson", "--config", str(V1 / "pointcloud-poisson.json"), "--data", str(data),
        "--out", str(out), "--resume", str(state), "--iterations", "3", "--checkpoint-every", "0",
    ])  # fmt: skip
    assert status == 0
    final = load_checkpoint(out / "pointcloud-poisson", method="pointcloud-poisson", template="point-cloud")
    assert final.meta.step == 3  # steps 1-2 came from the v1 state
    expected = {**v1_config("pointcloud-poisson"), "data": str(data), "out": str(out), "resume": str(state)}
    assert final.meta.config == {**expected, "iterations": 3, "checkpoint_every": 0}
