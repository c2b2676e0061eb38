"""Evaluating ``adaptive-flow`` and its image grids (the metrics are the package docstring's "Evaluation").

``evaluate`` gives ``mask_iou``, ``ssim``, with ground-truth meshes ``novel_iou`` and ``novel_ssim``
(``novel_views``: prediction and truth each turned by ``training.evaluation.NOVEL_TURNS`` from its own
camera, ``training.evaluation.novel_view_scores``), and ``fid``
when the FID metric is active (Inception weights on this machine). ``visualise`` draws the training
images: photo | reconstruction at its camera | turned by 90, 180 degrees | I_var (when on).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from backend.geometry.camera import Camera
from backend.geometry.metrics import mask_iou, ssim
from backend.models.adaptive_flow import AdaptiveFlowModel, AdaptiveFlowOutput
from backend.render.renderer import RenderOutput, render
from backend.render.settings import RasterSettings
from training.adaptive_flow.views import on_white, random_views, resize, textured
from training.batches import base_dataset, move_to_device
from training.evaluation import camera_from_vector, ground_truth_mesh, mean_metrics, novel_view_scores
from training.losses.fid import FidMetric


@torch.no_grad()
def evaluate(
    network: AdaptiveFlowModel,
    loader: DataLoader[Any],
    settings: RasterSettings,
    fid_metric: FidMetric,
    random_azimuth: float,
) -> dict[str, float]:
    """The metrics of ``network`` over ``loader`` (module docstring), rendered with ``settings``; the FID
    renders are turned by random azimuths in (-random_azimuth, random_azimuth) degrees."""
    dataset = base_dataset(loader.dataset)
    hard = replace(settings, soft=False)
    values: dict[str, list[float]] = {"mask_iou": [], "ssim": [], "novel_iou": [], "novel_ssim": []}
    device = network.faces.device
    fid = fid_metric.accumulator(device)
    for batch in loader:
        batch = move_to_device(batch, device)
        image, mask = batch["image"], batch["mask"]
        output = network(image)
        texture = network.texture(image, output)
        best = output.probs.argmax(dim=1)
        camera = network.camera(output, best)
        small_image, small_mask = resize(image, settings.image_size), resize(mask, settings.image_size)
        soft = render(output.vertices, network.faces, camera, settings, outputs="alpha").alpha[..., 0]
        values["mask_iou"] += mask_iou(soft, small_mask[:, 0], soft=True).tolist()
        ours = textured(network, output.vertices, texture, camera, hard)
        photo = on_white(small_image, small_mask)
        values["ssim"] += ssim(ours.rgb, photo).tolist()
        if "camera" in batch:
            novel_views(network, dataset, batch, output, texture, camera, hard, values)
        if fid.active:
            fake = random_views(network, output, texture, camera, settings, random_azimuth)
            fid.update(real=small_image * small_mask, fake=fake[:, :3])
    metrics = mean_metrics({name: v for name, v in values.items() if v})
    if (value := fid.compute()) is not None:
        metrics["fid"] = value
    return metrics


def novel_views(
    network: AdaptiveFlowModel,
    dataset: Dataset[Any],
    batch: Mapping[str, Any],
    output: AdaptiveFlowOutput,
    texture: Tensor,
    camera: Camera,
    settings: RasterSettings,
    values: dict[str, list[float]],
) -> None:
    """Novel-view silhouette IoU and SSIM against the ground-truth object (when the set has it)."""
    truth_cameras = camera_from_vector(batch["camera"])
    for item in range(len(texture)):
        truth = ground_truth_mesh(dataset, int(batch["index"][item]))
        if truth is None:
            continue

        def ours(turned: Camera, item: int = item) -> RenderOutput:
            return textured(
                network, output.vertices[item : item + 1], texture[item : item + 1], turned, settings
            )

        scores = novel_view_scores(
            ours, camera[item], truth.to(texture.device), truth_cameras[item], settings
        )
        for name, numbers in scores.items():
            values[name] += numbers


@torch.no_grad()
def visualise(network: AdaptiveFlowModel, batch: Mapping[str, Any], size: int) -> Tensor:
    """Rows: photo | reconstruction at its camera | turned by 90, 180 degrees | I_var (when on), each
    ``size`` pixels wide."""
    image, mask = batch["image"], batch["mask"]
    output = network(image)
    texture = network.texture(image, output)
    camera = network.camera(output, output.probs.argmax(dim=1))
    hard = RasterSettings(size, soft=False)
    columns = [on_white(resize(image, size), resize(mask, size)).permute(0, 3, 1, 2)]
    for turn in (0.0, 90.0, 180.0):
        azimuth = torch.full((len(image),), turn, device=image.device)
        views = textured(network, output.vertices, texture, camera.turned(azimuth), hard)
        columns.append(views.rgb.permute(0, 3, 1, 2))
    if output.variance is not None:
        variance = resize(output.variance.mean(1, keepdim=True), size)
        low = 1 - network.config.variance_amplitude
        columns.append(((variance - low) / (2 * network.config.variance_amplitude)).expand(-1, 3, -1, -1))
    rows = torch.cat(columns, dim=3)  # (B, 3, s, k s)
    return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1]).clamp(0, 1)
