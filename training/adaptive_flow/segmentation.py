"""Stage 2's semantic template: the part probabilities of the template's vertices (UMR's ``avg_uv`` step).

``vertex_segmentation`` samples the training photos' part maps at the projected visible vertices of the
stage-1 network's predictions and averages them over photos and mirror partners; ``run`` computes it once
before stage 2 and ``save_vertex_parts`` leaves it in the run folder (``VERTEX_PARTS_FILE``, safetensors)
to inspect. The part terms (``training.adaptive_flow.terms.part_terms``) train against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader

from backend.checkpoints import atomic_write
from backend.models.adaptive_flow import AdaptiveFlowModel
from backend.render.renderer import render
from backend.render.settings import RasterSettings

VERTEX_PARTS_FILE = "vertex_parts.safetensors"
"""Where stage 2 leaves its vertex segmentation in the run folder (tensor ``vertex_parts``), to inspect."""


@torch.no_grad()
def vertex_segmentation(
    network: AdaptiveFlowModel,
    loader: DataLoader[Any],
    settings: RasterSettings,
    part_permutation: Sequence[int] | None,
    device: torch.device,
) -> Tensor | None:
    """UMR's semantic template: (V, P + 1) part probabilities of the template's vertices.

    For every training photo with part maps, the part maps are sampled at the projected vertices that are
    visible (belong to a face the rasterizer shows) at the most probable camera; the sums are averaged
    over photos and over each vertex and its mirror partner (part channels permuted left/right). Vertices
    never seen get zeros. None when the data has no part maps.
    """
    network = network.to(device).eval()
    totals: Tensor | None = None
    counts = torch.zeros(network.num_vertices, device=device)
    for batch in loader:
        if "parts" not in batch:
            return None
        image = batch["image"].to(device)
        parts = batch["parts"].to(device)  # (B, P + 1, S, S)
        output = network(image)
        camera = network.camera(output, output.probs.argmax(dim=1))
        faces_seen = render(output.vertices, network.faces, camera, replace(settings, soft=False)).face_index
        projected = camera.project(output.vertices)[..., :2]  # (B, V, 2) NDC, y up
        grid = torch.stack([projected[..., 0], -projected[..., 1]], dim=-1)[:, :, None]  # (B, V, 1, 2)
        sampled = F.grid_sample(parts, grid, align_corners=False)[..., 0].transpose(1, 2)  # (B, V, P + 1)
        for item in range(len(image)):
            shown = faces_seen[item][faces_seen[item] >= 0].unique()
            visible = torch.zeros(network.num_vertices, dtype=torch.bool, device=device)
            visible[network.faces[shown].flatten()] = True
            contribution = sampled[item] * visible[:, None]
            totals = contribution if totals is None else totals + contribution
            counts += visible.float()
    if totals is None:
        return None
    mirrored = totals[network.mirror_index]
    mirrored_counts = counts[network.mirror_index]
    if part_permutation is not None:
        mirrored = mirrored[:, list(part_permutation)]
    totals, counts = totals + mirrored, counts + mirrored_counts
    probabilities = totals / counts.clamp_min(1)[:, None]
    return probabilities.cpu()


def save_vertex_parts(vertex_parts: Tensor, out: Path) -> Path:
    """Write the (V, P + 1) vertex segmentation to ``out / VERTEX_PARTS_FILE`` (safetensors, atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / VERTEX_PARTS_FILE
    tensors = {"vertex_parts": vertex_parts.detach().cpu().contiguous()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    return path
