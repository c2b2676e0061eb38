"""The weak-perspective cameras a fit optimises, and where they start.

- ``CameraVariables``: B cameras as the free parameters Adam moves (CMR/UMR's camera): log scale (B,),
  NDC translation (B, 2) and a free quaternion (B, 4), normalised in use. ``camera()`` is the
  differentiable ``Camera``, ``result()`` the detached one with unit quaternions, ``select(i)`` keeps one
  hypothesis, ``from_camera`` starts from a given weak-perspective camera.
- ``initial_cameras(target, count, radius)``: ``count`` hypotheses looking at the mask's centroid with
  evenly spaced azimuths (``initial_rotations``), scaled so a mesh of largest vertex norm ``radius``
  projects to 0.6 of the crop's half-width.

A side view and its mirror explain a silhouette equally well, so a fit runs several azimuth hypotheses
(UMR keeps several camera heads for the same reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.camera import Camera, axis_angle_to_quaternion, quaternion_multiply


def initial_rotations(
    count: int, elevation_degrees: float = 0.0, device: torch.device | str = "cpu"
) -> Tensor:
    """(count, 4) quaternions on ``device``: azimuths 360/count apart starting at half a step, then
    ``elevation``.

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

    def result(self) -> Camera:
        """The B cameras detached, with unit quaternions: what a fit returns."""
        fitted = self.camera()
        return Camera.weak_perspective(
            fitted.weak.scale.detach(),
            fitted.weak.translation.detach(),
            F.normalize(fitted.weak.rotation.detach(), dim=-1),
        )

    def select(self, index: int) -> CameraVariables:
        """Hypothesis ``index`` alone (batch of one), detached copies."""
        return CameraVariables(*(value.detach()[index : index + 1].clone() for value in self.tensors()))

    @staticmethod
    def from_camera(camera: Camera, device: torch.device) -> CameraVariables:
        """Variables starting at the weak-perspective ``camera`` (float32 copies on ``device``)."""
        start = camera.to(device).weak
        return CameraVariables(
            log_scale=start.scale.float().log().clone(),
            translation=start.translation.float().clone(),
            rotation=start.rotation.float().clone(),
        )


def initial_cameras(target: Tensor, count: int, radius: float) -> CameraVariables:
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
    return CameraVariables(log_scale, translation, initial_rotations(count, device=device))
