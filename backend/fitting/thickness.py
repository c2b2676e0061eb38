"""A thickness prior for a template fitted to one silhouette: depth beyond what the outline suggests is
penalised (issue 20).

A silhouette says nothing about depth. A bilaterally symmetric template fitted to it is also seen by the
mirrored camera (its mirror image is a second view), but only its extent in the view plane is observed:
the template otherwise keeps the sphere's roundness, 20-70 % too deep front to back, and the camera
azimuth stays wherever its hypothesis started (every azimuth explains the outline once the shape may
deform freely). The prior used here is the one of sketch-based modelling's inflation (Igarashi et al.'s
Teddy): an object is about as thick along the view as it is wide in the image at that point, like a
body of round cross-sections. From the mask:

- ``inside_distance(mask)``: (R, R) NDC distance from each mask pixel centre to the nearest background
  pixel centre (the exact Euclidean distance transform, so the same bits on every call); 0 off the mask.
- ``part_radius(mask)``: (R, R) for each mask pixel the radius of the largest disc inside the mask that
  covers it (the inverse medial axis transform: a thin tail next to a thick body gets the tail's radius,
  not the body's); found level by level, one binary dilation by a disc per radius in pixels.
- ``half_thickness_map(mask)``: (R, R) the round-section half thickness of each mask pixel,
  ``sqrt(d (2 r - d))`` for a pixel at inside distance ``d`` in a part of radius ``r`` (the half chord
  of a ball of radius ``r`` at depth ``d`` below its rim), 0 off the mask.

``thickness_loss(projected, depth_scale, half_thickness, slack)`` -> (B,): for vertices projected to
(x_ndc, y_ndc, depth) (B, V, 3), their depth in NDC units (``depth * depth_scale``, (B,)), the middle
depth of the body along each ray taken as the least-squares plane through the vertices' depths (exact for
an ellipsoid, whose chord midpoints lie on a plane), the mean over vertices of ``relu(|z - m| - slack *
h(p))^2`` with ``h`` the map sampled (bilinear, at the detached projection) where the vertex projects.
One-sided: a body thinner than the prior is not pushed out (a flat object stays flat); a body deeper than
``slack`` times the prior is pulled in, and an azimuth hypothesis that needs such a body loses the
selection.

Measured (issue 20, docs/BENCHMARKS.md): on held-out synthetic birds, cars and chairs the prior (weight
1) lowers the Chamfer distance and raises the birds' novel-view IoU, but costs the chairs (thin legs,
holes) and about 0.005 input-view IoU, so ``fit`` leaves it off by default (``thickness_weight``).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.imaging.distance_transform import distance_to_foreground


def inside_distance(mask: np.ndarray) -> Tensor:
    """(R, R) float32 NDC distance from each pixel centre of the (R, R) bool ``mask`` to the nearest
    background pixel centre (0 off the mask; the image border counts as background), on the CPU."""
    size = mask.shape[0]
    padded = np.pad(np.asarray(mask, dtype=bool), 1, constant_values=False)  # the border is outside
    pixels = distance_to_foreground(~padded)[1:-1, 1:-1]  # (R, R) exact, correctly rounded
    return torch.from_numpy(pixels * np.float32(2.0 / size))


def part_radius(mask: np.ndarray) -> Tensor:
    """(R, R) float32 NDC radius of the largest disc inside the (R, R) bool ``mask`` covering each pixel
    (module docstring), 0 off the mask, on the CPU."""
    size = mask.shape[0]
    distance = inside_distance(mask).numpy() * np.float32(size / 2)  # (R, R) pixels
    radius = distance.copy()
    for level in range(2, int(distance.max()) + 1):  # discs of radius >= level, centred where d >= level
        centres = (distance >= level).astype(np.uint8)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * level - 1, 2 * level - 1))
        covered = cv2.dilate(centres, disc).astype(bool) & mask  # binary: the same bits on every call
        radius[covered] = np.maximum(radius[covered], level)
    return torch.from_numpy(radius * np.float32(2.0 / size))


def half_thickness_map(mask: np.ndarray) -> Tensor:
    """(R, R) float32 NDC half thickness of a round-section body with the (R, R) bool ``mask`` as its
    outline (module docstring), 0 off the mask, on the CPU."""
    distance = inside_distance(mask)  # (R, R)
    radius = part_radius(mask)
    return (distance * (2 * radius - distance)).clamp_min(0).sqrt()


def sample_map(field: Tensor, points: Tensor) -> Tensor:
    """(B, V) values of the (R, R) ``field`` (row 0 at the top) at NDC ``points`` (B, V, 2), bilinear,
    border values outside."""
    grid = torch.stack([points[..., 0], -points[..., 1]], dim=-1)[:, None]  # (B, 1, V, 2), y down
    values = F.grid_sample(
        field[None, None].expand(points.shape[0], 1, -1, -1), grid,
        mode="bilinear", padding_mode="border", align_corners=False,
    )  # fmt: skip
    return values[:, 0, 0]


def middle_depth(projected: Tensor, depth: Tensor) -> Tensor:
    """(B, V) the least-squares plane ``a x + b y + c`` through the vertices' depths (B, V), evaluated at
    their projections (B, V, 3): the body's middle depth along each ray."""
    design = torch.cat([projected[..., :2], torch.ones_like(depth)[..., None]], dim=-1)  # (B, V, 3)
    normal = design.transpose(1, 2) @ design  # (B, 3, 3)
    eye = torch.eye(3, dtype=depth.dtype, device=depth.device)
    right = design.transpose(1, 2) @ depth[..., None]  # (B, 3, 1)
    plane = torch.linalg.solve(normal + 1e-6 * eye, right)  # (B, 3, 1)
    return (design @ plane)[..., 0]


def thickness_loss(projected: Tensor, depth_scale: Tensor, half_thickness: Tensor, slack: float) -> Tensor:
    """(B,) the one-sided thickness prior (module docstring).

    Args:
        projected: (B, V, 3) x_ndc, y_ndc, depth (world units along the view).
        depth_scale: (B,) NDC units per world unit (the weak-perspective scale).
        half_thickness: (R, R) ``half_thickness_map`` of the target mask.
        slack: allowed depth as a multiple of the prior's.
    """
    depth = projected[..., 2] * depth_scale[:, None]  # (B, V) NDC units
    middle = middle_depth(projected, depth)
    allowed = slack * sample_map(half_thickness, projected[..., :2].detach())  # (B, V)
    excess = ((depth - middle).abs() - allowed).clamp_min(0)
    return excess.pow(2).mean(dim=1)
