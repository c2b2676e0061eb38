"""Rendering ``adaptive-flow``'s predictions: at every camera hypothesis, at random azimuths, on white.

- ``render_hypotheses``: the textured soft renders (B H, item-major) of every hypothesis and the most
  probable camera (``Renders``), what the photo terms compare with the photos;
- ``random_views``: RGBA renders of each prediction turned about its up axis by U(-a, a) degrees, what the
  critic and the FID loss see;
- ``textured``: unlit renders on a white background (``training.evaluation.WHITE``), how the evaluation
  and the image grids compare renders with photos composited on white (``on_white``);
- ``resize``: (B, C, S, S) images to the render size (area-averaged when shrinking).

Every function takes the ``RasterSettings`` it renders with (the method's ``settings()``); the random
azimuths are drawn with ``torch.rand`` on the texture's device, in the order the callers render.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.camera import Camera
from backend.models.adaptive_flow import AdaptiveFlowModel, AdaptiveFlowOutput
from backend.render.renderer import RenderOutput, render
from backend.render.settings import RasterSettings
from training.evaluation import WHITE


@dataclass
class Renders:
    """What one step rendered: every hypothesis (item-major) and the most probable one."""

    all_views: RenderOutput  # B H renders
    best: Tensor  # (B,) index of the most probable hypothesis
    best_camera: Camera


def render_hypotheses(
    network: AdaptiveFlowModel, output: AdaptiveFlowOutput, texture: Tensor, settings: RasterSettings
) -> Renders:
    """Textured soft renders (B H) at every hypothesis and the most probable camera."""
    hypotheses = output.probs.shape[1]
    cameras = network.all_cameras(output)
    views = render(
        output.vertices.repeat_interleave(hypotheses, 0), network.faces, cameras, settings,
        uvs=network.uvs, face_uvs=network.face_uvs, texture=texture.repeat_interleave(hypotheses, 0),
    )  # fmt: skip
    best = output.probs.detach().argmax(dim=1)
    return Renders(views, best, network.camera(output, best))


def random_views(
    network: AdaptiveFlowModel,
    output: AdaptiveFlowOutput,
    texture: Tensor,
    camera: Camera,
    settings: RasterSettings,
    limit: float,
) -> Tensor:
    """RGBA renders (B, 4, s, s) (colour premultiplied) of each prediction turned by a random azimuth in
    (-limit, limit) degrees (the config's ``random_azimuth``)."""
    batch = len(texture)
    azimuth = (torch.rand(batch, device=texture.device) * 2 - 1) * limit
    views = render(
        output.vertices, network.faces, camera.turned(azimuth), settings,
        uvs=network.uvs, face_uvs=network.face_uvs, texture=texture,
    )  # fmt: skip
    alpha = views.alpha.permute(0, 3, 1, 2)
    return torch.cat([views.rgb.permute(0, 3, 1, 2) * alpha, alpha], dim=1)


def textured(
    network: AdaptiveFlowModel,
    vertices: Tensor,
    texture: Tensor,
    camera: Camera,
    settings: RasterSettings,
) -> RenderOutput:
    """The meshes ``vertices`` with ``texture``, unlit on white (``WHITE``), at ``camera``."""
    return render(
        vertices, network.faces, camera, settings,
        uvs=network.uvs, face_uvs=network.face_uvs, texture=texture, lighting=WHITE,
    )  # fmt: skip


def resize(images: Tensor, size: int) -> Tensor:
    """(B, C, S, S) -> (B, C, size, size), area-averaged when shrinking."""
    if images.shape[-1] == size:
        return images
    mode = "area" if images.shape[-1] > size else "bilinear"
    return F.interpolate(images, size=(size, size), mode=mode)


def on_white(image: Tensor, mask: Tensor) -> Tensor:
    """Photos (B, 3, s, s) composited on white with masks (B, 1, s, s) -> (B, s, s, 3)."""
    return (image * mask + (1 - mask)).permute(0, 2, 3, 1)
