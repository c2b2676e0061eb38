"""MeshInversion's inversion losses (eq. 5-7 of the seed paper), each a function returning one value per
batch item (B,), plus the photo as their target.

- ``chamfer_texture_distance(source, target, weight, bidirectional)``: eq. 5 with eq. 6's distance
  ``D = spatial(D_s) * (D_a + appearance_eps)`` between two sets of coloured points (``ColouredPoints``:
  values (B, N, C), NDC positions (B, N, 2), validity (B, N)); the spatial factor
  ``SpatialWeight`` = ``ReLU((eps_s + k D_s)^alpha - 1) + 1`` with ``eps_s = 1 - (2 k threshold)^2`` is a
  non-differentiable weight; ``D_a`` and ``D_s`` are squared L2 distances (the reference's
  ``distChamfer``). One direction (``min`` over the target for each source point, mean over the source)
  or both, averaged.
- ``pixel_chamfer_texture_loss``: L_CT-p, rendered foreground pixels against the photo's foreground
  pixels, colours in [-1, 1] as the reference compares them, one direction (rendered -> photo);
  ``points`` (8096) random foreground pixels of each image.
- ``feature_chamfer_texture_loss``: L_CT-f on feature maps (VGG-19 relu3_1 in the method): the cells
  whose area-pooled mask is >= 0.5, features L2-normalised over channels, both directions averaged.
- ``latent_prior(z)``: L_z, ``mean(z^2 / 2)`` over the latent dimensions (the negative log-likelihood
  of N(0, I) up to a constant).
- ``normal_smoothness_loss(vertices, faces, adjacency)``: L_smooth, ``sum over interior edges of
  (n_1 . n_2 - 1)^2`` for the unit normals of the two faces on the edge (ConvMesh's ``loss_flat``:
  the mean over faces of the three neighbours' terms times F / 2 is this sum).
- The ablation's conventional terms (the paper's Table 3), each (B,): ``pixel_l1_texture_loss`` (the
  rendering against the photo pixel by pixel, mean absolute difference over the pixels both masks
  cover), ``perceptual_texture_loss`` (Johnson et al.'s feature reconstruction loss: the mean squared
  difference of the two feature maps at the same positions) and ``iou_mask_loss`` (``1 - IoU`` of a
  soft silhouette and the mask). They assume pixel alignment, which is what the Chamfer losses avoid.
- L_CM, the Chamfer mask loss, is ``backend.fitting.targets.chamfer_mask_loss`` (shared with ``fit``);
  ``InversionTarget`` holds what it needs (distance field, mask points) beside the photo's pixels.

Memory: the pairwise distances of the texture terms are never all held. The nearest target of each
source point is found without gradients, ``chunk`` source points at a time (at most
``max(CHUNK_PAIRS, B * M)`` distances at once), then ``D`` is recomputed with gradients for the matched
pairs alone: the value and the gradient of ``min_j D_ij`` are those of ``D_ij*``, so the result equals
the dense formulation (up to ties) for the memory of O(B (N + M) C).

Sampling: random subsets are drawn from a CPU ``torch.Generator`` and moved to the data's device, so a
seed gives the same points on every device. NDC: x right, y up, -1..1 over the image, pixel centres
at ``(2 c + 1) / S - 1`` and ``1 - (2 r + 1) / S``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.fitting.targets import mask_points, outside_distance, resized_mask
from backend.geometry.metrics import mask_iou
from backend.geometry.ops import EdgeAdjacency, edge_adjacent_faces, face_normals

TEXTURE_POINTS = 8096
"""Random foreground pixels (or feature cells) per image of the Chamfer texture losses (the paper)."""
CHUNK_PAIRS = 1 << 22
"""Pairwise distances computed at once (about 16 MB of float32) by the nearest-neighbour search."""
FEATURE_MASK_THRESHOLD = 0.5
"""A feature cell is foreground when its area-pooled mask is at least this (the reference's)."""


@dataclass(frozen=True)
class SpatialWeight:
    """Eq. 6's spatial factor ``ReLU((eps + k d)^alpha - 1) + 1`` of a squared NDC distance ``d``, with
    ``eps = 1 - (2 k threshold)^2``: 1 for pixels closer than ``2 threshold`` (with k = alpha = 1),
    growing as ``eps + d`` beyond. The reference's values: threshold 0.16, k 1, alpha 1."""

    threshold: float = 0.16
    k: float = 1.0
    alpha: float = 1.0
    appearance_eps: float = 1.0
    """eps_a, added to the appearance distance so that identical colours far apart still cost."""

    def __post_init__(self) -> None:
        if not (self.k > 0 and self.alpha > 0 and self.threshold >= 0 and self.appearance_eps >= 0):
            raise ValueError(f"need k > 0, alpha > 0, threshold >= 0, appearance_eps >= 0; got {self}")

    @property
    def eps(self) -> float:
        return 1.0 - (2.0 * self.k * self.threshold) ** 2

    def __call__(self, squared_distance: Tensor) -> Tensor:
        """The factor (same shape as ``squared_distance``), never differentiable."""
        with torch.no_grad():
            base = (self.eps + self.k * squared_distance).clamp_min(0.0)
            return F.relu(base.pow(self.alpha) - 1.0) + 1.0


@dataclass(frozen=True)
class ColouredPoints:
    """B sets of up to N points with a value each (colour or feature).

    Attributes:
        values: (B, N, C) appearance, differentiable.
        xy: (B, N, 2) NDC positions (only ever used as a weight: no gradient flows to them).
        valid: (B, N) bool, which of the N slots hold a point (sets of different sizes are padded).
    """

    values: Tensor
    xy: Tensor
    valid: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.values.shape[0])


def _squared_distances(source: Tensor, target: Tensor) -> Tensor:
    """(B, n, M) squared L2 distances between rows of (B, n, C) and (B, M, C), >= 0, no gradient use."""
    cross = torch.baddbmm(
        target.pow(2).sum(-1)[:, None, :], source, target.transpose(1, 2), alpha=-2.0
    )  # |t|^2 - 2 s.t
    return (cross + source.pow(2).sum(-1)[:, :, None]).clamp_min(0.0)


@torch.no_grad()
def nearest_under_weight(
    source: ColouredPoints, target: ColouredPoints, weight: SpatialWeight, chunk_pairs: int = CHUNK_PAIRS
) -> Tensor:
    """(B, N) int64: for each source point the target point minimising eq. 6's ``D`` (0 where the target
    set is empty). ``target`` may have a batch of 1, shared by the B sources."""
    batch, count = source.values.shape[:2]
    values = target.values.detach().expand(batch, -1, -1)
    xy = target.xy.detach().expand(batch, -1, -1)
    blocked = ~target.valid.expand(batch, -1)[:, None, :]  # (B, 1, M)
    targets = max(int(values.shape[1]), 1)
    rows = max(1, chunk_pairs // (batch * targets))
    best = torch.zeros(batch, count, dtype=torch.int64, device=source.values.device)
    for start in range(0, count, rows):
        part = slice(start, start + rows)
        appearance = _squared_distances(source.values.detach()[:, part], values)
        spatial = _squared_distances(source.xy.detach()[:, part], xy)
        distance = weight(spatial) * (appearance + weight.appearance_eps)
        best[:, part] = distance.masked_fill(blocked, torch.inf).argmin(dim=2)
    return best


def _gather(points: Tensor, index: Tensor) -> Tensor:
    """``points[b, index[b, n]]`` for points (B or 1, M, C) and index (B, N): (B, N, C)."""
    expanded = points.expand(index.shape[0], -1, -1)
    return expanded.gather(1, index[..., None].expand(-1, -1, points.shape[-1]))


def one_sided_chamfer(
    source: ColouredPoints, target: ColouredPoints, weight: SpatialWeight, chunk_pairs: int = CHUNK_PAIRS
) -> Tensor:
    """(B,) ``mean over valid source points of min over valid target points of D`` (eq. 5, one term).

    Differentiable in both sets' values (not their positions). A batch item with no valid source point,
    or no valid target point, gives 0.
    """
    if target.values.shape[1] == 0 or source.values.shape[1] == 0:
        return source.values.new_zeros(source.batch_size) + 0 * source.values.sum()
    index = nearest_under_weight(source, target, weight, chunk_pairs)  # (B, N)
    matched_values = _gather(target.values, index)
    matched_xy = _gather(target.xy.detach(), index)
    appearance = (source.values - matched_values).pow(2).sum(-1)  # (B, N)
    spatial = weight((source.xy.detach() - matched_xy).pow(2).sum(-1))
    distance = spatial * (appearance + weight.appearance_eps)
    has_target = target.valid.expand(source.batch_size, -1).any(dim=1, keepdim=True)  # (B, 1)
    used = (source.valid & has_target).to(distance.dtype)
    return (distance * used).sum(1) / used.sum(1).clamp_min(1.0)


def chamfer_texture_distance(
    source: ColouredPoints,
    target: ColouredPoints,
    weight: SpatialWeight | None = None,
    *,
    bidirectional: bool = False,
    chunk_pairs: int = CHUNK_PAIRS,
) -> Tensor:
    """(B,) the Chamfer texture distance (module docstring): source -> target, or the mean of both
    directions when ``bidirectional`` (``target`` then needs the batch of ``source`` or 1)."""
    weight = weight or SpatialWeight()
    forward = one_sided_chamfer(source, target, weight, chunk_pairs)
    if not bidirectional:
        return forward
    batch = source.batch_size
    expanded = ColouredPoints(
        target.values.expand(batch, -1, -1), target.xy.expand(batch, -1, -1), target.valid.expand(batch, -1)
    )
    return (forward + one_sided_chamfer(expanded, source, weight, chunk_pairs)) / 2


def sample_foreground(mask: Tensor, limit: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Up to ``limit`` random foreground pixels of each of B masks (B, H, W) bool.

    Returns:
        index (B, L) int64 flat pixel indices (row * W + column) and valid (B, L) bool, with L the
        largest number of pixels any image gives (at most ``limit``); an image with fewer foreground
        pixels has them all, then invalid padding.
    """
    batch, height, width = mask.shape
    flat = mask.reshape(batch, height * width)
    keys = torch.rand(batch, height * width, generator=generator, device="cpu").to(mask.device)
    keys = keys.masked_fill(~flat, 2.0)  # background after every foreground pixel
    size = max(1, min(limit, int(flat.sum(1).max())))
    index = keys.topk(size, dim=1, largest=False).indices
    return index, flat.gather(1, index)


def pixel_centres(index: Tensor, height: int, width: int) -> Tensor:
    """NDC centres (..., 2) of flat pixel indices ``index`` (row * width + column), y up."""
    rows = torch.div(index, width, rounding_mode="floor")
    columns = index - rows * width
    x = (2 * columns.to(torch.float32) + 1) / width - 1
    y = 1 - (2 * rows.to(torch.float32) + 1) / height
    return torch.stack([x, y], dim=-1)


def image_points(image: Tensor, mask: Tensor, limit: int, generator: torch.Generator) -> ColouredPoints:
    """Up to ``limit`` random foreground pixels of images (B, H, W, C) under masks (B, H, W) bool:
    their values (differentiable in ``image``) and NDC centres."""
    batch, height, width, channels = image.shape
    index, valid = sample_foreground(mask, limit, generator)
    values = image.reshape(batch, height * width, channels).gather(
        1, index[..., None].expand(-1, -1, channels)
    )
    xy = pixel_centres(index, height, width).to(image.dtype)
    return ColouredPoints(values, xy, valid)


def pixel_chamfer_texture_loss(
    rendered: Tensor,
    rendered_mask: Tensor,
    target: ColouredPoints,
    generator: torch.Generator,
    *,
    points: int = TEXTURE_POINTS,
    weight: SpatialWeight | None = None,
    chunk_pairs: int = CHUNK_PAIRS,
) -> Tensor:
    """L_CT-p (B,): ``points`` random foreground pixels of each rendering (B, S, S, 3) in [0, 1] under
    its hard mask (B, S, S) bool, each matched to the photo's pixels ``target`` (a batch of 1, colours
    in [-1, 1], from ``InversionTarget``), one direction. Differentiable in ``rendered``."""
    source = image_points(rendered * 2 - 1, rendered_mask, points, generator)
    return chamfer_texture_distance(source, target, weight, chunk_pairs=chunk_pairs)


def feature_points(features: Tensor, mask: Tensor, limit: int, generator: torch.Generator) -> ColouredPoints:
    """Up to ``limit`` random foreground cells of feature maps (B, C, h, w), L2-normalised over C; a cell
    is foreground when the mask (B, S, S) float, area-pooled to (h, w), is >= ``FEATURE_MASK_THRESHOLD``."""
    pooled = F.adaptive_avg_pool2d(
        mask[:, None].to(features.dtype), (features.shape[-2], features.shape[-1])
    )[:, 0]
    cells = features.permute(0, 2, 3, 1)  # (B, h, w, C)
    found = image_points(cells, pooled >= FEATURE_MASK_THRESHOLD, limit, generator)
    return ColouredPoints(F.normalize(found.values, dim=-1), found.xy, found.valid)


def feature_chamfer_texture_loss(
    rendered_features: Tensor,
    rendered_mask: Tensor,
    target: ColouredPoints,
    generator: torch.Generator,
    *,
    points: int = TEXTURE_POINTS,
    weight: SpatialWeight | None = None,
    chunk_pairs: int = CHUNK_PAIRS,
) -> Tensor:
    """L_CT-f (B,): the rendering's feature cells (``rendered_features`` (B, C, h, w) under its mask
    (B, S, S)) against the photo's (``target``, from ``feature_points`` with a batch of 1), both
    directions averaged. Differentiable in both feature maps."""
    source = feature_points(rendered_features, rendered_mask, points, generator)
    return chamfer_texture_distance(source, target, weight, bidirectional=True, chunk_pairs=chunk_pairs)


def pixel_l1_texture_loss(rendered: Tensor, rendered_mask: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """L1 texture loss (B,): the mean over the pixels that both the rendering's hard mask (B, S, S) bool
    and the photo's ``mask`` (S, S) bool cover of the mean absolute colour difference between
    ``rendered`` (B, S, S, 3) and ``image`` (S, S, 3), both in [0, 1]; 0 where they share no pixel.
    Differentiable in ``rendered``."""
    both = (rendered_mask & mask[None]).to(rendered.dtype)  # (B, S, S)
    difference = (rendered - image[None]).abs().mean(-1)  # (B, S, S)
    return (difference * both).sum((1, 2)) / both.sum((1, 2)).clamp_min(1.0)


def perceptual_texture_loss(rendered_features: Tensor, target_features: Tensor) -> Tensor:
    """Perceptual texture loss (B,): ``mean over channels and cells of (f - f_target)^2`` for feature maps
    (B, C, h, w) of the renderings and (1, C, h, w) of the photo (Johnson et al.'s feature reconstruction
    loss; with ``VggFeatures`` each image is masked by its own silhouette). Differentiable in both."""
    if rendered_features.shape[1:] != target_features.shape[1:]:
        raise ValueError(
            f"feature maps differ: {tuple(rendered_features.shape)} vs {tuple(target_features.shape)}"
        )
    return (rendered_features - target_features).pow(2).mean((1, 2, 3))


def iou_mask_loss(alpha: Tensor, mask: Tensor) -> Tensor:
    """IoU mask loss (B,): ``1 - sum(a m) / sum(a + m - a m)`` of soft silhouettes ``alpha`` (B, S, S) in
    [0, 1] against the photo's ``mask`` (S, S) bool (the negative-IoU loss of CMR and SoftRas)."""
    return 1 - mask_iou(alpha, mask.to(alpha.dtype).expand_as(alpha), soft=True)


def latent_prior(z: Tensor) -> Tensor:
    """L_z (B,): ``mean over the D latent dimensions of z^2 / 2`` for z (B, D)."""
    return (z.pow(2) / 2).mean(dim=1)


def normal_smoothness_loss(vertices: Tensor, faces: Tensor, adjacency: EdgeAdjacency | None = None) -> Tensor:
    """L_smooth (B,): ``sum over interior edges of (n_1 . n_2 - 1)^2`` for vertices (B, V, 3) and faces
    (F, 3); 0 for a flat surface (module docstring)."""
    if adjacency is None:
        adjacency = edge_adjacent_faces(faces)
    normals = face_normals(vertices, faces)  # (B, F, 3)
    first = normals[:, adjacency.faces[:, 0]]
    second = normals[:, adjacency.faces[:, 1]]
    return ((first * second).sum(-1) - 1).pow(2).sum(-1)


@dataclass(frozen=True)
class InversionTarget:
    """The photo at the render size S, as the inversion losses compare with it.

    Attributes:
        image: (S, S, 3) float in [0, 1], the crop area-resized.
        mask: (S, S) bool, the area-resized mask thresholded at 0.5.
        distance: (S, S) NDC outside-distance field of ``mask`` (``chamfer_mask_loss``).
        mask_points: (M, 2) NDC centres of at most ``mask_points`` random mask pixels (``chamfer_mask_loss``).
        pixels: the photo's foreground pixels as ``ColouredPoints`` (batch of 1, colours in [-1, 1]),
            at most ``texture_points`` of them.
    """

    image: Tensor
    mask: Tensor
    distance: Tensor
    mask_points: Tensor
    pixels: ColouredPoints

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @staticmethod
    def build(
        image: np.ndarray,
        mask: np.ndarray,
        size: int,
        generator: torch.Generator,
        device: torch.device,
        *,
        mask_limit: int,
        texture_points: int = TEXTURE_POINTS,
    ) -> InversionTarget:
        """The crop ``image`` (S0, S0, 3) in [0, 1] and its ``mask`` (S0, S0) bool at ``size`` pixels."""
        small = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        binary = resized_mask(mask, size) > 0.5
        rgb = torch.from_numpy(np.ascontiguousarray(small)).to(device)
        on = torch.from_numpy(binary).to(device)
        pixels = image_points((rgb * 2 - 1)[None], on[None], texture_points, generator)
        return InversionTarget(
            image=rgb,
            mask=on,
            distance=outside_distance(binary).to(device),
            mask_points=mask_points(torch.from_numpy(binary), mask_limit, generator).to(device),
            pixels=pixels,
        )
