"""The loss terms of one ``adaptive-flow`` training step (the package docstring lists them, with the paper's
equation numbers).

Each function returns named terms for ``training.losses.compose.weighted_total``: a tensor, or a
zero-argument function computed only when its weight is not 0 (``Term``). They read what the step shares,
``StepInputs`` (the prediction, its texture and renders, the photos at full and at render size), and the
network's fixed mesh and UV layout, ``Topology``:

- ``photo_terms``: ``mask`` (eq. 1), ``texture`` (eq. 10 + the perceptual distance), ``texture_dt`` and
  ``alignment`` (eq. 12);
- ``shape_terms``: ``laplacian`` (eq. 4-5), ``flatten`` (eq. 6), ``deformation`` (eq. 3);
- ``adversarial_terms``: ``gan`` (eq. 37-39) and ``fid`` (eq. 42-47) on random views rendered once for both;
- ``part_terms``: ``part_probability`` (eq. 14) and ``part_chamfer`` (eq. 13) against the part maps.

The networks they need (VGG, the FID features) come as functions of the device, called only when the term
that needs them is computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from backend.geometry.ops import EdgeAdjacency, deformation_loss, edge_adjacent_faces, uniform_laplacian
from backend.models.adaptive_flow import AdaptiveFlowModel, AdaptiveFlowOutput
from backend.models.discriminator import Discriminator
from backend.render.settings import RasterSettings
from backend.render.uv import uv_rasterize
from training.adaptive_flow.config import AdaptiveFlowTrainConfig
from training.adaptive_flow.views import Renders, random_views, resize
from training.losses.adversarial import grad_reverse, wgan_critic_loss
from training.losses.camera import weighted_by_hypothesis
from training.losses.compose import Term, weighted_total
from training.losses.fid import FidFeatures, fid_loss
from training.losses.parts import part_chamfer_loss, part_probability_loss, render_part_probabilities
from training.losses.regularisers import softras_flatten, softras_laplacian
from training.losses.silhouette import iou_loss
from training.losses.texture import (
    VggFeatures,
    distance_transform_barrier,
    face_flow_means,
    face_pixel_means,
    flow_alignment_loss,
    perceptual_loss,
    texture_dt_loss,
)


@dataclass(frozen=True)
class StepInputs:
    """What the loss terms of one training step share: the prediction, its texture and renders, the photos."""

    network: AdaptiveFlowModel
    output: AdaptiveFlowOutput
    texture: Tensor  # (B, Ht, Wt, 3)
    renders: Renders
    image: Tensor  # (B, 3, S, S)
    mask: Tensor  # (B, 1, S, S)
    small_image: Tensor  # (B, 3, s, s), s = render_size
    small_mask: Tensor  # (B, 1, s, s)


@dataclass(frozen=True)
class Topology:
    """What the losses need of the network's fixed mesh and UV layout, on one device."""

    laplacian: Tensor  # (V, V) uniform Laplacian of the template's edges
    adjacency: EdgeAdjacency  # the two faces beside each edge (flatten term)
    texel_face: Tensor  # (Ht, Wt) face of each texel of the flow image, -1 where no face

    @staticmethod
    def build(network: AdaptiveFlowModel) -> Topology:
        faces, config = network.faces, network.config
        texel_face, _ = uv_rasterize(
            network.uvs.cpu(), network.face_uvs.cpu(), config.flow_height, config.flow_width
        )
        return Topology(
            uniform_laplacian(faces, network.num_vertices, device=faces.device),
            edge_adjacent_faces(faces),
            texel_face.to(faces.device),
        )


def photo_terms(
    shared: StepInputs,
    topology: Topology,
    perceptual_net: Callable[[torch.device], VggFeatures],
    perceptual_weight: float,
) -> tuple[dict[str, Term], dict[str, Tensor]]:
    """``mask`` (eq. 1) and ``texture`` (eq. 10 plus ``perceptual_weight`` x the perceptual distance at
    the most probable hypothesis, also logged as ``perceptual``), probability-weighted over the
    hypotheses; ``texture_dt`` and ``alignment`` (eq. 12) of the flow."""
    network, output, renders = shared.network, shared.output, shared.renders
    hypotheses = output.probs.shape[1]
    items = torch.arange(len(shared.image), device=shared.image.device)
    alpha = renders.all_views.alpha[..., 0]  # (B H, s, s)
    target = shared.small_mask[:, 0].repeat_interleave(hypotheses, 0)
    mask = weighted_by_hypothesis(iou_loss(alpha, target).view(-1, hypotheses), output.probs).mean()
    rgb = renders.all_views.rgb.permute(0, 3, 1, 2)  # (B H, 3, s, s)
    photo = (shared.small_image * shared.small_mask).repeat_interleave(hypotheses, 0)
    pixel = ((rgb * target[:, None] - photo).abs().mean(dim=(1, 2, 3))).view(-1, hypotheses)

    def perceptual() -> Tensor:
        best_rgb = rgb.view(-1, hypotheses, *rgb.shape[1:])[items, renders.best]  # (B, 3, s, s)
        net = perceptual_net(shared.image.device)
        return perceptual_loss(
            net, best_rgb * shared.small_mask, shared.small_image * shared.small_mask
        ).mean()

    texture, texture_parts = weighted_total(
        {"pixel": weighted_by_hypothesis(pixel, output.probs).mean(), "perceptual": perceptual},
        {"pixel": 1.0, "perceptual": perceptual_weight},
    )
    texel_face = topology.texel_face
    barrier = distance_transform_barrier(shared.mask)
    texture_dt = texture_dt_loss(output.flow, barrier, (texel_face >= 0).float()).mean()
    face_index = renders.all_views.face_index.view(-1, hypotheses, *alpha.shape[1:])
    best_faces = face_index[items, renders.best]  # (B, s, s)
    flow_means, _ = face_flow_means(output.flow, texel_face, network.num_faces)
    pixel_means, weights = face_pixel_means(best_faces, network.num_faces)
    alignment = flow_alignment_loss(flow_means, pixel_means, weights).mean()
    logs = {"perceptual": texture_parts["perceptual"]} if "perceptual" in texture_parts else {}
    return {"mask": mask, "texture": texture, "texture_dt": texture_dt, "alignment": alignment}, logs


def shape_terms(shared: StepInputs, topology: Topology) -> dict[str, Term]:
    """``laplacian`` (eq. 4-5) and ``flatten`` (eq. 6) of the meshes, ``deformation`` (eq. 3) of the
    offsets (always computed: the deformation weight switches on during the run)."""
    faces, vertices = shared.network.faces, shared.output.vertices
    return {
        "laplacian": softras_laplacian(vertices, faces, topology.laplacian).mean(),
        "flatten": softras_flatten(vertices, faces, topology.adjacency).mean(),
        "deformation": deformation_loss(shared.output.offsets).mean(),
    }


def adversarial_terms(
    shared: StepInputs,
    critic: Discriminator,
    config: AdaptiveFlowTrainConfig,
    settings: RasterSettings,
    fid_net: Callable[[torch.device], FidFeatures],
) -> dict[str, Term]:
    """``gan`` (the WGAN-GP critic loss through gradient reversal, eq. 37-39) and ``fid`` (eq. 42-47)
    between the masked photos and renders turned by random azimuths, each computed only when weighted;
    the random views are rendered once for both."""

    @functools.cache
    def views() -> tuple[Tensor, Tensor]:
        fake = random_views(
            shared.network, shared.output, shared.texture, shared.renders.best_camera, settings,
            config.random_azimuth,
        )  # fmt: skip
        real = torch.cat([shared.small_image * shared.small_mask, shared.small_mask], dim=1)
        return real, fake  # (B, 4, s, s) each

    def gan() -> Tensor:
        real, fake = views()
        critic_loss, _ = wgan_critic_loss(
            critic, real, grad_reverse(fake, config.grl_weight), config.gradient_penalty
        )
        return critic_loss

    def fid() -> Tensor:
        real, fake = views()
        return fid_loss(fid_net(shared.image.device), real[:, :3], fake[:, :3])

    return {"gan": gan, "fid": fid}


def part_terms(
    shared: StepInputs,
    batch: Mapping[str, Any],
    step: int,
    config: AdaptiveFlowTrainConfig,
    settings: RasterSettings,
    template: Tensor | None,
) -> dict[str, Term]:
    """Stage 2: ``part_probability`` (eq. 14, the vertex parts rendered at the most probable camera) and
    ``part_chamfer`` (eq. 13, projected part vertices at every hypothesis, probability-weighted) against
    the batch's part maps, each computed only when weighted (``loss_weights`` zeroes both without part
    maps or semantic template: ``template``, the (V, P + 1) vertex parts). ``step`` seeds the Chamfer
    term's pixel samples."""
    network, output = shared.network, shared.output
    hypotheses = output.probs.shape[1]

    @functools.cache
    def parts() -> tuple[Tensor, Tensor]:
        if template is None:
            raise ValueError("the part terms need the vertex segmentation (vertex_parts)")
        maps = resize(batch["parts"], config.render_size)  # (B, P + 1, s, s)
        return maps, template.to(output.vertices.device)  # (V, P + 1)

    def probability() -> Tensor:
        maps, vertex_parts = parts()
        rendered = render_part_probabilities(
            output.vertices, network.faces, shared.renders.best_camera, vertex_parts, settings
        )
        return part_probability_loss(rendered, maps).mean()

    def chamfer() -> Tensor:
        maps, vertex_parts = parts()
        projected = network.all_cameras(output).project(output.vertices.repeat_interleave(hypotheses, 0))
        distances = part_chamfer_loss(
            projected[..., :2], _vertex_labels(vertex_parts), maps.repeat_interleave(hypotheses, 0),
            config.part_points, torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + step),
        ).view(-1, hypotheses)  # fmt: skip
        return weighted_by_hypothesis(distances, output.probs).mean()

    return {"part_probability": probability, "part_chamfer": chamfer}


def _vertex_labels(vertex_parts: Tensor) -> Tensor:
    """(V,) most probable part of each vertex, -1 for background or never-seen vertices."""
    labels = vertex_parts.argmax(dim=1)
    return torch.where((labels == 0) | (vertex_parts.sum(1) <= 0), torch.full_like(labels, -1), labels)
