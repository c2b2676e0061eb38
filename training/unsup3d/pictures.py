"""The image grid of an ``unsup3d`` run: one row per item, the decomposition the paper's figures show.

``picture_grid(images, output, formation, model_config, depth_gt=None) -> (3, B S, K S)``, columns in order:
input | reconstruction | flipped reconstruction (with the flip) | canonical albedo | canonical shading |
canonical image (albedo x shading) | canonical normals | canonical depth | the view's depth | the
ground-truth depth (when given) | photometric confidence and its flip (with the flip) and perceptual
confidence (upsampled), each ``1 / (1 + sigma)`` (white: sure).
Depths are grey levels over ``[depth_min, depth_max]`` (near is bright, far dark); uncovered pixels of the
view's depth are black. Everything in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.models.unsup3d import Unsup3dModelConfig, Unsup3dOutput
from training.unsup3d.terms import Formation


def _grey(values: Tensor) -> Tensor:
    """(B, 1, S, S) or (B, S, S) in [0, 1] -> (B, 3, S, S)."""
    if values.dim() == 3:
        values = values[:, None]
    return values.expand(-1, 3, -1, -1)


def _depth(depth: Tensor, config: Unsup3dModelConfig) -> Tensor:
    """Depths (B, S, S) as grey (B, 3, S, S): depth_min white, depth_max and beyond black."""
    near = (config.depth_max - depth) / (config.depth_max - config.depth_min)
    return _grey(near.clamp(0.0, 1.0))


def picture_grid(
    images: Tensor,
    output: Unsup3dOutput,
    formation: Formation,
    config: Unsup3dModelConfig,
    depth_gt: Tensor | None = None,
) -> Tensor:
    """The grid (3, B S, K S) of images (B, 3, S, S) and their predictions (module docstring)."""
    size = images.shape[-1]
    columns = [images, formation.image]
    if formation.flip_image is not None:
        columns.append(formation.flip_image)
    shading = formation.shading
    columns += [
        output.canon_albedo,
        _grey(shading.shading.clamp(0.0, 1.0)),
        shading.image,
        (shading.normal + 1.0) / 2.0,
        _depth(output.canon_depth, config),
        _depth(formation.depth, config) * formation.coverage[:, None],
    ]
    if depth_gt is not None:
        columns.append(_depth(depth_gt, config))
    confidence = 1.0 / (1.0 + output.conf_photometric)  # (B, 2, S, S)
    channels = 2 if formation.flip_image is not None else 1
    columns += [_grey(confidence[:, c : c + 1]) for c in range(channels)]
    columns.append(_grey(1.0 / (1.0 + output.conf_perceptual[:, :1])))  # (B, 3, S / 4, S / 4)
    columns = [
        F.interpolate(c, size=(size, size), mode="nearest") if c.shape[-1] != size else c for c in columns
    ]
    rows = torch.cat([c.clamp(0.0, 1.0) for c in columns], dim=3)  # (B, 3, S, K S)
    return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1])
