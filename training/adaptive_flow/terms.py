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

The step makes no host synchronisation of its own: ``Topology`` holds the fixed texel lists (built once),
``distance_barrier`` is CMR's distance-transform barrier computed on the masks' device (scipy's exact values;
scipy itself on the CPU),
and ``face_flow_means`` / ``face_pixel_means`` give ``training.losses.texture``'s values without boolean
masking (tests/training/test_adaptive_flow_sync_free.py checks both).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
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
    BARRIER_SHARPNESS,
    VggFeatures,
    distance_transform_barrier,
    flow_alignment_loss,
    perceptual_loss,
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
    """What the losses need of the network's fixed mesh and UV layout, on one device (built once, so the
    step itself needs no data-dependent shapes: no host synchronisation)."""

    laplacian: Tensor  # (V, V) uniform Laplacian of the template's edges
    adjacency: EdgeAdjacency  # the two faces beside each edge (flatten term)
    texel_face: Tensor  # (Ht, Wt) face of each texel of the flow image, -1 where no face
    texel_position: Tensor  # (N,) int64 flat index (into Ht Wt) of each texel that has a face
    texel_face_index: Tensor  # (N,) int64 the face of each of those texels
    texel_counts: Tensor  # (F,) int64 texels of each face
    texel_weight: Tensor  # (Ht, Wt) 1 / N on texels of a face, 0 elsewhere (the texture_dt mean)

    @staticmethod
    def build(network: AdaptiveFlowModel) -> Topology:
        faces, config = network.faces, network.config
        texel_face, _ = uv_rasterize(
            network.uvs.cpu(), network.face_uvs.cpu(), config.flow_height, config.flow_width
        )  # (Ht, Wt) int64, on the CPU
        flat = texel_face.reshape(-1)
        position = torch.nonzero(flat >= 0)[:, 0]  # once per run, on the CPU
        if position.numel() == 0:
            raise ValueError("the UV layout covers no texel of the flow image")
        if int(flat.max()) >= network.num_faces:
            raise ValueError(f"the UV layout names face {int(flat.max())} of {network.num_faces}")
        weight = (texel_face >= 0).float() / position.numel()
        device = faces.device
        return Topology(
            uniform_laplacian(faces, network.num_vertices, device=device),
            edge_adjacent_faces(faces),
            texel_face.to(device),
            position.to(device),
            flat[position].to(device),
            torch.bincount(flat[position], minlength=network.num_faces).to(device),
            weight.to(device),
        )


def distance_barrier(mask: Tensor) -> Tensor:
    """CMR's texture barrier (B, 1, S, S) of masks (B, 1, S, S) (binarised at 0.5), on their device; no
    gradient. On the CPU it is ``training.losses.texture.distance_transform_barrier`` (scipy's exact
    Euclidean distance transform: no device to wait for); elsewhere ``dense_distance_barrier``, the same
    values without copying the masks to the host."""
    if mask.device.type == "cpu":
        return distance_transform_barrier(mask)
    return dense_distance_barrier(mask)


def dense_distance_barrier(mask: Tensor) -> Tensor:
    """``sigmoid(50 (dt_out - dt_in) / S)`` (B, 1, S, S) of masks (B, 1, S, S), computed with tensor
    operations on the masks' device, without a host synchronisation: the values of
    ``training.losses.texture.distance_transform_barrier`` (dt_out: the Euclidean distance in pixels from
    a background pixel to the nearest mask pixel, dt_in the reverse); no gradient.

    The exact squared distance is separable (Felzenszwalb and Huttenlocher): per row, the distance to the
    nearest feature pixel of the row (two cumulative maxima); then per column, ``min_y' (y - y')^2 +
    g(y')^2`` as a dense minimum over (S, S) pairs, in chunks of items (O(B S^3) work: cheap on a GPU,
    slower than scipy on a CPU). An empty mask gives 1 everywhere, a full one 0.
    """
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != mask.shape[3]:
        raise ValueError(f"mask must have shape (B, 1, S, S), got {tuple(mask.shape)}")
    size = mask.shape[-1]
    with torch.no_grad():
        inside = mask[:, 0] > 0.5  # (B, S, S)
        dt_out = _distance_to(inside)  # (B, S, S): 0 on the mask
        dt_in = _distance_to(~inside)  # 0 on the background
        dtype = mask.dtype if mask.is_floating_point() else torch.get_default_dtype()
        return torch.sigmoid(BARRIER_SHARPNESS * (dt_out - dt_in) / size).to(dtype)[:, None]


def _distance_to(feature: Tensor) -> Tensor:
    """(B, S, S) Euclidean distance of every pixel to the nearest True pixel of ``feature`` (B, S, S) bool;
    at least 2 S (not the true infinity) when an item has none."""
    batch, size = feature.shape[0], feature.shape[-1]
    far = 4 * size  # beyond any distance inside the image
    index = torch.arange(size, device=feature.device)  # (S,)

    def from_left(f: Tensor) -> Tensor:  # (B, S, S) distance to the nearest True at or left of each pixel
        return index - torch.where(f, index, index.new_full((), -far)).cummax(dim=-1).values

    rows = torch.minimum(from_left(feature), from_left(feature.flip(-1)).flip(-1)).float()  # (B, S, S)
    rows = rows.clamp(max=far).square()  # g^2, exact integers in fp32
    offsets = (index[:, None] - index[None, :]).float().square()[None, :, :, None]  # (1, S, S', 1)
    chunk = max(1, 2**26 // size**3)  # items per dense minimum (at most 2^26 elements)
    squared = torch.cat(
        [
            (offsets + rows[start : start + chunk, None]).amin(dim=2)  # (b, S, S', S) -> (b, S, S)
            for start in range(0, batch, chunk)
        ]
    )
    return squared.sqrt()


def face_flow_means(flow: Tensor, topology: Topology) -> Tensor:
    """(B, F, 2) mean flow (B, Ht, Wt, 2) over the texels of each face (0 for faces without texels): the
    values of ``training.losses.texture.face_flow_means`` from the topology's fixed texel lists, so without
    a data-dependent shape; differentiable."""
    batch, faces = flow.shape[0], topology.texel_counts.shape[0]
    values = flow.reshape(batch, -1, 2).index_select(1, topology.texel_position)  # (B, N, 2)
    sums = flow.new_zeros(batch, faces, 2).index_add(1, topology.texel_face_index, values)  # (B, F, 2)
    return sums / topology.texel_counts.clamp(min=1).to(flow.dtype)[None, :, None]


def face_pixel_means(face_index: Tensor, num_faces: int) -> tuple[Tensor, Tensor]:
    """The mean pixel centre (B, F, 2) of the pixels each face is visible at and their count (B, F), for
    ``face_index`` (B, H, W) int64 (-1 on the background): the values of
    ``training.losses.texture.face_pixel_means`` without its boolean masking (the background goes to an
    extra bin that is dropped), so without a host synchronisation."""
    batch, height, width = face_index.shape
    device, dtype = face_index.device, torch.get_default_dtype()
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1  # (H,)
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1  # (W,)
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)  # (H W, 2)
    bins = num_faces + 1
    item = torch.arange(batch, device=device)[:, None] * bins  # (B, 1)
    index = (item + face_index.reshape(batch, -1).clamp(min=-1) + 1).reshape(-1)  # (B H W,) into B (F + 1)
    sums = torch.zeros(batch * bins, 2, device=device, dtype=dtype).index_add(
        0, index, centres.repeat(batch, 1)
    )  # (B (F + 1), 2)
    counts = torch.zeros(batch * bins, device=device, dtype=dtype).index_add(
        0, index, torch.ones(index.shape, device=device, dtype=dtype)
    )  # (B (F + 1),)
    means = (sums / counts.clamp(min=1)[:, None]).view(batch, bins, 2)[:, 1:]
    return means, counts.view(batch, bins)[:, 1:]


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
    barrier = distance_barrier(shared.mask)  # (B, 1, S, S)
    sampled = F.grid_sample(
        barrier.to(output.flow.dtype),
        output.flow,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )[:, 0]  # (B, Ht, Wt)
    texture_dt = (sampled * topology.texel_weight.to(sampled.dtype)).sum(dim=(1, 2)).mean()  # CMR's tex_dt
    face_index = renders.all_views.face_index.view(-1, hypotheses, *alpha.shape[1:])
    best_faces = face_index[items, renders.best]  # (B, s, s)
    flow_means = face_flow_means(output.flow, topology)
    pixel_means, weights = face_pixel_means(best_faces, network.num_faces)
    alignment = flow_alignment_loss(flow_means, pixel_means, weights).mean()
    logs = {"perceptual": texture_parts["perceptual"]} if "perceptual" in texture_parts else {}
    return {"mask": mask, "texture": texture, "texture_dt": texture_dt, "alignment": alignment}, logs


def shape_terms(shared: StepInputs, topology: Topology) -> dict[str, Term]:
    """``laplacian`` (eq. 4-5) and ``flatten`` (eq. 6) of the meshes, ``deformation`` (eq. 3) of the
    offsets (always computed: the deformation weight switches on during the run)."""
    faces, vertices = shared.network.faces, shared.output.vertices
    laplacian = softras_laplacian(vertices, faces, topology.laplacian).mean()
    return {
        "laplacian": laplacian,
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
