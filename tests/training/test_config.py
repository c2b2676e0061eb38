"""training.config on backend.config: defaults and docs in one place, dict round trips, overrides, presets
(validated at import), CLI, schedules."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from backend.config import Config
from training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    apply_preset,
    available_presets,
    build_parser,
    config_from_args,
    lr_factor,
    parse_config,
)


class WidgetModel(Config):
    """A stand-in for a backend model config."""

    width: int = 4
    """Channels."""

    encoder: str = "conv"
    """Encoder kind."""


class WidgetConfig(TrainConfig):
    """A method's config: the shared fields plus its model and data."""

    model: WidgetModel = WidgetModel()
    """Network hyper-parameters."""

    categories: tuple[str, ...] = ("bird",)
    """Categories to train on."""


WidgetConfig.PRESETS = {
    "wide": WidgetConfig(model=WidgetModel(width=64), lr=3e-4),
    "smoke": WidgetConfig(iterations=3),  # replaces the base preset of that name
}


def test_every_field_has_a_docstring() -> None:
    docs = {name: info.description for name, info in TrainConfig.model_fields.items()}
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]
    assert " ".join(str(docs["lr_schedule"]).split()).startswith("Learning-rate schedule: constant; step")
    assert WidgetConfig.model_fields["model"].description == "Network hyper-parameters."


def test_dict_round_trip_is_json() -> None:
    config = WidgetConfig(lr=3e-4, lr_milestones=(150_000, 250_000), model=WidgetModel(width=8))
    data = json.loads(json.dumps(config.model_dump(mode="json")))
    assert data["model"] == {"width": 8, "encoder": "conv"}
    assert data["lr_milestones"] == [150_000, 250_000]
    assert WidgetConfig.model_validate(data) == config
    assert WidgetConfig.model_validate({"model": {"encoder": "resnet"}}).model == WidgetModel(
        encoder="resnet"
    )


def test_unknown_keys_and_bad_values_are_clear_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) learning_rate for TrainConfig; valid keys: .*lr,"
    ):
        TrainConfig.model_validate({"learning_rate": 1})
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) model.depth for WidgetModel; valid keys: encoder, width"
    ):
        WidgetConfig.model_validate({"model": {"depth": 3}})
    with pytest.raises(ConfigError, match=r"batch_size: Input should be a valid integer.*\(got 'eight'\)"):
        TrainConfig.model_validate({"batch_size": "eight"})
    with pytest.raises(
        ConfigError, match="precision: Input should be 'fp32', 'fp16' or 'bf16' \\(got 'fp8'\\)"
    ):
        TrainConfig.model_validate({"precision": "fp8"})
    with pytest.raises(ConfigError, match="device 'gpu' is not one of auto, cpu, cuda, mps or cuda:N"):
        TrainConfig(device="gpu")
    with pytest.raises(ConfigError, match="lr_milestones must be increasing"):
        TrainConfig(lr_milestones=(10, 5))
    with pytest.raises(ConfigError, match="batch_size must be positive"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"model.width: Input should be a valid integer"):
        WidgetConfig(model={"width": "wide"})  # type: ignore[arg-type]
    assert TrainConfig(device="cuda:1").device == "cuda:1"
    assert issubclass(ConfigError, ValueError)


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
    with pytest.raises(ConfigError, match="betas: Tuple should have at most 2 items"):
        apply_overrides(config, ["betas=1,2,3"])


def test_presets_merge_along_the_class_hierarchy() -> None:
    assert set(available_presets(WidgetConfig)) == {"smoke", "wide"}
    assert apply_preset(WidgetConfig(), "smoke").iterations == 3
    assert apply_preset(TrainConfig(), "smoke").iterations == 20
    wide = apply_preset(WidgetConfig(model=WidgetModel(encoder="resnet")), "wide")
    assert wide.model.width == 64 and wide.lr == 3e-4
    assert wide.model.encoder == "resnet"  # a nested preset sets only its own fields
    with pytest.raises(ConfigError, match="unknown preset 'paper'; available: smoke, wide"):
        apply_preset(WidgetConfig(), "paper")


def test_a_preset_with_a_bad_key_fails_when_its_module_is_imported(tmp_path: Path) -> None:
    source = tmp_path / "bad_presets.py"
    source.write_text(
        "from training.config import TrainConfig\n\n\n"
        "class BadConfig(TrainConfig):\n    sigma: float = 1.0\n\n\n"
        'BadConfig.PRESETS = {"fast": BadConfig(sigma=2.0, iteratons=5)}\n'
    )
    spec = importlib.util.spec_from_file_location("bad_presets", source)
    assert spec is not None and spec.loader is not None
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) iteratons for BadConfig"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    source.write_text(source.read_text().replace("iteratons=5", "batch_size=0"))
    with pytest.raises(ConfigError, match="batch_size must be positive"):  # values are validated too
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_command_line_precedence(tmp_path: Path) -> None:
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(WidgetConfig(lr=1.0, batch_size=32, seed=5).model_dump(mode="json")))
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


def test_config_file_may_be_a_checkpoint_json(tmp_path: Path) -> None:
    saved = tmp_path / "widget.json"
    config = WidgetConfig(seed=9, model=WidgetModel(width=3))
    saved.write_text(json.dumps({"method": "widget", "config": config.model_dump(mode="json"), "step": 1}))
    assert parse_config(WidgetConfig, ["--config", str(saved)]) == config


def test_parse_config_reports_bad_input_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_config(WidgetConfig, ["--preset", "smoke"]).iterations == 3
    with pytest.raises(SystemExit) as exit_info:
        parse_config(WidgetConfig, ["--set", "lr=fast"])
    assert exit_info.value.code == 2
    assert "lr: Input should be a valid number, unable to parse string as a number (got 'fast')" in (
        capsys.readouterr().err
    )


def test_any_config_model_validates_from_a_dict() -> None:
    assert WidgetModel.model_validate({"width": 2}) == WidgetModel(width=2)


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
