"""Training ``softras`` on a tiny synthetic set: the loss falls, evaluation reports SoftRas's metrics, the
final checkpoint is loaded by the backend's ``softras`` method and reconstructs a photo; the composed loss
is the hand-written sum. (Surface sampling: tests/backend/geometry/test_sampling.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from backend.methods.base import no_progress
from backend.methods.registry import create_method, parse_options
from training.cli import main as train_main
from training.datasets.synthetic import SyntheticConfig, generate
from training.softras import SoftRasTrainConfig, SoftRasTraining, datasets, run


@pytest.fixture(scope="module")
def birds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("birds")
    generate(
        root,
        SyntheticConfig(
            category="bird", n=12, layout="shapenet", views=6, seed=3,
            splits=(("train", 0.75), ("val", 0.25)),
        ),
    )  # fmt: skip
    return root


def test_loss_falls_and_the_checkpoint_serves(birds: Path, tmp_path: Path) -> None:
    config = SoftRasTrainConfig(
        data=str(birds), out=str(tmp_path / "run"), device="cpu", iterations=40, batch_size=6, lr=1e-3,
        lr_milestones=(30,), eval_views=2, eval_every=0, image_every=40, checkpoint_every=0, log_every=5,
        progress=False, tensorboard=False,
    )  # fmt: skip
    result = run(config)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    losses = [record["silhouette"] for record in history if "silhouette" in record]
    assert len(losses) >= 4
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.05, losses
    metrics = result.metrics
    assert 0 <= metrics["iou3d"] <= 100 and math.isfinite(metrics["chamfer"])
    assert metrics["iou3d/bird"] == metrics["iou3d"] and 0 < metrics["silhouette_iou"] <= 1
    assert result.checkpoint is not None and result.checkpoint.name == "softras.safetensors"
    assert (tmp_path / "run" / "report" / "report.md").is_file()
    # the backend loads exactly this file and reconstructs a photo of the held-out split
    method = create_method("softras", "cpu", checkpoint=str(result.checkpoint))
    _, eval_set = datasets(config)
    assert eval_set is not None
    item = eval_set[0]
    image = item["image"][0].permute(1, 2, 0).numpy().astype(np.float32)
    mask = item["mask"][0, 0].numpy() > 0.5
    options = parse_options("softras", {"iterations": 20, "resolution": 32, "hypotheses": 2,
                                        "crop_size": 64, "texture_size": 32})  # fmt: skip
    reconstruction = method.reconstruct(image, mask, options, no_progress)
    assert reconstruction.report.checkpoint == "softras.safetensors"
    assert reconstruction.mesh.num_vertices == 642 and reconstruction.report.silhouette_iou > 0.3


def test_cli_trains_with_a_preset_and_flags(birds: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    status = train_main([
        "softras", "--data", str(birds), "--out", str(out), "--preset", "smoke", "--device", "cpu",
        "--set", "model.encoder=attention", "--iterations", "4", "--batch-size", "3", "--eval-views", "1",
        "--progress", "false", "--tensorboard", "false",
    ])  # fmt: skip
    assert status == 0
    saved = json.loads((out / "softras.json").read_text())
    assert saved["method"] == "softras" and saved["template"] == "icosphere-642"
    assert saved["config"]["model"]["encoder"] == "attention" and saved["step"] == 4
    assert train_main(["softras", "--out", str(tmp_path / "x")]) == 2  # no --data: a clear error


def test_the_composed_loss_is_the_hand_written_sum(birds: Path) -> None:
    """training.losses.compose adds SoftRas's terms as the trainer did by hand: bit for bit the same."""
    config = SoftRasTrainConfig(data=str(birds), device="cpu", laplacian_weight=0.3, flatten_weight=0.07)
    train_set, _ = datasets(config)
    batch = default_collate([train_set[i] for i in range(2)])
    method = SoftRasTraining(config)
    torch.manual_seed(0)
    losses = method.training_step(method.build_model(), batch, 7)
    assert set(losses) == {"loss", "silhouette", "laplacian", "flatten"}
    expected = losses["silhouette"] + 0.3 * losses["laplacian"] + 0.07 * losses["flatten"]
    assert torch.equal(losses["loss"], expected)
