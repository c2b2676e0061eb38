"""Training ``texture-completion`` on tiny synthetic crops: the masked L1, the one-optimiser split of
gradients between the two players, a falling L1, and a checkpoint the backend loads; the CLI. The holes
are tested in tests/training/datasets/test_holes.py, the GAN losses in
tests/training/losses/test_adversarial.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Subset, default_collate

from backend.methods.checkpointed import load_method_network
from backend.models.texture_completion import (
    TEXTURE_METHOD,
    TEXTURE_TEMPLATE,
    TextureGenerator,
    TextureGeneratorConfig,
    complete_texture,
)
from training.cli import main as train_main
from training.config import ConfigError, apply_overrides, apply_preset
from training.datasets.synthetic import SyntheticConfig, generate
from training.texture_completion import (
    TextureCompletionNetwork,
    TextureCompletionTrainConfig,
    TextureCompletionTraining,
    datasets,
    masked_l1,
    run,
)

TINY = [
    "model.image_size=32", "model.base_channels=8", "model.depth=3", "model.working_size=64",
    "discriminator_channels=8", "discriminator_layers=2", "batch_size=4", "lr=1e-3", "eval_every=0",
    "image_every=0", "checkpoint_every=0", "log_every=2", "device=cpu", "progress=false",
    "tensorboard=false", "pretrained=none",
]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    generate(
        root, SyntheticConfig(category="bird", n=10, layout="folder", size=32, seed=2, background="noise")
    )
    return root


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cub")
    generate(
        root,
        SyntheticConfig(
            category="bird", n=8, layout="cub", size=32, seed=4, splits=(("train", 0.75), ("val", 0.25))
        ),
    )
    return root


def tiny_config(data: Path, out: Path, *extra: str) -> TextureCompletionTrainConfig:
    return apply_overrides(TextureCompletionTrainConfig(data=str(data)), [*TINY, f"out={out}", *extra])


# -- losses -----------------------------------------------------------------------------------------------
def test_masked_l1() -> None:
    output, target = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    weight = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    target[0, :, 1, 1] = 5.0  # outside the weight: ignored
    assert float(masked_l1(output, target, weight)) == 1.0
    assert float(masked_l1(output, target, torch.zeros_like(weight))) == 0.0


# -- the method ---------------------------------------------------------------------------------------------
def test_one_backward_gives_each_player_its_own_gradient(folder: Path, tmp_path: Path) -> None:
    config = tiny_config(folder, tmp_path)
    method = TextureCompletionTraining(config)
    torch.manual_seed(0)
    model = method.build_model()
    assert isinstance(model, TextureCompletionNetwork) and model.discriminator is not None
    train_set, _ = datasets(config)
    batch = default_collate([train_set[i] for i in range(4)])
    losses = method.training_step(model, batch, step=3)
    losses["loss"].backward()
    generator_grads = [p.grad.clone() for p in model.generator.parameters()]  # type: ignore[union-attr]
    critic_grads = [p.grad.clone() for p in model.discriminator.parameters()]  # type: ignore[union-attr]
    # the same step again (same holes), each player's own objective differentiated alone
    again = method.training_step(model, batch, step=3)
    assert torch.equal(again["loss"], losses["loss"])
    own = config.l1_weight * again["l1"] + config.gan_weight * again["gan"]
    expected = torch.autograd.grad(own, list(model.generator.parameters()), retain_graph=True)
    for got, want in zip(generator_grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    critic = config.gan_weight * again["discriminator"]
    expected = torch.autograd.grad(critic, list(model.discriminator.parameters()))
    for got, want in zip(critic_grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    optimizer = method.configure_optimizer(model, apply_overrides(config, ["discriminator_lr_factor=0.5"]))
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3, 5e-4]


def test_a_few_steps_lower_the_l1_on_a_fixed_batch(folder: Path, tmp_path: Path) -> None:
    config = tiny_config(folder, tmp_path, "gan_weight=0.5")
    method = TextureCompletionTraining(config)
    torch.manual_seed(0)
    model = method.build_model()
    optimizer = method.configure_optimizer(model, config)
    train_set, _ = datasets(config)
    batch = default_collate([train_set[i] for i in range(4)])

    def fixed_l1() -> float:
        with torch.no_grad():
            drawn = method.draw(4, 32, torch.Generator().manual_seed(5), torch.device("cpu"))
            completion = method.complete(model, batch["image"], batch["mask"], drawn)
            return float(masked_l1(completion.output, batch["image"], completion.hidden))

    before = fixed_l1()
    for step in range(30):
        losses = method.training_step(model, batch, step)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    after = fixed_l1()
    assert after < 0.6 * before, (before, after)


def test_evaluation_holes_do_not_depend_on_the_batch_size(folder: Path, tmp_path: Path) -> None:
    method = TextureCompletionTraining(tiny_config(folder, tmp_path))
    torch.manual_seed(0)
    model = method.build_model().eval()
    items = Subset(datasets(method.config)[0], range(4))
    one = method.evaluate(model, DataLoader(items, batch_size=1))
    three = method.evaluate(model, DataLoader(items, batch_size=3))
    assert one.keys() == {"l1", "psnr", "l1_mean_fill"}
    for name in one:
        assert one[name] == pytest.approx(three[name], rel=1e-5)
    assert one["l1"] > 0 and math.isfinite(one["psnr"])


def test_run_writes_a_generator_checkpoint_the_backend_loads(folder: Path, tmp_path: Path) -> None:
    config = tiny_config(folder, tmp_path / "run", "iterations=6", "image_every=6", "model.noise=true")
    result = run(config)
    assert result.checkpoint is not None and result.checkpoint.name == "texture-completion.safetensors"
    metrics = result.metrics
    assert 0 < metrics["l1"] < 1 and math.isfinite(metrics["psnr"]) and 0 < metrics["l1_mean_fill"] < 1
    assert "fid" not in metrics  # pretrained=none: no Inception
    saved = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert saved["method"] == TEXTURE_METHOD and saved["template"] == TEXTURE_TEMPLATE
    assert saved["config"]["model"] == config.model.model_dump(mode="json") and saved["step"] == 6
    assert saved["dataset"]["fid"].startswith("skipped") and saved["dataset"]["eval_items"] == 1
    weights = load_file(result.checkpoint)
    assert not any(name.startswith("discriminator") for name in weights)  # training only

    generator, name = load_method_network(
        TEXTURE_METHOD, result.checkpoint, TEXTURE_TEMPLATE, torch.device("cpu"),
        lambda settings: TextureGenerator(TextureGeneratorConfig.model_validate(settings)),
    )  # fmt: skip
    assert name == "texture-completion.safetensors" and generator.config == config.model
    trained: Any = result.model
    for key, value in trained.generator.state_dict().items():
        assert torch.equal(generator.state_dict()[key].cpu(), value.cpu()), key
    colors = np.random.default_rng(0).random((100, 80, 3)).astype(np.float32)
    known = np.zeros((100, 80), bool)
    known[:50] = True
    texture = complete_texture(generator, colors, known, "cpu")
    assert np.array_equal(texture[known], colors[known]) and np.isfinite(texture).all()
    assert (tmp_path / "run" / "report" / "report.md").is_file()


def test_cub_layout_items(cub: Path, tmp_path: Path) -> None:
    config = tiny_config(cub, tmp_path, "layout=cub")
    train_set, eval_set = datasets(config)
    assert eval_set is not None and len(train_set) == 6 and len(eval_set) == 2  # type: ignore[arg-type]
    item = train_set[0]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert tiny_config(cub, tmp_path, "layout=cub", "eval_split=nothing").eval_split == "nothing"
    assert datasets(tiny_config(cub, tmp_path, "layout=cub", "eval_split=nothing"))[1] is None


def test_config_checks_and_presets(folder: Path, tmp_path: Path) -> None:
    cpu = apply_preset(TextureCompletionTrainConfig(), "cpu")
    assert cpu.model.image_size == 64 and cpu.discriminator_layers == 2
    assert apply_preset(TextureCompletionTrainConfig(), "paper") == TextureCompletionTrainConfig()
    with pytest.raises(ConfigError, match="PatchGAN"):
        tiny_config(folder, tmp_path, "discriminator_layers=4")
    with pytest.raises(ConfigError, match="nothing would train"):
        tiny_config(folder, tmp_path, "l1_weight=0", "gan_weight=0")
    with pytest.raises(FileNotFoundError, match="split folders"):
        datasets(tiny_config(folder, tmp_path, "train_split=training"))
    with pytest.raises(ValueError, match="no data folder"):
        datasets(TextureCompletionTrainConfig())
    # without the GAN term there is no discriminator (every parameter gets a gradient, as DDP needs)
    l1_only = TextureCompletionTraining(tiny_config(folder, tmp_path, "gan_weight=0"))
    model = l1_only.build_model()
    assert isinstance(model, TextureCompletionNetwork) and model.discriminator is None
    assert len(l1_only.configure_optimizer(model, l1_only.config).param_groups) == 1
    batch = default_collate([datasets(l1_only.config)[0][i] for i in range(2)])
    assert "gan" not in l1_only.training_step(model, batch, 0)


def test_cli_trains_with_the_cpu_preset(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    status = train_main([
        "texture-completion", "--data", str(folder), "--out", str(out), "--preset", "cpu",
        "--iterations", "2", "--batch-size", "2", "--device", "cpu", "--progress", "false",
        "--tensorboard", "false", "--pretrained", "none", "--eval-every", "0", "--image-every", "0",
        "--checkpoint-every", "0", "--set", "model.image_size=32", "--set", "model.depth=3",
    ])  # fmt: skip
    assert status == 0
    saved = json.loads((out / "texture-completion.json").read_text())
    assert saved["method"] == TEXTURE_METHOD and saved["step"] == 2
    assert saved["config"]["model"]["base_channels"] == 16 and saved["config"]["model"]["image_size"] == 32
    assert train_main(["texture-completion", "--out", str(tmp_path / "x")]) == 2  # no --data


def test_the_former_command_name_still_runs_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main(["pointcloud-texture", "--out", str(tmp_path / "x")]) == 2  # no --data, as the new name
    captured = capsys.readouterr()
    assert "'pointcloud-texture' is deprecated" in captured.err and "'texture-completion'" in captured.err
    assert "mono2mesh-train texture-completion: error" in captured.out


def test_the_composed_loss_is_the_hand_written_sum(folder: Path, tmp_path: Path) -> None:
    """training.losses.compose adds the terms as the trainer did by hand: bit for bit the same total."""
    config = tiny_config(folder, tmp_path, "l1_weight=7", "gan_weight=0.5")
    method = TextureCompletionTraining(config)
    torch.manual_seed(0)
    model = method.build_model()
    train_set, _ = datasets(config)
    losses = method.training_step(model, default_collate([train_set[i] for i in range(4)]), step=1)
    expected = 7.0 * losses["l1"] + 0.5 * (losses["gan"] + losses["discriminator"])
    assert torch.equal(losses["loss"], expected)
