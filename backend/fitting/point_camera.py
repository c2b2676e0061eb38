"""A weak-perspective camera that projects a point cloud onto an object mask.

``fit_point_camera(points, mask, rotation, iterations)`` starts from a rotation (e.g. a network's pose
prediction) and closes the rest in two steps:

1. **Moments**: with the rotation fixed, the scale and translation that give the projected points the
   mask's centroid and spread (root-mean-square distance from the centroid), in crop NDC.
2. **Chamfer fit** (``iterations`` Adam steps, 0 skips it): the symmetric 2-D Chamfer distance between
   the projected points and the mask's pixel centres (both subsampled to ``samples``) moves the log scale,
   the translation and a small rotation correction (axis-angle, applied after the given rotation).
   Point clouds have no faces to rasterise, so this is the silhouette term that fits them.

The result is a batch-of-one ``Camera.weak_perspective`` in the crop's NDC (y up), like every method's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from backend.geometry.camera import Camera, quaternion_multiply, quaternion_to_matrix


def mask_points_ndc(mask: np.ndarray) -> Tensor:
    """(M, 2) NDC centres (x right, y up) of the True pixels of an (S, S) mask."""
    size = mask.shape[0]
    rows, columns = np.nonzero(mask)
    x = (2 * columns + 1) / size - 1
    y = 1 - (2 * rows + 1) / size
    return torch.from_numpy(np.stack([x, y], axis=1).astype(np.float32))


def _spread(xy: Tensor) -> Tensor:
    """Root-mean-square distance of (N, 2) points from their centroid, ()."""
    return (xy - xy.mean(0)).pow(2).sum(1).mean().sqrt()


def _chamfer_2d(first: Tensor, second: Tensor) -> Tensor:
    """Symmetric mean squared nearest-neighbour distance between (N, 2) and (M, 2), ()."""
    distances = torch.cdist(first, second).pow(2)  # (N, M)
    return distances.min(1).values.mean() + distances.min(0).values.mean()


def fit_point_camera(
    points: Tensor,
    mask: np.ndarray,
    rotation: Tensor,
    iterations: int = 100,
    *,
    samples: int = 1000,
    learning_rate: float = 0.02,
    seed: int = 0,
) -> tuple[Camera, float]:
    """The camera of the module docstring and its final 2-D Chamfer distance (NDC units squared).

    Args:
        points: (N, 3) object-frame points.
        mask: (S, S) bool object mask of the crop.
        rotation: (4,) unit quaternion wxyz, the world-to-view rotation to start from.
        iterations: Adam steps of the Chamfer fit.
        samples: points and mask pixels drawn for the Chamfer distance.

    Raises:
        ValueError: an empty mask, points that are not (N, 3) with N > 0, or a rotation that is not (4,).
    """
    if points.dim() != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"points must have shape (N, 3) with N > 0, got {tuple(points.shape)}")
    if rotation.shape != (4,):
        raise ValueError(f"rotation must be a (4,) quaternion, got {tuple(rotation.shape)}")
    if mask.ndim != 2 or not mask.any():
        raise ValueError("the mask is empty")
    generator = torch.Generator().manual_seed(seed)  # a CPU generator: the fit runs on the CPU
    points = points.detach().float().cpu()
    rotation = torch.nn.functional.normalize(rotation.detach().float().cpu(), dim=0)
    target = mask_points_ndc(mask)  # (M, 2)
    if len(target) > samples:
        target = target[torch.randperm(len(target), generator=generator, device="cpu")[:samples]]
    cloud = points
    if len(cloud) > samples:
        cloud = cloud[torch.randperm(len(cloud), generator=generator, device="cpu")[:samples]]

    rotated = (cloud @ quaternion_to_matrix(rotation[None])[0].T)[:, :2]  # (n, 2)
    scale = _spread(target) / _spread(rotated).clamp_min(1e-6)
    translation = target.mean(0) - scale * rotated.mean(0)

    log_scale = torch.tensor(math.log(float(scale)), requires_grad=True, device="cpu")
    shift = translation.clone().requires_grad_(True)
    correction = torch.zeros(3, requires_grad=True, device="cpu")  # axis-angle, applied after ``rotation``

    def current_rotation() -> Tensor:  # (4,)
        half = correction / 2
        angle = (half.pow(2).sum() + 1e-12).sqrt()  # smooth at zero
        delta = torch.cat([angle.cos()[None], half * torch.sinc(angle / math.pi)])  # sin(a) / a * half
        return quaternion_multiply(delta[None], rotation[None])[0]

    def loss() -> Tensor:
        view = cloud @ quaternion_to_matrix(current_rotation()[None])[0].T  # (n, 3)
        projected = log_scale.exp() * view[:, :2] + shift  # (n, 2)
        return _chamfer_2d(projected, target)

    optimiser = torch.optim.Adam([log_scale, shift, correction], lr=learning_rate)
    for _ in range(iterations):
        optimiser.zero_grad()
        value = loss()
        value.backward()
        optimiser.step()
    with torch.no_grad():
        final = float(loss())
        camera = Camera.weak_perspective(
            log_scale.exp()[None].detach(), shift[None].detach(), current_rotation()[None].detach()
        )
    return camera, final
