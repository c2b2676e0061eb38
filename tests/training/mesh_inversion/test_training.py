"""Pre-training MeshInversion's GAN: each player learns its own objective on a fixed batch, a tiny run writes
a generator-only checkpoint that the backend's ``build_generator`` rebuilds (and that resumes exactly), the
image grid shows samples from several azimuths, and the command with ``--preset cpu`` builds and caches the
pseudo ground truth of a synthetic CUB-layout set and trains on it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import Dataset, Subset, default_collate

from backend.checkpoints import load_checkpoint
from backend.geometry.camera import Camera, axis_angle_to_quaternion
from backend.geometry.templates import uv_sphere_template
from backend.geometry.uv_displacement import UvDisplacement
from backend.models.mesh_inversion import TEMPLATE_ID, MeshGenerator, UvDiscriminator, build_generator
from backend.models.texture_completion import PatchDiscriminator
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from training.cli import main as train_main
from training.config import ConfigError, apply_overrides, apply_preset
from training.datasets.synthetic import SyntheticConfig, generate
from training.mesh_inversion import (
    METHOD,
    MeshInversionNetwork,
    MeshInversionTrainConfig,
    MeshInversionTraining,
    camera_from_vector,
    datasets,
    pseudo_gt_folder,
    run,
)

TINY = [
    "model.z_dim=8", "model.mesh_size=8", "model.texture_size=16", "model.width=4", "image_size=32",
    "uv_discriminator_channels=8", "image_discriminator_channels=8", "batch_size=4", "epochs=0",
    "iterations=4", "eval_items=4", "views=3", "eval_every=0", "image_every=0", "checkpoint_every=0",
    "log_every=1", "device=cpu", "progress=false", "tensorboard=false", "pretrained=none",
]  # fmt: skip


class RenderedPseudoGroundTruth(Dataset[dict[str, torch.Tensor]]):
    """Pseudo-ground-truth items made consistent by construction: smooth symmetric displacement maps of
    the UV sphere, textures of one colour plus noise (the middle half of the columns visible), cameras
    turned about the up axis, and the image and mask rendered from exactly those."""

    def __init__(self, count: int, map_size: int, texture_size: int, image_size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        template = uv_sphere_template()
        mapping = UvDisplacement(template, map_size)
        self.items: list[dict[str, torch.Tensor]] = []
        for _ in range(count):
            coarse = torch.randn(1, 3, 4, 4, generator=generator, device="cpu") * 0.15
            smooth = F.interpolate(coarse, size=(map_size, map_size), mode="bilinear", align_corners=False)
            displacement = mapping.symmetrize(smooth)  # (1, 3, M, M)
            colour = torch.rand(3, 1, 1, generator=generator, device="cpu")
            noise = torch.randn(3, texture_size, texture_size, generator=generator, device="cpu")
            texture = (colour + 0.1 * noise).clamp(0, 1)  # (3, T, T)
            visible = torch.zeros(1, texture_size, texture_size, device="cpu")
            visible[..., texture_size // 4 : 3 * texture_size // 4] = 1
            angle = torch.rand(1, generator=generator, device="cpu") * 2 * math.pi
            rotation = axis_angle_to_quaternion(torch.tensor([[0.0, 1.0, 0.0]], device="cpu"), angle)[0]
            camera = torch.cat([torch.tensor([0.6, 0.0, 0.0], device="cpu"), rotation])  # (7,)
            images = render(
                mapping.vertices(displacement), template.mesh.faces, camera_from_vector(camera[None]),
                RasterSettings(image_size=image_size, soft=False), uvs=template.mesh.uvs,
                face_uvs=template.mesh.face_uvs, texture=texture.permute(1, 2, 0)[None],
            )  # fmt: skip
            self.items.append({
                "displacement": displacement[0], "texture": texture, "texture_mask": visible,
                "camera": camera, "image": images.rgb[0].permute(2, 0, 1),
                "mask": images.alpha[0].permute(2, 0, 1),
            })  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


@pytest.fixture(scope="module")
def pseudo_gt() -> RenderedPseudoGroundTruth:
    return RenderedPseudoGroundTruth(8, map_size=8, texture_size=16, image_size=32)


@pytest.fixture(scope="module")
def birds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("birds")
    generate(
        root,
        SyntheticConfig(category="bird", n=4, layout="cub", size=64, seed=3, splits=(("train", 1.0),)),
    )  # fmt: skip
    return root


def tiny_config(out: Path, *extra: str) -> MeshInversionTrainConfig:
    return apply_overrides(MeshInversionTrainConfig(), [*TINY, f"out={out}", *extra])


def history(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def optimise_one_player(
    method: MeshInversionTraining, model: MeshInversionNetwork, batch: dict[str, Any], player: str, steps: int
) -> list[dict[str, float]]:
    """``steps`` steps on one batch with the same latent codes, only ``player``'s group (0 generator,
    1 discriminators) learning; the losses of every step, before its update."""
    optimizer = method.configure_optimizer(model, method.config)  # groups: generator, discriminators
    generator_group, critic_group = optimizer.param_groups
    generator_group["lr"] = 1e-3 if player == "generator" else 0.0
    critic_group["lr"] = 1e-3 if player == "discriminators" else 0.0
    logged = []
    for step in range(steps):
        torch.manual_seed(1234)  # the same z at every step: a fixed batch
        losses = method.training_step(model, batch, step)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        logged.append({name: float(value.detach()) for name, value in losses.items()})
    return logged


def test_each_player_descends_its_own_objective_on_a_fixed_batch(
    pseudo_gt: RenderedPseudoGroundTruth, tmp_path: Path
) -> None:
    method = MeshInversionTraining(tiny_config(tmp_path))
    torch.manual_seed(0)
    model = method.build_model()
    assert isinstance(model, MeshInversionNetwork)
    batch = default_collate([pseudo_gt[i] for i in range(4)])
    # the discriminators alone: both discriminator losses fall, real and fake scores separate
    critic = optimise_one_player(method, model, batch, "discriminators", 16)
    for name in ("uv_discriminator", "image_discriminator"):
        values = [step[name] for step in critic]
        assert sum(values[-4:]) < 0.75 * sum(values[:4]), values  # Adam with beta1 = 0 is noisy
    assert critic[-1]["d_uv_real"] - critic[-1]["d_uv_fake"] > critic[0]["d_uv_real"] - critic[0]["d_uv_fake"]
    assert critic[-1]["d_image_real"] > critic[-1]["d_image_fake"]
    # then the generator alone against those discriminators: both generator losses fall
    generated = optimise_one_player(method, model, batch, "generator", 16)
    for name in ("uv_gan", "image_gan"):
        values = [step[name] for step in generated]
        assert sum(values[-4:]) < 0.5 * sum(values[:4]), values
    # fooling the frozen discriminators raises their loss
    assert generated[-1]["uv_discriminator"] > generated[0]["uv_discriminator"]


def test_the_loss_is_the_weighted_sum_of_the_terms(
    pseudo_gt: RenderedPseudoGroundTruth, tmp_path: Path
) -> None:
    method = MeshInversionTraining(tiny_config(tmp_path, "uv_gan_weight=0.7", "mesh_reg_weight=0.01"))
    torch.manual_seed(0)
    model = method.build_model()
    batch = default_collate([pseudo_gt[i] for i in range(4)])
    losses = method.training_step(model, batch, 0)
    expected = (
        0.7 * losses["uv_gan"] + losses["uv_discriminator"] + 0.2 * losses["image_gan"]
        + losses["image_discriminator"] + 0.01 * losses["mesh_regulariser"]
    )  # fmt: skip
    torch.testing.assert_close(losses["loss"], expected)
    # without the image GAN there is no D_I and no image term (every parameter still gets a gradient)
    no_image = MeshInversionTraining(tiny_config(tmp_path, "image_gan_weight=0"))
    model = no_image.build_model()
    assert isinstance(model, MeshInversionNetwork) and model.image_critic is None
    losses = no_image.training_step(model, batch, 0)
    assert "image_gan" not in losses and "d_image_real" not in losses
    losses["loss"].backward()
    trained = [model.generator, model.uv_critic]
    assert all(p.grad is not None for module in trained for p in module.parameters())


def test_a_tiny_run_writes_a_generator_checkpoint_that_the_backend_rebuilds(
    pseudo_gt: RenderedPseudoGroundTruth, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = tiny_config(out, "image_every=2", "eval_every=2", "checkpoint_every=2")
    result = run(config, pseudo_gt, Subset(pseudo_gt, range(4)))
    assert result.checkpoint == out / "mesh-inversion.safetensors"
    checkpoint = load_checkpoint(result.checkpoint, method=METHOD, template=TEMPLATE_ID)
    assert checkpoint.meta.config["model"] == config.model.model_dump(mode="json")
    generator = build_generator(checkpoint.meta.config["model"])
    generator.load_state_dict(checkpoint.weights)  # strict: exactly the generator, nothing else
    network = result.model
    assert isinstance(network, MeshInversionNetwork) and network.ema is not None
    for name, value in network.ema.state_dict().items():
        torch.testing.assert_close(checkpoint.weights[name], value)  # the moving average is exported
    assert not torch.equal(checkpoint.weights["fc.weight"], network.generator.state_dict()["fc.weight"])
    generator.eval()
    output = generator(generator.sample_latent(2))
    assert output.texture.shape == (2, 3, 16, 16) and generator.mesh(output).num_vertices == 482
    records = history(out)
    train_records = [r for r in records if r["kind"] == "train"]
    assert len(train_records) == 4 and all(math.isfinite(r["loss"]) for r in train_records)
    evaluations = [r for r in records if r["kind"] == "eval"]
    assert evaluations and {"d_uv_real", "d_uv_fake", "d_image_real", "d_image_fake"} <= set(evaluations[-1])
    assert "fid" not in evaluations[-1]  # pretrained=none: no Inception weights, no FID
    grid = (out / "images" / "step_0000004.png").stat().st_size
    assert grid > 0 and (out / "report" / "final_images.png").is_file()
    saved = json.loads((out / "mesh-inversion.json").read_text())
    assert saved["dataset"]["fid"].startswith("skipped")


def test_a_resumed_run_ends_with_the_same_weights(
    pseudo_gt: RenderedPseudoGroundTruth, tmp_path: Path
) -> None:
    straight = run(tiny_config(tmp_path / "straight"), pseudo_gt)
    run(tiny_config(tmp_path / "halves", "iterations=2", "checkpoint_every=2"), pseudo_gt)
    resumed = run(tiny_config(tmp_path / "halves", "resume=auto"), pseudo_gt)
    assert straight.checkpoint is not None and resumed.checkpoint is not None and resumed.start_step == 2
    first, second = load_file(straight.checkpoint), load_file(resumed.checkpoint)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name])


def test_the_image_grid_shows_each_sample_from_several_azimuths(
    pseudo_gt: RenderedPseudoGroundTruth, tmp_path: Path
) -> None:
    method = MeshInversionTraining(tiny_config(tmp_path, "views=3"))
    torch.manual_seed(0)
    model = method.build_model().eval()
    batch = default_collate([pseudo_gt[i] for i in range(2)])
    grid = method.visualise(model, batch)
    assert grid.shape == (3, 2 * 32, (1 + 1 + 3 + 1) * 32)  # photo | item view | 3 azimuths | texture
    assert 0 <= float(grid.min()) and float(grid.max()) <= 1
    torch.testing.assert_close(grid, method.visualise(model, batch))  # fixed latent codes
    # the azimuths are turns of the item's camera
    camera = camera_from_vector(batch["camera"])
    assert isinstance(camera, Camera) and camera.turned(120.0).batch_size == 2


def test_config_checks_and_presets(tmp_path: Path) -> None:
    paper = apply_preset(MeshInversionTrainConfig(), "paper")
    assert paper == MeshInversionTrainConfig()
    assert (paper.model.texture_size, paper.model.mesh_size, paper.model.z_dim) == (512, 32, 64)
    assert (paper.batch_size, paper.epochs, paper.lr, paper.discriminator_lr) == (32, 600, 1e-4, 4e-4)
    assert (paper.image_gan_weight, paper.gan_loss, paper.image_discriminator_layers) == (0.2, "lsgan", 3)
    cpu = apply_preset(MeshInversionTrainConfig(), "cpu")
    assert cpu.model.texture_size <= 64 and cpu.model.mesh_size == 32 and cpu.epochs == 0
    with pytest.raises(ConfigError, match="nothing would train"):
        tiny_config(tmp_path, "uv_gan_weight=0", "image_gan_weight=0")
    with pytest.raises(ConfigError, match="too small for a D_I"):
        tiny_config(tmp_path, "image_size=16")
    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_config(tmp_path, "ema_decay=1")
    with pytest.raises(ValueError, match="no data folder"):
        datasets(tiny_config(tmp_path))
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        datasets(tiny_config(tmp_path, f"data={tmp_path / 'missing'}"))
    # the networks the config describes
    model = MeshInversionTraining(tiny_config(tmp_path)).build_model()
    assert isinstance(model, MeshInversionNetwork)
    assert isinstance(model.generator, MeshGenerator) and isinstance(model.uv_critic, UvDiscriminator)
    assert isinstance(model.image_critic, PatchDiscriminator) and model.image_critic.receptive_field == 70


def test_the_command_with_the_cpu_preset_builds_the_pseudo_ground_truth_and_trains(
    birds: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli"
    status = train_main([
        "mesh-inversion-gan", "--data", str(birds), "--out", str(out), "--preset", "cpu",
        "--iterations", "2", "--batch-size", "2", "--device", "cpu", "--progress", "false",
        "--tensorboard", "false", "--pretrained", "none", "--eval-every", "0", "--image-every", "0",
        "--checkpoint-every", "0", "--eval-items", "2", "--pseudo-gt-fit-iterations", "3",
        "--set", "model.width=4", "--uv-discriminator-channels", "4", "--image-discriminator-channels", "4",
    ])  # fmt: skip
    assert status == 0
    saved = json.loads((out / "mesh-inversion.json").read_text())
    assert saved["method"] == METHOD and saved["template"] == TEMPLATE_ID and saved["step"] == 2
    assert saved["config"]["model"]["texture_size"] == 32 and saved["config"]["image_size"] == 64
    config = apply_overrides(
        apply_preset(MeshInversionTrainConfig(data=str(birds)), "cpu"), ["pseudo_gt_fit_iterations=3"]
    )
    cache = pseudo_gt_folder(config)
    assert cache.parent == birds / "cache" / "mesh-inversion" and (cache / "index.json").is_file()
    assert saved["dataset"]["pseudo_gt"] == str(cache)
    built = (cache / "index.json").stat().st_mtime_ns
    train_set, eval_set = datasets(config)  # reused, not rebuilt
    assert (cache / "index.json").stat().st_mtime_ns == built
    assert len(train_set) == 4 and eval_set is not None and len(eval_set) == 4  # type: ignore[arg-type]
    item = train_set[0]
    assert item["displacement"].shape == (3, 32, 32) and item["texture"].shape == (3, 32, 32)
    assert item["texture_mask"].shape == (1, 32, 32) and item["image"].shape == (3, 64, 64)
    assert train_main(["mesh-inversion-gan", "--out", str(tmp_path / "x")]) == 2  # no --data
