"""``bench-mesh-inversion``: an oracle reconstruction (the truth seen through another weak-perspective camera
that projects it the same way) scores perfectly once brought back into the truth's frame; the FIDs are
numbers with a feature network and "unavailable" without one; invalid method options stop the bench at
once; and a tiny end-to-end run (a GAN trained for two steps, mesh-inversion and fit on two held-out birds,
the four ablation variants) reports every metric in range, with the FIDs unavailable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.geometry.camera import Camera, axis_angle_to_quaternion
from backend.geometry.mesh import TexturedMesh
from backend.geometry.sampling import sample_surface
from backend.geometry.templates import uv_sphere_template
from backend.methods.base import Reconstruction, Report
from backend.render.renderer import render_mesh
from backend.render.settings import RasterSettings
from training.bench_mesh_inversion import (
    NO_INCEPTION,
    TOO_FEW,
    VARIANTS,
    FidSets,
    score_reconstruction,
)
from training.cli import main as train_main
from training.evaluation import surface_centroid, to_ground_truth_frame
from training.losses.fid import FidAccumulator, conv_fid_network

SIZE = 64
METRICS = ("input_iou", "novel_iou", "novel_ssim", "chamfer", "input_rgb_l1", "seconds")
PHASES = ("pose", "z_search", "stage_1", "stage_2", "stage_3", "stage_4", "texture")
TINY_GAN = [
    "model.z_dim=8", "model.mesh_size=8", "model.texture_size=16", "model.width=4", "image_size=32",
    "uv_discriminator_channels=8", "image_discriminator_channels=8", "image_discriminator_layers=2",
    "batch_size=2", "eval_items=2", "views=2", "pseudo_gt_fit_iterations=3", "pseudo_gt_fit_resolution=32",
]  # fmt: skip
TINY_INVERSION = [
    "random_z=4", "search_batch=4", "stage_iterations=1", "pose_iterations=4", "pose_hypotheses=1",
    "render_size=32", "texture_points=64", "mask_points=64", "resolution=32",
]  # fmt: skip
TINY_FIT = ["fit:iterations=8", "fit:resolution=32", "fit:hypotheses=1", "fit:texture_size=16"]


def _weak(scale: float, shift: tuple[float, float], axis: tuple[float, float, float], angle: float) -> Camera:
    rotation = axis_angle_to_quaternion(torch.tensor([axis]), torch.tensor([angle]))
    return Camera.weak_perspective(torch.tensor([scale]), torch.tensor([shift]), rotation)


def _oracle() -> tuple[Reconstruction, np.ndarray, np.ndarray, TexturedMesh, Camera]:
    """The truth (an ellipsoid with a random texture) seen by ``camera_true``, and the reconstruction a
    perfect method would give with another camera: the same projection, at another scale, rotation,
    shift and depth."""
    generator = torch.Generator().manual_seed(0)
    template = uv_sphere_template().mesh
    texture = torch.rand(32, 32, 3, generator=generator)
    truth = template.with_vertices(template.vertices * torch.tensor([0.45, 0.25, 0.3]) + 0.05)
    truth = truth.with_texture(texture)
    camera_true = _weak(0.9, (0.05, -0.1), (0.2, 1.0, 0.1), 0.8)
    camera = _weak(0.6, (-0.1, 0.15), (1.0, -0.3, 0.4), 2.1)
    rotation_true = camera_true.view_transform()[0][0]
    rotation = camera.view_transform()[0][0]
    seen = truth.vertices @ rotation_true.T  # (V, 3): the true camera's rotated object
    view = seen * 0.9 / 0.6
    view[:, :2] += (torch.tensor([0.05, -0.1]) - torch.tensor([-0.1, 0.15])) / 0.6
    view[:, 2] += 0.7  # a depth one view cannot tell
    fitted = truth.with_vertices(view @ rotation)
    photo = render_mesh(truth, camera_true, RasterSettings(image_size=SIZE, soft=False))
    image = photo.rgb[0].numpy().astype(np.float32)
    mask = photo.alpha[0, ..., 0].numpy() > 0.5
    report = Report(method="oracle", options={}, device="cpu", silhouette_iou=1.0)
    return Reconstruction(fitted, camera, mask, report), image, mask, truth, camera_true


def test_an_oracle_seen_by_another_weak_perspective_camera_scores_perfectly() -> None:
    result, image, mask, truth, camera_true = _oracle()
    truth_points = sample_surface(truth.vertices, truth.faces, 2048, torch.Generator().manual_seed(7))
    centre = surface_centroid(result.mesh.vertices, result.mesh.faces)
    centre_true = surface_centroid(truth.vertices, truth.faces)
    aligned = to_ground_truth_frame(result.mesh.vertices, result.camera, camera_true, centre_true, centre)
    assert torch.allclose(aligned, truth.vertices, atol=1e-4)

    # the same surface samples (same seed, same mesh): Chamfer ~0; the turned views coincide
    scored = score_reconstruction(
        result, image, mask, truth, camera_true, truth_points, 2048, torch.Generator().manual_seed(7)
    )
    values = scored.values
    assert values["chamfer"][0] < 1e-2
    assert len(values["novel_iou"]) == 3 and min(values["novel_iou"]) > 0.99
    assert min(values["novel_ssim"]) > 0.98
    assert values["input_iou"] == [1.0]
    assert values["input_rgb_l1"][0] < 1e-2  # the input view renders the photo's own colours


def test_the_fids_are_numbers_with_a_feature_network_and_unavailable_without() -> None:
    result, image, mask, truth, camera_true = _oracle()
    truth_points = sample_surface(truth.vertices, truth.faces, 256, torch.Generator().manual_seed(1))
    scored = score_reconstruction(
        result, image, mask, truth, camera_true, truth_points, 256, torch.Generator().manual_seed(1)
    )
    network = conv_fid_network(dims=4, width=4)
    fids = FidSets(lambda: FidAccumulator(network))
    assert fids.active
    fids.add(image, mask, scored, camera_true)
    assert fids.results() == dict.fromkeys(("fid_1", "fid_10", "fid_12"), TOO_FEW)  # FID_1 has 1 fake
    fids.add(image[::-1].copy(), mask[::-1].copy(), scored, camera_true)
    assert [len(torch.cat(fids.sets[name]._fake)) for name in ("fid_1", "fid_10", "fid_12")] == [2, 20, 24]
    values = fids.results()
    assert all(isinstance(v, float) and math.isfinite(v) and v >= -1e-6 for v in values.values()), values

    missing = FidSets(lambda: FidAccumulator(None))
    assert not missing.active
    assert missing.results() == dict.fromkeys(("fid_1", "fid_10", "fid_12"), NO_INCEPTION)


def test_invalid_method_options_stop_the_bench_before_it_generates_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    assert train_main(["bench-mesh-inversion", "--out", str(out), "--set", "texture_loss=nope"]) == 2
    assert train_main(["bench-mesh-inversion", "--out", str(out), "--method-set", "iterations=3"]) == 2
    errors = capsys.readouterr().out
    assert "texture_loss" in errors and "METHOD:KEY=VALUE" in errors
    assert not out.exists()


def _in_range(name: str, value: float) -> bool:
    if not math.isfinite(value):
        return False
    if name in ("input_iou", "novel_iou", "input_rgb_l1"):
        return 0 <= value <= 1
    if name == "novel_ssim":
        return -1 <= value <= 1
    return value >= 0


@pytest.mark.slow  # a GAN trained for two steps, then 4 mesh-inversion runs and fit on 2 birds: 3-25 s
def test_a_tiny_run_reports_every_metric_and_the_ablation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    argv = [
        "bench-mesh-inversion", "--objects", "6", "--test-fraction", "0.34", "--size", "64",
        "--crop", str(SIZE), "--eval-objects", "2", "--samples", "256", "--methods", "mesh-inversion,fit",
        "--gan-iterations", "2", "--pretrained", "none", "--threads", "1", "--out", str(out),
    ]  # fmt: skip
    for pair in TINY_GAN:
        argv += ["--train-set", f"mesh-inversion:{pair}"]
    for pair in TINY_INVERSION:
        argv += ["--set", pair]
    for pair in TINY_FIT:
        argv += ["--method-set", pair]
    assert train_main(argv) == 0

    printed = capsys.readouterr().out
    progress = [json.loads(line) for line in printed.splitlines() if line.startswith('{"')]
    assert {"object": 1, "of": 2} in progress
    assert any(line.get("trained") == "mesh-inversion" for line in progress)
    results = json.loads((out / "bench.json").read_text())
    assert json.loads(printed[printed.index('{\n  "benchmark"') :]) == results

    assert results["eval_objects"] == 2 and results["fid"] == NO_INCEPTION
    training = results["training"]["mesh-inversion"]
    assert training["iterations"] == 2 and training["seconds"] > 0
    assert Path(training["checkpoint"]).is_file()
    assert set(results["methods"]) == {"mesh-inversion", "fit"}
    assert results["options"]["mesh-inversion"]["random_z"] == 4  # --set
    assert results["options"]["fit"]["iterations"] == 8  # --method-set fit:...
    assert set(results["ablation"]) == set(VARIANTS)
    rows = {**results["methods"], **{f"ablation/{k}": v for k, v in results["ablation"].items()}}
    for row_name, row in rows.items():
        for name in METRICS:
            assert _in_range(name, row[name]), (row_name, name, row[name])
        assert not any(key.startswith("non_finite") for key in row), (row_name, row)
        for name in ("fid_1", "fid_10", "fid_12"):
            assert row[name] == NO_INCEPTION
        if row_name != "fit":
            assert set(row["timings"]) == set(PHASES), row_name
    for name, variant in VARIANTS.items():
        assert results["ablation"][name]["options"] == variant
    # the full variant is the method's own row (one shared run)
    full = {k: v for k, v in results["ablation"]["full"].items() if k != "options"}
    assert full == results["methods"]["mesh-inversion"]
