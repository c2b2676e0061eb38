"""The preview sheet a person judges a reconstruction by, at a glance.

``make_preview(image, mask, reconstruction)`` returns one (T, 6 T, 3) uint8 strip of T x T tiles:
the input crop | its mask | the reconstruction rendered from the input camera over the dimmed input |
three novel views (the object turned 90 and 180 degrees about its up axis, and seen from 45 degrees
above), rendered with a little Lambert shading on white so the shape reads even where the texture is
flat.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from backend.geometry.camera import Camera, axis_angle_to_quaternion, quaternion_multiply
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import Reconstruction
from backend.render.renderer import Lighting, render_mesh
from backend.render.settings import RasterSettings

TILE = 256
"""Side of one preview tile in pixels."""

_SHADED = Lighting(ambient=0.55, diffuse=0.5, background=(1.0, 1.0, 1.0))


def _tile(image: np.ndarray) -> np.ndarray:
    resized = cv2.resize(image.astype(np.float32), (TILE, TILE), interpolation=cv2.INTER_AREA)
    return resized if resized.ndim == 3 else np.repeat(resized[..., None], 3, axis=-1)


def novel_view_cameras(mesh: TexturedMesh, camera: Camera) -> Camera:
    """Three weak-perspective cameras (turned 90 and 180 degrees about world Y, and 45 degrees above).

    The mesh is centred and scaled to fill 90 % of the view in each. The cameras are on the CPU, where
    ``make_preview`` renders.
    """
    cpu = "cpu"
    rotation = camera.weak.rotation[:1].detach().cpu().float()  # (1, 4)
    up = torch.tensor([[0.0, 1.0, 0.0]], device=cpu)
    turns = [
        axis_angle_to_quaternion(up, torch.tensor([math.pi / 2], device=cpu)),
        axis_angle_to_quaternion(up, torch.tensor([math.pi], device=cpu)),
    ]
    rotations = [quaternion_multiply(rotation, turn) for turn in turns]
    x_axis = torch.tensor([[1.0, 0.0, 0.0]], device=cpu)
    above = axis_angle_to_quaternion(x_axis, torch.tensor([math.pi / 4], device=cpu))
    rotations.append(quaternion_multiply(above, rotation))
    quaternions = torch.cat(rotations)  # (3, 4)
    probe = Camera.weak_perspective(torch.ones(3, device=cpu), torch.zeros(3, 2, device=cpu), quaternions)
    projected = probe.project(mesh.vertices.detach().cpu().float())[..., :2]  # (3, V, 2)
    low, high = projected.min(dim=1).values, projected.max(dim=1).values  # (3, 2)
    scale = 1.8 / (high - low).max(dim=1).values.clamp_min(1e-6)  # (3,)
    translation = -scale[:, None] * (low + high) / 2
    return Camera.weak_perspective(scale, translation, quaternions)


def make_preview(image: np.ndarray, mask: np.ndarray, reconstruction: Reconstruction) -> np.ndarray:
    """The preview strip (module docstring).

    Args:
        image: (S, S, 3) float32 in [0, 1], the crop the method saw.
        mask: (S, S) bool, its mask.
        reconstruction: the method's result; its camera maps the mesh onto ``image``.

    Returns:
        (TILE, 6 * TILE, 3) uint8.
    """
    mesh = reconstruction.mesh.to("cpu")
    settings = RasterSettings(image_size=TILE, soft=False)
    with torch.no_grad():
        front = render_mesh(mesh, reconstruction.camera.to("cpu"), settings)
        novel = render_mesh(mesh, novel_view_cameras(mesh, reconstruction.camera), settings, _SHADED)
    input_tile = _tile(image)
    alpha = front.mask[0].numpy()  # (T, T, 1)
    overlay = alpha * front.rgb[0].numpy() + (1 - alpha) * (0.35 * input_tile + 0.65)
    tiles = [input_tile, _tile(mask.astype(np.float32)), overlay, *novel.rgb.numpy()]
    strip = np.concatenate(tiles, axis=1)
    return (np.clip(strip, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
