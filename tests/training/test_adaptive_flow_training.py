"""Training ``adaptive-flow`` on a tiny synthetic bird set: stage 1 learns, stage 2 starts from it with the
vertex segmentation, D_var, the FID and part losses; the final checkpoint is served by the backend and
exported as a GLB that loads back. The composed loss is the hand-written sum of before, and the stage-1
template moves in the loop's ``after_step`` hook, not inside the loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import default_collate

from backend.geometry.io import load_glb
from backend.methods.pipeline import export, reconstruct_photo
from backend.methods.registry import create_method, parse_options
from backend.models.adaptive_flow import AdaptiveFlowModel, AdaptiveFlowModelConfig
from training.adaptive_flow import (
    AdaptiveFlowNetwork,
    AdaptiveFlowTrainConfig,
    AdaptiveFlowTraining,
    datasets,
    run,
)
from training.cli import main as train_main
from training.config import apply_overrides, apply_preset
from training.datasets.synthetic import SyntheticConfig, generate

TINY = [
    "model.image_size=64", "model.flow_height=32", "model.flow_width=64", "render_size=32",
    "batch_size=4", "lr=1e-3", "vgg_layers=1", "fid_features=conv", "fid_dims=8", "eval_items=3",
    "eval_every=0", "image_every=0", "checkpoint_every=0", "log_every=2", "device=cpu",
    "progress=false", "tensorboard=false", "pretrained=none",
]  # fmt: skip


@pytest.fixture(scope="module")
def birds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("birds")
    generate(
        root,
        SyntheticConfig(
            category="bird", n=12, layout="cub", size=64, seed=5, background="noise",
            splits=(("train", 0.75), ("test", 0.25)),
        ),
    )  # fmt: skip
    return root


def tiny_config(birds: Path, out: Path, *extra: str, stage1: bool = False) -> AdaptiveFlowTrainConfig:
    config = AdaptiveFlowTrainConfig(data=str(birds))
    if stage1:
        config = apply_preset(config, "stage1")
    return apply_overrides(config, [*TINY, f"out={out}", *extra])


def history(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_two_stages_train_and_the_checkpoint_serves_a_glb(birds: Path, tmp_path: Path) -> None:
    # stage 1: the silhouette and texture terms fall on the training set
    first = tiny_config(birds, tmp_path / "s1", "iterations=24", "template_update_epochs=2", stage1=True)
    before = AdaptiveFlowModel(first.model).template_vertices
    result = run(first)
    records = [r for r in history(tmp_path / "s1") if r["kind"] == "train"]
    masks = [r["mask"] for r in records]
    assert np.mean(masks[-3:]) < np.mean(masks[:3]) - 0.02, masks
    assert "fid" not in records[0] and "part_chamfer" not in records[0]  # stage 1 has neither
    assert result.checkpoint is not None and result.checkpoint.name == "adaptive-flow.safetensors"
    stage1_model = AdaptiveFlowModel(first.model)
    weights = load_file(result.checkpoint)
    assert not any(key.startswith("critic") for key in weights)  # the critic is training-only
    stage1_model.load_state_dict(weights)  # strict: exactly the backend's network
    assert not torch.equal(stage1_model.template_vertices, before)  # the template was updated

    # stage 2 from stage 1: vertex segmentation, D_var, FID, part terms; metrics of the paper
    second = tiny_config(birds, tmp_path / "s2", "iterations=4", f"stage1_checkpoint={result.checkpoint}")
    final = run(second)
    records = [r for r in history(tmp_path / "s2") if r["kind"] == "train"]
    for name in ("fid", "part_chamfer", "part_probability", "camera_entropy", "gan", "alignment"):
        assert math.isfinite(records[-1][name]), name
    parts = load_file(tmp_path / "s2" / "vertex_parts.safetensors")["vertex_parts"]  # no pickle
    assert parts.shape[0] == 642 and parts.min() >= 0 and (parts.sum(1) <= 1 + 1e-4).all()
    assert (parts.sum(1) > 0).any()
    for name in ("mask_iou", "ssim", "novel_iou", "novel_ssim"):
        assert 0 <= final.metrics[name] <= 1, (name, final.metrics)
    served = AdaptiveFlowModel(second.model)
    served.load_state_dict(load_file(final.checkpoint))
    assert torch.equal(served.template_vertices, stage1_model.template_vertices)  # fixed in stage 2

    # the backend loads the file and reconstructs a held-out photo; the GLB loads back with its texture
    _, eval_set = datasets(second)
    assert eval_set is not None
    item = eval_set[0]
    photo = tmp_path / "photo.png"
    rgba = np.concatenate([item["image"].permute(1, 2, 0).numpy(), item["mask"].permute(1, 2, 0).numpy()], -1)
    Image.fromarray((rgba * 255).round().astype(np.uint8)).save(photo)
    method = create_method("adaptive-flow", "cpu", checkpoint=str(final.checkpoint))
    options = parse_options("adaptive-flow", {"crop_size": 128, "texture_scale": 2})
    reconstruction = reconstruct_photo(method, photo, options=options)
    assert reconstruction.report()["checkpoint"] == "adaptive-flow.safetensors"
    written = export(reconstruction, tmp_path / "out", "photo")
    mesh = load_glb(written["glb"])
    assert mesh.num_faces == 1280 and tuple(mesh.texture.shape) == (64, 128, 3)


def test_cli_runs_stage1_and_refuses_bad_settings(birds: Path, tmp_path: Path) -> None:
    common = ["adaptive-flow", "--data", str(birds), "--preset", "smoke", "--preset", "stage1"]
    tiny = [item for pair in (("--set", s) for s in TINY) for item in pair]
    status = train_main([*common, *tiny, "--out", str(tmp_path / "cli"), "--iterations", "2"])
    assert status == 0
    saved = json.loads((tmp_path / "cli" / "adaptive-flow.json").read_text())
    assert saved["method"] == "adaptive-flow" and saved["template"] == "icosphere-642"
    assert saved["config"]["stage"] == 1 and saved["config"]["model"]["variance"] is False
    assert train_main(["adaptive-flow", "--out", str(tmp_path / "x")]) == 2  # no --data
    # stage 1 with D_var on is refused with a message
    assert train_main([*common, "--set", "model.variance=true", "--out", str(tmp_path / "y")]) == 2


def test_stage1_config_rules() -> None:
    with pytest.raises(ValueError, match="D_var"):
        AdaptiveFlowTrainConfig(stage=1, fid_weight=0.0)
    with pytest.raises(ValueError, match="FID"):
        AdaptiveFlowTrainConfig(stage=1, model=AdaptiveFlowModelConfig(variance=False))
    assert apply_preset(AdaptiveFlowTrainConfig(), "stage1").mask_weight == 3.0


def test_the_composed_loss_is_the_hand_written_sum(birds: Path, tmp_path: Path) -> None:
    """Stage 2 with every term (part maps and a semantic template): training.losses.compose adds the terms
    in the order and with the weights the trainer once wrote by hand, bit for bit."""
    config = tiny_config(birds, tmp_path, "deformation_after_epoch=1")
    train_set, _ = datasets(config)
    batch = default_collate([train_set[i] for i in range(2)])
    template = torch.rand(642, batch["parts"].shape[1], generator=torch.Generator().manual_seed(1))
    method = AdaptiveFlowTraining(config, 2, template / template.sum(1, keepdim=True))
    torch.manual_seed(0)
    model = method.build_model()
    for step, deformation_weight in ((1, 0.0), (2, config.deformation_weight)):  # epoch 0, then epoch 1
        losses = method.training_step(model, batch, step)
        c = config
        expected = (
            c.mask_weight * losses["mask"] + c.texture_weight * losses["texture"]
            + c.texture_dt_weight * losses["texture_dt"] + c.alignment_weight * losses["alignment"]
            + c.laplacian_weight * losses["laplacian"] + c.flatten_weight * losses["flatten"]
            + deformation_weight * losses["deformation"] + c.gan_weight * losses["gan"]
            + c.fid_weight * losses["fid"] + c.part_probability_weight * losses["part_probability"]
            + c.part_chamfer_weight * losses["part_chamfer"]
            - c.camera_entropy_weight * losses["camera_entropy"]
        )  # fmt: skip
        assert torch.equal(losses["loss"], expected), step
        assert "perceptual" in losses and "deformation" in losses  # logged even while unweighted
    # without part maps the part terms are neither computed nor logged
    plain = {key: value for key, value in batch.items() if key != "parts"}
    assert "part_chamfer" not in method.training_step(model, plain, 0)


def test_the_stage1_template_moves_after_the_step_not_in_the_loss(birds: Path, tmp_path: Path) -> None:
    config = tiny_config(birds, tmp_path, "template_update_epochs=1", stage1=True)
    train_set, _ = datasets(config)
    batch = default_collate([train_set[i] for i in range(2)])
    method = AdaptiveFlowTraining(config, steps_per_epoch=2)
    torch.manual_seed(0)
    model = method.build_model()
    assert isinstance(model, AdaptiveFlowNetwork)
    network = model.network
    before = network.template_vertices.clone()
    offsets = []
    for step in (0, 1):
        with torch.no_grad():
            offsets.append(network(batch["image"]).offsets)
        method.training_step(model, batch, step)
        assert torch.equal(network.template_vertices, before)  # the loss leaves the model alone
        method.after_step(step, model)
        if step == 0:
            assert torch.equal(network.template_vertices, before)  # not yet: every 2 steps (1 epoch)
    mean = torch.cat(offsets).mean(0)
    torch.testing.assert_close(network.template_vertices, before + mean, atol=1e-6, rtol=0)
