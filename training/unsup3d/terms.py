"""One step's image formation and loss terms of Unsup3d (the reference's ``forward``), for the trainer.

- ``form_images(output, model_config, flip) -> Formation``: with ``flip`` both branches of
  ``backend.models.unsup3d.reconstruct`` (the canonical depth and albedo, and their left-right flips,
  shaded by the predicted light and warped to the predicted view; the losses' mask is the pixels both
  reconstructions cover); without it (the no-symmetry ablation) the first branch alone, its own coverage
  as the mask. ``Formation.coverage`` is the first branch's own coverage as the reference defines it for
  its metrics (the view depth below ``background_depth``).
- ``loss_terms(formation, output, images, confidence, features) -> dict``: the unweighted terms
  (batch means of ``training.losses.unsup3d``'s per-image values): ``photometric`` (confidence-weighted L1
  of the input's reconstruction, images compared in [-1, 1] as the reference does), ``perceptual``
  (VGG16 relu3_3 with its Gaussian confidence) and, with the flip,
  ``photometric_flip`` and ``perceptual_flip``. The confidences are the confidence network's channel 0
  (input) and 1 (flip), or, without ``confidence``, None (sigma 1: the no-confidence ablation). Without
  ``features`` (lambda_perc 0) there are no perceptual terms. The perceptual network sees the
  reconstructions with the uncovered pixels grey (the reference's reconstruction is 0 in [-1, 1] there),
  the reconstructions and the input in one batch.
- ``depth_smoothness(depth, depth_min, depth_max)``: the reference's optional ``loss_depth_sm`` (used only
  for its synthetic cars, weight 0.1): mean absolute neighbour differences of the canonical depth over the
  depth range. The reference takes it before the border clamp; the network's output here is clamped
  already, which adds the two clamped columns' steps.
- ``loss_weights(flip, flip_weight, perceptual_weight, perceptual)``: ``photometric`` 1, ``photometric_flip``
  lambda_flip, ``perceptual`` lambda_perc, ``perceptual_flip`` lambda_perc lambda_flip (the reference's
  ``l1 + lf l1_flip + lp (perc + lf perc_flip)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from backend.models.unsup3d import (
    Shading,
    Unsup3dModelConfig,
    Unsup3dOutput,
    reconstruct,
    shade,
    warp_to_view,
)
from training.losses.unsup3d import perceptual_loss, photometric_loss

Features = Callable[[Tensor], Tensor]
"""Perceptual features: images (B, 3, S, S) in [0, 1] -> (B, C, S / 4, S / 4)."""


@dataclass
class Formation:
    """The reconstructions of one batch of B images, S x S.

    Attributes:
        shading: ``Shading`` of the canonical depth and albedo (normals (B, 3, S, S), shading
            (B, 1, S, S), canonical image (B, 3, S, S)).
        image: (B, 3, S, S) the input's reconstruction, 0 outside ``mask``.
        flip_image: (B, 3, S, S) the reconstruction from the flipped depth and albedo, or None without flip.
        mask: (B, 1, S, S) the pixels the losses compare (detached).
        depth: (B, S, S) the view's depth of the input's reconstruction (``background_depth`` uncovered).
        coverage: (B, S, S) 1 where the input's reconstruction covers the pixel (the metrics' mask).
    """

    shading: Shading
    image: Tensor
    flip_image: Tensor | None
    mask: Tensor
    depth: Tensor
    coverage: Tensor


def form_images(output: Unsup3dOutput, config: Unsup3dModelConfig, flip: bool) -> Formation:
    """Shade and warp ``output``'s canonical maps (module docstring)."""
    if flip:
        both = reconstruct(output, config)
        return Formation(
            shading=both.canon_shading,
            image=both.image,
            flip_image=both.flip_image,
            mask=both.mask,
            depth=both.depth,
            coverage=(both.depth < config.background_depth).to(both.depth.dtype),
        )
    shading = shade(
        output.canon_albedo, output.canon_depth, output.ambient, output.diffuse, output.light_direction,
        config.fov,
    )  # fmt: skip
    warp = warp_to_view(
        shading.image, output.canon_depth, output.view, config.fov, config.pivot_depth,
        background_depth=config.background_depth,
    )  # fmt: skip
    mask = warp.mask.detach()
    return Formation(
        shading=shading,
        image=warp.image * mask,
        flip_image=None,
        mask=mask,
        depth=warp.depth,
        coverage=(warp.depth < config.background_depth).to(warp.depth.dtype),
    )


def _signed(images: Tensor) -> Tensor:
    """Images in [0, 1] as the reference's [-1, 1]."""
    return images * 2.0 - 1.0


def loss_terms(
    formation: Formation,
    output: Unsup3dOutput,
    images: Tensor,
    confidence: bool,
    features: Features | None,
) -> dict[str, Tensor]:
    """The unweighted terms (module docstring) for input images (B, 3, S, S) in [0, 1]; ``features`` None
    skips the perceptual terms."""
    conf_photometric = output.conf_photometric if confidence else None  # (B, 2, S, S)
    conf_perceptual = output.conf_perceptual if confidence else None  # (B, 2, S / 4, S / 4)

    def sigma(maps: Tensor | None, channel: int) -> Tensor | None:
        return None if maps is None else maps[:, channel : channel + 1]

    mask = formation.mask
    reconstructions = [formation.image]
    if formation.flip_image is not None:
        reconstructions.append(formation.flip_image)
    terms: dict[str, Tensor] = {}
    names = ("", "_flip")
    for channel, reconstruction in enumerate(reconstructions):
        terms[f"photometric{names[channel]}"] = photometric_loss(
            _signed(reconstruction), _signed(images), sigma(conf_photometric, channel), mask
        ).mean()
    if features is not None:
        grey = 0.5 * (1.0 - mask)  # the reference's uncovered pixels: 0 in [-1, 1]
        batch = images.shape[0]
        stacked = torch.cat([*(r + grey for r in reconstructions), images])  # ((K + 1) B, 3, S, S)
        all_features = features(stacked)  # ((K + 1) B, C, S / 4, S / 4)
        target = all_features[-batch:]
        for channel in range(len(reconstructions)):
            terms[f"perceptual{names[channel]}"] = perceptual_loss(
                all_features[channel * batch : (channel + 1) * batch],
                target,
                sigma(conf_perceptual, channel),
                mask,
            ).mean()
    return terms


def depth_smoothness(depth: Tensor, depth_min: float, depth_max: float) -> Tensor:
    """The reference's ``loss_depth_sm`` of canonical depths (B, S, S): the mean absolute difference of
    vertical neighbours plus that of horizontal neighbours, over the depth range."""
    span = depth_max - depth_min
    vertical = ((depth[:, :-1, :] - depth[:, 1:, :]) / span).abs().mean()
    horizontal = ((depth[:, :, :-1] - depth[:, :, 1:]) / span).abs().mean()
    return vertical + horizontal


def loss_weights(
    flip: bool, flip_weight: float, perceptual_weight: float, perceptual: bool
) -> dict[str, float]:
    """The weights of the terms ``loss_terms`` gives with the same switches (module docstring)."""
    weights = {"photometric": 1.0}
    if flip:
        weights["photometric_flip"] = flip_weight
    if perceptual:
        weights["perceptual"] = perceptual_weight
        if flip:
            weights["perceptual_flip"] = perceptual_weight * flip_weight
    return weights
