"""Texture-flow losses of the adaptive-flow method (seed paper sec. 3.1; CMR/UMR's texture terms).

Conventions: images (B, 3, H, W) in [0, 1]; masks (B, 1, S, S); a *flow* (B, Ht, Wt, 2) holds, for each
texel, the image point it samples in torch ``grid_sample`` coordinates (x right, y DOWN, in [-1, 1],
``align_corners=False``).

- ``VggFeatures``: a frozen torchvision VGG16 feature extractor tapping relu1_2, relu2_2, relu3_3,
  relu4_3 and relu5_3 (or only the first ``layers`` of them); ImageNet weights through
  ``training.pretrained`` (never downloaded unless asked, random initialisation when absent).
- ``perceptual_loss``: LPIPS's uncalibrated distance (CMR/UMR's "PNet"): sum over taps of the spatial
  mean of ``|f_p / |f_p| - f_t / |f_t||^2``, features unit-normalised over channels at each position.
- ``distance_transform_barrier`` and ``texture_dt_loss``: CMR's ``tex_dt`` term. The barrier image is
  ``sigmoid(50 (dt_out - dt_in) / S)``: ~0 deep inside the mask, 0.5 on its boundary, ~1 far outside;
  sampling it at the flow points penalises texels that take their colour from the background.
- ``face_flow_means``, ``face_pixel_means`` and ``flow_alignment_loss``: eq. 12. For each face, the mean
  flow of its texels (where the texture says the face is in the image) is pulled towards the mean
  pixel centre of the pixels the renderer shows it at (SoftRas's pseudo label, hard aggregation here).
  The texel -> face map comes from ``backend.render.uv.uv_rasterize``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from scipy.ndimage import distance_transform_edt
from torch import Tensor, nn

from training.pretrained import imagenet_encoder, normalise_imagenet

VGG_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
"""Names of the VGG16 activations ``VggFeatures`` returns, in order."""

_TAP_ENDS = (4, 9, 16, 23, 30)
"""Index (exclusive) in ``vgg16.features`` of the end of each tap's slice (relu1_2 is module 3)."""

BARRIER_SHARPNESS = 50.0
"""CMR's ``k`` in ``sigmoid(k (dt_out - dt_in) / S)``."""

NORM_EPS = 1e-10
"""LPIPS's epsilon in the channel unit-normalisation of features."""


class VggFeatures(nn.Module):
    """Frozen VGG16 activations at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the first ``layers``).

    Always in eval mode with ``requires_grad`` False on its weights; gradients still reach the input.

    Attributes:
        pretrained: True when the weights are torchvision's ImageNet weights.
        layers: number of taps returned (1..5); fewer taps build and run faster (CPU tests).
    """

    def __init__(self, features: nn.Sequential | None = None, layers: int = 5, pretrained: bool = False):
        """``features``: torchvision ``vgg16().features`` (31 modules); None builds a random one."""
        super().__init__()
        if not 1 <= layers <= len(VGG_TAPS):
            raise ValueError(f"layers must lie in 1..{len(VGG_TAPS)}, got {layers}")
        if features is None:
            features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
        if len(features) < _TAP_ENDS[layers - 1]:
            raise ValueError(f"features have {len(features)} modules, VGG16's have 31")
        starts = (0, *_TAP_ENDS[:-1])
        self.slices = nn.ModuleList(
            nn.Sequential(*(features[i] for i in range(start, end)))
            for start, end in zip(starts[:layers], _TAP_ENDS[:layers], strict=True)
        )
        self.layers = layers
        self.pretrained = pretrained
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def build(cls, policy: str = "auto", path: str | Path | None = None, layers: int = 5) -> VggFeatures:
        """VGG16 features with ImageNet weights when ``training.pretrained``'s policy finds them."""
        encoder = imagenet_encoder("vgg16", policy, path)
        features = encoder.model.features
        if not isinstance(features, nn.Sequential):
            raise TypeError(f"vgg16.features is a {type(features).__name__}, expected nn.Sequential")
        return cls(features, layers, encoder.pretrained)

    def train(self, mode: bool = True) -> Self:
        """Stays in eval mode: the extractor is frozen."""
        return super().train(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> ``layers`` activations (B, C_k, H / 2^k, W / 2^k)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        x = normalise_imagenet(images)
        taps = []
        for block in self.slices:
            x = block(x)
            taps.append(x)
        return taps


def _unit_channels(features: Tensor) -> Tensor:
    """Features (B, C, H, W) divided by their L2 norm over channels at each position."""
    norm = torch.sqrt((features * features).sum(dim=1, keepdim=True))  # (B, 1, H, W)
    return features / (norm + NORM_EPS)


def perceptual_loss(features: nn.Module, pred: Tensor, target: Tensor) -> Tensor:
    """(B,) LPIPS's uncalibrated distance between images pred and target (B, 3, H, W) in [0, 1].

    ``features`` maps images (N, 3, H, W) to a list of activations (N, C_k, H_k, W_k) (``VggFeatures``).
    Sum over taps of the spatial mean of the squared distance of the channel-normalised activations;
    0 for identical images, and unchanged when every activation vector is scaled by a positive factor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(pred.shape)}")
    batch = pred.shape[0]
    taps: Sequence[Tensor] = features(torch.cat([pred, target]))
    total = pred.new_zeros(batch)
    for tap in taps:
        unit = _unit_channels(tap)  # (2B, C, h, w)
        difference = (unit[:batch] - unit[batch:]).pow(2).sum(dim=1)  # (B, h, w)
        total = total + difference.mean(dim=(1, 2))
    return total


@torch.no_grad()
def distance_transform_barrier(mask: Tensor) -> Tensor:
    """CMR's texture barrier (B, 1, S, S) for masks (B, 1, S, S) (binarised at 0.5); no gradient.

    ``sigmoid(50 (dt_out - dt_in) / S)`` with dt_out the Euclidean distance in pixels from a background
    pixel to the nearest mask pixel (0 inside) and dt_in that from a mask pixel to the nearest
    background pixel (0 outside), by scipy on the CPU; the result is on the mask's device and dtype.
    Pixel centres on either side of the boundary get values summing to 1, so the bilinear value on
    the boundary itself is 0.5. An empty mask gives 1 everywhere, a full one 0.
    """
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != mask.shape[3]:
        raise ValueError(f"mask must have shape (B, 1, S, S), got {tuple(mask.shape)}")
    size = mask.shape[-1]
    inside = (mask[:, 0] > 0.5).cpu().numpy()  # (B, S, S) bool
    barriers = np.empty(inside.shape, dtype=np.float64)
    for b, item in enumerate(inside):
        if not item.any():
            barriers[b] = 1.0
        elif item.all():
            barriers[b] = 0.0
        else:
            dt_out = distance_transform_edt(~item)  # 0 on the mask
            dt_in = distance_transform_edt(item)  # 0 on the background
            barriers[b] = 1.0 / (1.0 + np.exp(-BARRIER_SHARPNESS * (dt_out - dt_in) / size))
    dtype = mask.dtype if mask.is_floating_point() else torch.get_default_dtype()
    return torch.from_numpy(barriers).to(device=mask.device, dtype=dtype)[:, None]


def texture_dt_loss(flow: Tensor, dt: Tensor, texel_weight: Tensor | None = None) -> Tensor:
    """(B,) mean barrier value at the flow points: flow pointing outside the mask costs (CMR's tex_dt).

    Args:
        flow: (B, Ht, Wt, 2) texture flow in grid_sample coordinates.
        dt: (B, 1, S, S) barrier images (``distance_transform_barrier``), sampled bilinearly
            (``align_corners=False``, border padding).
        texel_weight: (Ht, Wt) non-negative weights; the mean is weighted, so texels of weight 0
            (e.g. outside every UV triangle) do not count. None weights every texel equally.
    """
    if flow.dim() != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (B, Ht, Wt, 2), got {tuple(flow.shape)}")
    if dt.dim() != 4 or dt.shape[:2] != (flow.shape[0], 1):
        raise ValueError(f"dt must have shape ({flow.shape[0]}, 1, S, S), got {tuple(dt.shape)}")
    sampled = F.grid_sample(
        dt.to(flow.dtype), flow, mode="bilinear", padding_mode="border", align_corners=False
    )[:, 0]  # (B, Ht, Wt)
    if texel_weight is None:
        return sampled.mean(dim=(1, 2))
    if texel_weight.shape != flow.shape[1:3]:
        raise ValueError(
            f"texel_weight must have shape {tuple(flow.shape[1:3])}, got {tuple(texel_weight.shape)}"
        )
    weight = texel_weight.to(sampled).clamp(min=0)  # (Ht, Wt)
    total = weight.sum()
    if not total > 0:
        raise ValueError("texel_weight has no positive entry")
    return (sampled * weight).sum(dim=(1, 2)) / total


def face_flow_means(flow: Tensor, texel_face: Tensor, num_faces: int) -> tuple[Tensor, Tensor]:
    """Mean flow over the texels of each face.

    Args:
        flow: (B, Ht, Wt, 2) texture flow.
        texel_face: (Ht, Wt) int64 face of each texel, -1 for texels of no face.
        num_faces: F.

    Returns:
        means: (B, F, 2) mean flow of each face's texels (0 for faces with no texel); differentiable.
        counts: (F,) int64 number of texels of each face.
    """
    if flow.dim() != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (B, Ht, Wt, 2), got {tuple(flow.shape)}")
    if texel_face.shape != flow.shape[1:3] or texel_face.dtype != torch.long:
        raise ValueError(
            f"texel_face must be int64 of shape {tuple(flow.shape[1:3])}, "
            f"got {texel_face.dtype} {tuple(texel_face.shape)}"
        )
    if texel_face.numel() and int(texel_face.max()) >= num_faces:
        raise ValueError(f"texel_face holds face {int(texel_face.max())}, but there are {num_faces} faces")
    batch = flow.shape[0]
    faces = texel_face.reshape(-1).to(flow.device)  # (Ht * Wt,)
    keep = faces >= 0
    index = faces[keep]  # (N,)
    values = flow.reshape(batch, -1, 2)[:, keep]  # (B, N, 2)
    sums = flow.new_zeros(batch, num_faces, 2).index_add(1, index, values)  # (B, F, 2)
    counts = torch.bincount(index, minlength=num_faces)  # (F,)
    return sums / counts.clamp(min=1).to(flow.dtype)[None, :, None], counts


def face_pixel_means(face_index: Tensor, num_faces: int) -> tuple[Tensor, Tensor]:
    """Mean pixel centre of the pixels each face is visible at: eq. 12's pseudo label, hard aggregation.

    Args:
        face_index: (B, H, W) int64 visible face per pixel, -1 on the background
            (``RenderOutput.face_index``), row 0 at the top.
        num_faces: F.

    Returns:
        means: (B, F, 2) mean pixel centre in grid_sample coordinates (x right, y down; pixel (i, j) has
            its centre at ((2j + 1) / W - 1, (2i + 1) / H - 1)); 0 for faces not visible.
        weights: (B, F) number of pixels showing each face (float).
    """
    if face_index.dim() != 3 or face_index.dtype != torch.long:
        raise ValueError(
            f"face_index must be int64 of shape (B, H, W), got {face_index.dtype} {tuple(face_index.shape)}"
        )
    if face_index.numel() and int(face_index.max()) >= num_faces:
        raise ValueError(f"face_index holds face {int(face_index.max())}, but there are {num_faces} faces")
    batch, height, width = face_index.shape
    device, dtype = face_index.device, torch.get_default_dtype()
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1  # (H,)
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1  # (W,)
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)  # (H * W, 2)
    flat = face_index.reshape(batch, -1)  # (B, H * W)
    keep = flat >= 0
    item = torch.arange(batch, device=device)[:, None].expand_as(flat)
    index = (item * num_faces + flat)[keep]  # (N,) into B * F
    points = centres.expand(batch, -1, -1)[keep]  # (N, 2)
    sums = torch.zeros(batch * num_faces, 2, device=device, dtype=dtype).index_add(0, index, points)
    counts = torch.zeros(batch * num_faces, device=device, dtype=dtype).index_add(
        0, index, torch.ones_like(index, dtype=dtype)
    )
    means = sums / counts.clamp(min=1)[:, None]
    return means.view(batch, num_faces, 2), counts.view(batch, num_faces)


def flow_alignment_loss(flow_means: Tensor, pixel_means: Tensor, weights: Tensor) -> Tensor:
    """(B,) eq. 12: mean over visible faces of ``|flow mean - pixel mean|_2``.

    Args:
        flow_means: (B, F, 2) from ``face_flow_means``.
        pixel_means: (B, F, 2) from ``face_pixel_means``; a label, detached here.
        weights: (B, F); faces with weight <= 0 are ignored (not visible, or, when the caller multiplies
            in ``counts > 0``, without texels). Items with no such face get 0.
    """
    if flow_means.shape != pixel_means.shape or flow_means.dim() != 3 or flow_means.shape[-1] != 2:
        raise ValueError(
            f"flow_means and pixel_means must both be (B, F, 2), got {tuple(flow_means.shape)} "
            f"and {tuple(pixel_means.shape)}"
        )
    if weights.shape != flow_means.shape[:2]:
        raise ValueError(f"weights must have shape {tuple(flow_means.shape[:2])}, got {tuple(weights.shape)}")
    visible = (weights > 0).to(flow_means.dtype)  # (B, F)
    distance = torch.linalg.vector_norm(flow_means - pixel_means.detach(), dim=-1)  # (B, F)
    return (distance * visible).sum(dim=1) / visible.sum(dim=1).clamp(min=1)
