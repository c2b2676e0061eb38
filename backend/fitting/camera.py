"""The weak-perspective cameras a fit optimises, and where they start.

- ``CameraVariables``: B cameras as the free parameters Adam moves (CMR/UMR's camera): log scale (B,),
  NDC translation (B, 2) and a free quaternion (B, 4), normalised in use. ``camera()`` is the
  differentiable ``Camera``, ``result()`` the detached one with unit quaternions, ``select(i)`` keeps one
  hypothesis (an int or a device tensor), ``from_camera`` starts from a given weak-perspective camera,
  ``project(points)`` is ``camera().project(points)`` without a ``Camera`` (whose parameter checks sync
  with the host).
- ``ndc_camera(count, device)`` and ``as_view_points(projected)``: a fit projects its vertices once
  (``CameraVariables.project``) and renders the projected points through ``count`` constant cameras
  that show them as they are (x and y exactly, depth within rounding), built once per fit: the render
  then neither projects again nor builds a ``Camera`` every step.
- ``initial_cameras(target, count, radius, elevation)``: ``count`` hypotheses looking at the mask's
  centroid with evenly spaced azimuths from ``elevation`` degrees above (``initial_rotations``), scaled
  so a mesh of largest vertex norm ``radius`` projects to 0.6 of the crop's half-width.

A side view and its mirror explain a silhouette equally well, so a fit runs several azimuth hypotheses
(UMR keeps several camera heads for the same reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.camera import (
    WEAK_PERSPECTIVE_DEPTH,
    Camera,
    axis_angle_to_quaternion,
    quaternion_multiply,
    quaternion_to_matrix,
)


def initial_rotations(
    count: int, elevation_degrees: float = 0.0, device: torch.device | str = "cpu"
) -> Tensor:
    """(count, 4) quaternions on ``device``: azimuths 360/count apart starting at half a step, then a
    tilt by ``elevation_degrees`` about the view's x axis (positive: the camera looks down on the object,
    whose top turns towards it).

    With 4 hypotheses the azimuths are 45, 135, 225 and 315 degrees: every view is within 45 degrees
    of one of them.
    """
    azimuths = torch.tensor([(k + 0.5) * 2 * math.pi / count for k in range(count)], device=device)
    y_axis = torch.tensor([[0.0, 1.0, 0.0]], device=device)
    about_y = axis_angle_to_quaternion(y_axis.expand(count, 3), azimuths)
    tilt = torch.full((count,), math.radians(elevation_degrees), device=device)
    x_axis = torch.tensor([[1.0, 0.0, 0.0]], device=device)
    about_x = axis_angle_to_quaternion(x_axis.expand(count, 3), tilt)
    return quaternion_multiply(about_x, about_y)


@dataclass(frozen=True)
class CameraVariables:
    """B weak-perspective cameras as optimisation variables.

    Attributes:
        log_scale: (B,) log of NDC units per world unit.
        translation: (B, 2) NDC offset.
        rotation: (B, 4) quaternion (w, x, y, z), object -> view, not necessarily of unit norm.
    """

    log_scale: Tensor
    translation: Tensor
    rotation: Tensor

    def tensors(self) -> list[Tensor]:
        """The three variables, in the order Adam gets them."""
        return [self.log_scale, self.translation, self.rotation]

    def camera(self) -> Camera:
        """The B cameras, differentiable in the variables."""
        return Camera.weak_perspective(self.log_scale.exp(), self.translation, self.rotation)

    def project(self, points: Tensor) -> Tensor:
        """World points (B, N, 3) -> (B, N, 3) x_ndc, y_ndc, depth: ``camera().project(points)``, the
        same arithmetic (so the same bits), without building a ``Camera``, whose checks of its
        parameters read them on the host (a synchronisation per step on a GPU)."""
        scale = self.log_scale.exp()  # (B,)
        rotation = quaternion_to_matrix(self.rotation)  # (B, 3, 3)
        offset = torch.full_like(scale, -WEAK_PERSPECTIVE_DEPTH)
        shift = torch.stack(
            [self.translation[:, 0] / scale, self.translation[:, 1] / scale, offset], dim=1
        )  # (B, 3)
        view = torch.einsum("bij,bnj->bni", rotation, points) + shift[:, None, :]  # (B, N, 3)
        return torch.cat([view[..., :2] * scale[:, None, None], -view[..., 2:]], dim=-1)

    def result(self) -> Camera:
        """The B cameras detached, with unit quaternions: what a fit returns."""
        fitted = self.camera()
        return Camera.weak_perspective(
            fitted.weak.scale.detach(),
            fitted.weak.translation.detach(),
            F.normalize(fitted.weak.rotation.detach(), dim=-1),
        )

    def select(self, index: int | Tensor) -> CameraVariables:
        """Hypothesis ``index`` (an int, or a one-element int64 tensor on the variables' device, read
        without a host synchronisation) alone (batch of one), detached copies."""
        if isinstance(index, int):
            index = torch.tensor([index], device=self.log_scale.device)
        rows = index.reshape(1)
        return CameraVariables(*(value.detach().index_select(0, rows) for value in self.tensors()))

    @staticmethod
    def from_camera(camera: Camera, device: torch.device) -> CameraVariables:
        """Variables starting at the weak-perspective ``camera`` (float32 copies on ``device``)."""
        start = camera.to(device).weak
        return CameraVariables(
            log_scale=start.scale.float().log().clone(),
            translation=start.translation.float().clone(),
            rotation=start.rotation.float().clone(),
        )


def ndc_camera(count: int, device: torch.device | str) -> Camera:
    """``count`` weak-perspective cameras (scale 1, no translation, identity rotation) under which
    ``as_view_points(p)`` projects to ``p``: x and y exactly (the identity's products are exact), depth
    within rounding (only the z-buffer and the near plane read it; no silhouette does)."""
    rotation = torch.zeros(count, 4, device=device)
    rotation[:, 0] = 1.0
    return Camera.weak_perspective(
        torch.ones(count, device=device), torch.zeros(count, 2, device=device), rotation
    )


def as_view_points(projected: Tensor) -> Tensor:
    """Points (B, N, 3) that ``ndc_camera`` projects to ``projected`` (B, N, 3) (x_ndc, y_ndc, depth)."""
    return torch.cat([projected[..., :2], WEAK_PERSPECTIVE_DEPTH - projected[..., 2:]], dim=-1)


def initial_cameras(target: Tensor, count: int, radius: float, elevation: float = 0.0) -> CameraVariables:
    """``count`` hypotheses for a fit to the soft mask ``target`` (R, R): translation at its centroid
    (B, 2), log scale (B,) and rotations (B, 4) from ``initial_rotations``, on the target's device.

    The scale starts at 0.6 / ``radius`` (the mesh's largest vertex norm): the unit template starts at
    0.6, a predicted or given mesh of another size projects to the same extent.
    """
    device = target.device
    size = target.shape[0]
    coords = (2 * torch.arange(size, device=device, dtype=torch.float32) + 1) / size - 1
    total = target.sum().clamp_min(1e-6)
    centre_x = (target.sum(0) * coords).sum() / total
    centre_y = -(target.sum(1) * coords).sum() / total
    log_scale = torch.full((count,), math.log(0.6 / max(radius, 1e-6)), device=device)
    translation = torch.stack([centre_x, centre_y]).expand(count, 2).clone()
    return CameraVariables(log_scale, translation, initial_rotations(count, elevation, device=device))
