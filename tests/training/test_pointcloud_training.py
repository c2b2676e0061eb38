"""Training ``pointcloud-poisson``'s network on a tiny synthetic set: the loss falls, the composed loss is
the hand-written sum, evaluation reports the paper's metrics, the final checkpoint reloads in the backend
and the command line trains. The pose ensemble loss: tests/training/losses/test_pose.py; the geometry
helpers (rotation distances, voxels, points against masks): tests/backend/geometry."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import default_collate

from backend.geometry.camera import Camera
from backend.geometry.image_points import points_in_mask
from backend.geometry.sampling import sample_surface
from backend.methods.checkpointed import load_method_network
from backend.models.pointcloud import TEMPLATE_ID, PointCloudModel, PointCloudModelConfig
from training.cli import main as train_main
from training.config import ConfigError, apply_preset
from training.datasets.synthetic import SyntheticConfig, generate
from training.losses.compose import weighted_total
from training.losses.effective import effective_loss
from training.pointcloud_poisson import (
    PointCloudTrainConfig,
    PointCloudTraining,
    all_views_camera,
    datasets,
    run,
)

SMALL = PointCloudModelConfig(image_size=32, num_points=2000, channels=4, z_dim=32, hidden=32)


@pytest.fixture(scope="module")
def birds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("birds")
    generate(
        root,
        SyntheticConfig(
            category="bird", n=8, layout="shapenet", views=4, size=32, seed=3,
            splits=(("train", 0.75), ("val", 0.25)),
        ),
    )  # fmt: skip
    return root


def _config(birds: Path, tmp_path: Path, **changes: object) -> PointCloudTrainConfig:
    settings: dict[str, object] = {
        "data": str(birds), "out": str(tmp_path / "run"), "device": "cpu", "model": SMALL,
        "views_per_item": 2, "batch_size": 2, "eval_views": 2, "ground_truth_points": 2000, "lr": 1e-3,
        "progress": False, "tensorboard": False,
    }  # fmt: skip
    settings.update(changes)
    return PointCloudTrainConfig(**settings)  # type: ignore[arg-type]


def _batch(config: PointCloudTrainConfig, count: int = 2) -> dict[str, Any]:
    train_set, _ = datasets(config)
    batch: dict[str, Any] = default_collate([train_set[i] for i in range(count)])
    return batch


def test_a_few_steps_reduce_the_loss(birds: Path, tmp_path: Path) -> None:
    config = _config(birds, tmp_path)
    batch = _batch(config)
    method = PointCloudTraining(config)
    torch.manual_seed(0)
    model = method.build_model()
    optimizer = method.configure_optimizer(model, config)
    history = []
    for step in range(8):
        losses = method.training_step(model, batch, step)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    assert set(history[0]) == {"loss", "effective", "first", "second", "pose_candidates", "pose_student"}
    assert history[-1]["loss"] < 0.8 * history[0]["loss"], history
    assert history[-1]["effective"] < history[0]["effective"], history
    first = history[0]
    total = first["effective"] + first["pose_candidates"] + 20 * first["pose_student"]
    assert math.isclose(first["loss"], total, rel_tol=1e-5)  # pose_weight 1, student_weight 20 (DPC)


@pytest.mark.parametrize("pose_mode", ["known", "learned"])
def test_the_composed_loss_is_the_hand_written_sum(birds: Path, tmp_path: Path, pose_mode: str) -> None:
    """training.losses.compose adds the terms as the trainer did by hand: bit for bit the same total."""
    config = _config(birds, tmp_path, pose_mode=pose_mode, pose_weight=0.7, student_weight=3.0)
    method = PointCloudTraining(config)
    torch.manual_seed(6)
    losses = method.training_step(method.build_model(), _batch(config), 0)
    if pose_mode == "known":
        pose = losses["pose_candidates"] + 3.0 * losses["pose_student"]
        expected = losses["effective"] + 0.7 * pose
    else:
        expected = losses["effective"] + 3.0 * losses["pose_student"]
    assert torch.equal(losses["loss"], expected)
    with pytest.raises(ValueError, match="weights differ"):
        weighted_total({"effective": losses["effective"]}, method.loss_weights())


def test_known_projection_matches_a_direct_call(birds: Path, tmp_path: Path) -> None:
    """Each cloud is projected into every view of its object with that view's camera and mask."""
    config = _config(birds, tmp_path, pose_weight=0.0)
    batch = _batch(config)
    method = PointCloudTraining(config)
    torch.manual_seed(1)
    model = method.build_model()
    with torch.no_grad():
        losses = method.training_step(model, batch, 0)
        image, mask = batch["image"], batch["mask"]
        points = model(torch.cat([image * mask, mask], dim=2).flatten(0, 1)).points.view(2, 2, -1, 3)
        projections, masks = [], []
        for item, source, target in itertools.product(range(2), range(2), range(2)):
            camera = all_views_camera(batch)[item * 2 + target]
            projections.append(camera.project(points[item, source][None])[0, :, :2])
            masks.append(mask[item, target, 0])
        expected = effective_loss(
            torch.stack(projections).view(4, 2, -1, 2), torch.stack(masks).view(4, 2, 32, 32)
        )
    torch.testing.assert_close(losses["effective"], expected.total)
    torch.testing.assert_close(losses["loss"], expected.total)


@pytest.mark.parametrize("encoder_gradient", [False, True])
def test_pose_terms_reach_the_encoder_only_when_asked(
    birds: Path, tmp_path: Path, encoder_gradient: bool
) -> None:
    config = _config(birds, tmp_path, alpha=0.0, beta=0.0, pose_encoder_gradient=encoder_gradient)
    method = PointCloudTraining(config)
    torch.manual_seed(5)
    model = PointCloudModel(SMALL)
    method.training_step(model, _batch(config), 0)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student_head.parameters())
    encoder = [p.grad for p in model.convolutions.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in encoder)
    assert reached == encoder_gradient


def test_ground_truth_surfaces_project_inside_their_masks(birds: Path, tmp_path: Path) -> None:
    """The cameras and NDC conventions of the loss fit the data: true surface points land on the masks."""
    config = _config(birds, tmp_path, views_per_item=4)
    train_set, _ = datasets(config)
    batch = default_collate([train_set[0]])
    mesh = train_set.ground_truth_mesh(0)
    assert mesh is not None
    samples = sample_surface(mesh.vertices.float(), mesh.faces, 3000, torch.Generator().manual_seed(0))
    xy_ndc = all_views_camera(batch).project(samples)[..., :2]  # (4, N, 2)
    masks = batch["mask"][0, :, 0]  # (4, 32, 32)
    inside = points_in_mask(xy_ndc, masks).float().mean(dim=1)  # (4,)
    assert (inside > 0.9).all(), inside  # the rest fall on thin parts that cover < half a pixel
    mirrored = points_in_mask(xy_ndc * torch.tensor([-1.0, 1.0]), masks).float().mean(dim=1)
    upside_down = points_in_mask(xy_ndc * torch.tensor([1.0, -1.0]), masks).float().mean(dim=1)
    assert mirrored.mean() < inside.mean() - 0.05 and (upside_down < 0.85).all(), (mirrored, upside_down)


def test_learned_pose_mode_takes_the_best_candidate(birds: Path, tmp_path: Path) -> None:
    """Each view's loss is the effective loss of all clouds under its best candidate camera (a loop)."""
    model_config = PointCloudModelConfig(
        image_size=32, num_points=2000, channels=4, z_dim=32, hidden=32, pose_candidates=2
    )
    config = _config(birds, tmp_path, pose_mode="learned", model=model_config)
    batch = _batch(config)
    method = PointCloudTraining(config)
    torch.manual_seed(4)
    model = PointCloudModel(model_config)
    losses = method.training_step(model, batch, 0)
    with torch.no_grad():
        image, mask, distance = batch["image"], batch["mask"], batch["distance"]
        prediction = model(torch.cat([image * mask, mask], dim=2).flatten(0, 1))
        points = prediction.points.view(2, 2, -1, 3)
        best = []
        for item, view in itertools.product(range(2), range(2)):
            costs = []
            for candidate in prediction.candidates[item * 2 + view]:
                scale = 1 / (distance[item, view] * math.tan(math.radians(15)))
                camera = Camera.weak_perspective(scale, torch.zeros(1, 2), candidate[None])
                xy_ndc = torch.stack([camera.project(points[item, s][None])[0, :, :2] for s in range(2)])
                masks = mask[item, view, 0].expand(2, 32, 32)
                costs.append(effective_loss(xy_ndc[None], masks[None]).total)
            best.append(min(costs))
    torch.testing.assert_close(losses["effective"].detach(), torch.stack(best).mean())
    torch.testing.assert_close(
        losses["loss"].detach(), losses["effective"].detach() + 20 * losses["pose_student"].detach()
    )
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.candidate_heads.parameters())
    assert all(p.grad is not None for p in model.point_head.parameters())


def test_run_evaluates_and_the_checkpoint_reloads(birds: Path, tmp_path: Path) -> None:
    config = _config(
        birds, tmp_path, iterations=3, eval_every=0, image_every=3, checkpoint_every=0, log_every=1
    )
    result = run(config)
    metrics = result.metrics
    for key in ("chamfer", "iou3d", "inside", "pose_error_deg", "chamfer/bird", "iou3d/bird"):
        assert math.isfinite(metrics[key]), key
    assert metrics["chamfer"] > 0 and 0 <= metrics["iou3d"] <= 100 and 0 <= metrics["inside"] <= 1
    assert 0 <= metrics["pose_error_deg"] <= 180
    assert result.checkpoint is not None and result.checkpoint.name == "pointcloud-poisson.safetensors"
    assert (tmp_path / "run" / "images" / "step_0000003.png").is_file()
    saved = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert saved["method"] == "pointcloud-poisson" and saved["template"] == TEMPLATE_ID
    assert saved["config"]["model"] == SMALL.model_dump(mode="json")

    def build(settings: dict[str, object]) -> PointCloudModel:
        return PointCloudModel(PointCloudModelConfig.model_validate(settings))

    network, name = load_method_network(
        "pointcloud-poisson", result.checkpoint, TEMPLATE_ID, torch.device("cpu"), build
    )
    assert name == "pointcloud-poisson.safetensors" and network.config == SMALL
    trained = result.model.cpu().eval()
    images = torch.rand(2, 4, 32, 32)
    torch.testing.assert_close(network(images).points, trained(images).points)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(network.state_dict()[key], value)


def test_visualise_draws_four_columns(birds: Path, tmp_path: Path) -> None:
    config = _config(birds, tmp_path)
    batch = _batch(config)
    method = PointCloudTraining(config)
    grid = method.visualise(method.build_model().eval(), batch)
    assert grid.shape == (3, 2 * 32, 4 * 32) and grid.min() >= 0 and grid.max() <= 1
    ink = (grid - torch.tensor([0.1, 0.2, 0.8])[:, None, None]).abs().amax(dim=0) < 1e-6  # point pixels
    assert all(ink[:, 32 * column : 32 * (column + 1)].any() for column in (1, 2, 3))


def test_cli_trains_with_the_cpu_preset(birds: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    status = train_main([
        "pointcloud-poisson", "--data", str(birds), "--out", str(out), "--preset", "cpu", "--device", "cpu",
        "--set", "model.image_size=32", "--set", "model.channels=4", "--set", "model.z_dim=32",
        "--set", "model.hidden=32", "--iterations", "2", "--batch-size", "2", "--views-per-item", "2",
        "--eval-views", "1", "--eval-objects", "1", "--ground-truth-points", "500",
        "--progress", "false", "--tensorboard", "false",
    ])  # fmt: skip
    assert status == 0
    saved = json.loads((out / "pointcloud-poisson.json").read_text())
    assert saved["method"] == "pointcloud-poisson" and saved["step"] == 2
    assert saved["config"]["model"]["num_points"] == 2000 and saved["config"]["lr"] == 1e-3  # the preset
    assert train_main(["pointcloud-poisson", "--out", str(tmp_path / "x")]) == 2  # no --data: a clear error


def test_config_defaults_presets_and_errors() -> None:
    config = PointCloudTrainConfig()
    assert (config.lr, config.weight_decay, config.batch_size, config.iterations) == (1e-4, 1e-3, 8, 600_000)
    assert (config.student_weight, config.model.pose_candidates, config.model.num_points) == (20.0, 4, 8000)
    assert config.pose_mode == "known" and config.distance_transform
    assert apply_preset(config, "paper") == config
    assert apply_preset(config, "cpu").model.num_points == 2000
    with pytest.raises(ValueError, match="views_per_item must be at least 2"):
        PointCloudTrainConfig(views_per_item=1)
    with pytest.raises(ValueError, match="theta must be positive"):
        PointCloudTrainConfig(theta=0.0)
    with pytest.raises(ValueError, match="pose_mode"):
        PointCloudTrainConfig(pose_mode="guess")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        apply_preset(config, "gpu")


def test_weight_decay_spares_the_biases() -> None:
    config = PointCloudTrainConfig(model=SMALL)
    method = PointCloudTraining(config)
    model = method.build_model()
    optimizer = method.configure_optimizer(model, config)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 1e-3 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in plain["params"]) and all(p.dim() > 1 for p in decayed["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
