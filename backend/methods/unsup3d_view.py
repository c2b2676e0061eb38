"""Where Unsup3d's predicted view puts the canonical depth map in the crop, and the weak-perspective
camera that stands in for its perspective one.

The network explains the crop (resized to S x S) by its canonical depth seen through a perspective camera
of ``fov`` degrees (``backend.geometry.depth_grid``) after the view's rotation about the pivot and its
translation (``backend.models.unsup3d.view_transform``). ``ViewProjection`` is that mapping:

- ``crop_ndc(pixels, depths)``: canonical pixel positions (M, 2) (x = column, y = row, pixel centres at
  integers, any real value) at depths (M,) -> their positions (M, 2) in the crop's NDC (x right, y up,
  -1 and 1 at the crop's edges; pixel column j of the S x S image has its centre at (2 j + 1) / S - 1) and
  their depths (M,) along the view's axis. Exactly the reference's warp: for the identity view every
  pixel maps onto itself.
- ``rotation()``: the view's rotation (1, 3, 3) in the project's frame (``S R S``), read off
  ``view_transform`` itself so the two cannot disagree.

``fit_weak_camera(points, targets, rotation)``: the ``backend.geometry.camera`` weak-perspective camera
with the view's rotation whose projection of object points (M, 3) comes closest (least squares over
scale and 2-D translation, closed form) to target NDC positions (M, 2), and the residual (M,) NDC
distance of each point. With the relief's parallel reading (``backend.meshing.depth_relief``) it is
exact for the identity view (scale ``(S - 1) / S``); a turned view keeps a residual of the perspective's
10 degrees, reported in crop pixels by the method.

``rotation_quaternion(matrices)``: unit quaternions (B, 4) (w, x, y, z; w >= 0) of rotation matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.geometry.camera import Camera
from backend.geometry.depth_grid import project_to_pixels, unproject_pixels
from backend.models.unsup3d import view_transform


def rotation_quaternion(matrices: Tensor) -> Tensor:
    """Unit quaternions (B, 4) (w, x, y, z), w >= 0, of proper rotation matrices (B, 3, 3): Shepperd's
    method, each from the best-conditioned of its four formulas.

    >>> rotation_quaternion(torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None]).round(decimals=6).tolist()
    [[0.0, 1.0, 0.0, 0.0]]
    """
    r = matrices
    trace = r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2]
    squares = torch.stack(
        [1 + trace, 1 + 2 * r[:, 0, 0] - trace, 1 + 2 * r[:, 1, 1] - trace, 1 + 2 * r[:, 2, 2] - trace], 1
    )  # (B, 4): 4 w^2, 4 x^2, 4 y^2, 4 z^2
    best = squares.argmax(dim=1)  # (B,)
    root = 2 * squares.gather(1, best[:, None]).clamp_min(1e-12).sqrt()  # (B, 1): 4 |q_best|
    wx, wy, wz = r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]
    xy, xz, yz = r[:, 0, 1] + r[:, 1, 0], r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1]
    diagonal = root[:, 0] ** 2 / 4  # 4 q_best^2: the formula's own component
    formulas = torch.stack(
        [
            torch.stack([diagonal, wx, wy, wz], 1),
            torch.stack([wx, diagonal, xy, xz], 1),
            torch.stack([wy, xy, diagonal, yz], 1),
            torch.stack([wz, xz, yz, diagonal], 1),
        ],
        dim=1,
    )  # (B, 4, 4): row k is 4 q_k * q
    quaternion = formulas[torch.arange(len(r), device=r.device), best] / root
    quaternion = torch.nn.functional.normalize(quaternion, dim=1)
    return torch.where(quaternion[:, :1] < 0, -quaternion, quaternion)


@dataclass(frozen=True)
class ViewProjection:
    """The network's camera and one predicted view (module docstring).

    Attributes:
        view: (1, 6) the network's view (rotation degrees about x, y, z, translation; its frame).
        size: S, the side of the network's square image.
        fov: field of view in degrees.
        pivot_depth: depth of the point the view rotates about.
    """

    view: Tensor
    size: int
    fov: float
    pivot_depth: float

    def crop_ndc(self, pixels: Tensor, depths: Tensor) -> tuple[Tensor, Tensor]:
        """Crop NDC (M, 2) and view depths (M,) of canonical pixel positions (M, 2) at depths (M,)."""
        size = self.size
        points = unproject_pixels(pixels, depths, size, size, self.fov)  # (M, 3) canonical view space
        moved = view_transform(points[None], self.view, self.pivot_depth)[0]  # (M, 3) the view's space
        seen, depth = project_to_pixels(moved, size, size, self.fov)  # (M, 2) pixels, (M,)
        ndc = torch.stack([(2 * seen[:, 0] + 1) / size - 1, 1 - (2 * seen[:, 1] + 1) / size], dim=1)
        return ndc, depth

    def rotation(self) -> Tensor:
        """(1, 3, 3) the view's rotation in the project's frame: ``view_transform`` of the pivot and the
        pivot plus each axis, differenced."""
        device, dtype = self.view.device, self.view.dtype
        pivot = torch.tensor([0.0, 0.0, -self.pivot_depth], device=device, dtype=dtype)
        points = torch.cat([pivot[None], pivot + torch.eye(3, device=device, dtype=dtype)])  # (4, 3)
        moved = view_transform(points[None], self.view, self.pivot_depth)[0]  # (4, 3)
        return (moved[1:] - moved[:1]).T[None]  # columns: the images of the axes


def fit_weak_camera(points: Tensor, targets: Tensor, rotation: Tensor) -> tuple[Camera, Tensor]:
    """The weak-perspective camera with ``rotation`` (1, 3, 3) that best projects ``points`` (M, 3) onto
    ``targets`` (M, 2) NDC (least squares in scale and translation), and the residual distances (M,)."""
    turned = (points @ rotation[0].T)[:, :2]  # (M, 2)
    turned_mean, target_mean = turned.mean(dim=0), targets.mean(dim=0)
    centred, aimed = turned - turned_mean, targets - target_mean
    scale = (centred * aimed).sum() / centred.square().sum().clamp_min(1e-12)
    translation = target_mean - scale * turned_mean  # (2,)
    camera = Camera.weak_perspective(scale[None], translation[None], rotation_quaternion(rotation))
    residual = (scale * turned + translation - targets).norm(dim=1)
    return camera, residual
