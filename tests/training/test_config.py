"""training.config: defaults and docs in one place, dict round trips, overrides, presets, CLI, schedules."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    apply_preset,
    available_presets,
    build_parser,
    config_from_args,
    config_from_dict,
    field_docs,
    lr_factor,
    parse_config,
)


@dataclass(frozen=True)
class WidgetModel:
    """A stand-in for a backend model config."""

    width: int = 4
    """Channels."""

    encoder: str = "conv"
    """Encoder kind."""


@dataclass(frozen=True)
class WidgetConfig(TrainConfig):
    """A method's config: the shared fields plus its model and data."""

    model: WidgetModel = field(default_factory=WidgetModel)
    """Network hyper-parameters."""

    categories: tuple[str, ...] = ("bird",)
    """Categories to train on."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "wide": {"model.width": 64, "lr": 3e-4},
        "smoke": {"iterations": 3},  # replaces the base preset of that name
    }


def test_every_field_has_a_docstring() -> None:
    docs = field_docs(TrainConfig)
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(docs.get(name) for name in names), [n for n in names if not docs.get(n)]
    assert docs["lr_schedule"].startswith("Learning-rate schedule: constant; step")
    assert field_docs(WidgetConfig)["model"] == "Network hyper-parameters."


def test_dict_round_trip_is_json() -> None:
    config = WidgetConfig(lr=3e-4, lr_milestones=(150_000, 250_000), model=WidgetModel(width=8))
    data = json.loads(json.dumps(config.to_dict()))
    assert data["model"] == {"width": 8, "encoder": "conv"}
    assert data["lr_milestones"] == [150_000, 250_000]
    assert WidgetConfig.from_dict(data) == config
    assert WidgetConfig.from_dict({"model": {"encoder": "resnet"}}).model == WidgetModel(encoder="resnet")


def test_unknown_keys_and_bad_values_are_clear_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) learning_rate for TrainConfig; valid keys: .*lr,"
    ):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) model.depth for WidgetModel; valid keys: encoder, width"
    ):
        WidgetConfig.from_dict({"model": {"depth": 3}})
    with pytest.raises(ConfigError, match="batch_size: expected an integer, got '8'"):
        TrainConfig.from_dict({"batch_size": "8"})
    with pytest.raises(ConfigError, match="precision: 'fp8' is not one of 'fp32', 'fp16', 'bf16'"):
        TrainConfig.from_dict({"precision": "fp8"})
    with pytest.raises(ConfigError, match="device 'gpu' is not one of auto, cpu, cuda, mps or cuda:N"):
        TrainConfig(device="gpu")
    with pytest.raises(ConfigError, match="lr_milestones must be increasing"):
        TrainConfig(lr_milestones=(10, 5))
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        TrainConfig(batch_size=0)
    assert TrainConfig(device="cuda:1").device == "cuda:1"


def test_overrides_by_dotted_key_from_text_or_values() -> None:
    config = apply_overrides(
        WidgetConfig(),
        ["lr=3e-4", "lr_milestones=150000,250000", "betas=[0.5, 0.9]", "model.width=16", "tensorboard=false",
         "categories=bird,car", "model={\"encoder\": \"resnet\"}"],
    )  # fmt: skip
    assert config.lr == 3e-4 and config.lr_milestones == (150_000, 250_000) and config.betas == (0.5, 0.9)
    assert config.model == WidgetModel(width=4, encoder="resnet")  # the later whole-model value wins
    assert config.tensorboard is False and config.categories == ("bird", "car")
    assert apply_overrides(config, {"model.width": 5}).model.width == 5
    with pytest.raises(
        ConfigError,
        match=r"unknown config key 'model.depth' for WidgetConfig; valid keys here: encoder, width",
    ):
        apply_overrides(config, ["model.depth=3"])
    with pytest.raises(ConfigError, match="is not of the form key=value"):
        apply_overrides(config, ["lr"])
    with pytest.raises(ConfigError, match="betas: expected 2 values, got 3"):
        apply_overrides(config, ["betas=1,2,3"])


def test_presets_merge_along_the_class_hierarchy() -> None:
    assert set(available_presets(WidgetConfig)) == {"smoke", "wide"}
    assert apply_preset(WidgetConfig(), "smoke").iterations == 3
    assert apply_preset(TrainConfig(), "smoke").iterations == 20
    wide = apply_preset(WidgetConfig(), "wide")
    assert wide.model.width == 64 and wide.lr == 3e-4
    with pytest.raises(ConfigError, match="unknown preset 'paper'; available: smoke, wide"):
        apply_preset(WidgetConfig(), "paper")


def test_command_line_precedence(tmp_path: Path) -> None:
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(WidgetConfig(lr=1.0, batch_size=32, seed=5).to_dict()))
    parser = build_parser(WidgetConfig, prog="train-widget")
    args = parser.parse_args(
        ["--config", str(saved), "--preset", "wide", "--batch-size", "16", "--model.encoder", "resnet",
         "--lr-milestones", "10,20", "--set", "lr=0.5", "--set", "model.width=7"]
    )  # fmt: skip
    config = config_from_args(WidgetConfig, args)
    assert config.seed == 5  # from the file
    assert config.batch_size == 16  # flag over file
    assert config.lr == 0.5 and config.model.width == 7  # --set over preset
    assert config.model.encoder == "resnet" and config.lr_milestones == (10, 20)
    text = " ".join(parser.format_help().split())
    assert "--model.width" in text and "--lr-schedule" in text and "Learning-rate schedule" in text
    assert "available: smoke, wide" in text


def test_parse_config_reports_bad_input_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_config(WidgetConfig, ["--preset", "smoke"]).iterations == 3
    with pytest.raises(SystemExit) as exit_info:
        parse_config(WidgetConfig, ["--set", "lr=fast"])
    assert exit_info.value.code == 2
    assert "lr: expected a number, got 'fast'" in capsys.readouterr().err


def test_config_from_dict_works_on_any_dataclass() -> None:
    assert config_from_dict(WidgetModel, {"width": 2}) == WidgetModel(width=2)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [1.0, 1.0, 1.0, 1.0]),
        ("step", [1.0, 1.0, 0.3, 0.09]),  # SoftRas: x0.3 at each milestone
        ("inverse", [1.0, 1 / (1 + 100 * 5e-4), 1 / (1 + 150 * 5e-4), 1 / (1 + 300 * 5e-4)]),  # UMR
        ("cosine", [1.0, 0.5 * (1 + math.cos(math.pi / 3)), 0.5 * (1 + math.cos(math.pi / 2)), 0.0]),
    ],
)
def test_learning_rate_schedules(schedule: str, expected: list[float]) -> None:
    config = TrainConfig(lr_schedule=schedule, lr_milestones=(150, 250))  # type: ignore[arg-type]
    steps = [0, 100, 150, 300] if schedule != "step" else [0, 149, 150, 250]
    assert [lr_factor(config, s, 300) for s in steps] == pytest.approx(expected)
