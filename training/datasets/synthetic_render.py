"""Cameras and rendering of synthetic objects: Lambert-shaded, anti-aliased, over a background.

Contract:

- ``CAMERA_RANGES`` holds per category the azimuth, elevation (degrees) and distance ranges the random
  cameras are drawn from (``sample_views``); the look-at convention is SoftRas's (``Camera.look_at``,
  15 degree half viewing angle). ``weak_perspective_from_views`` turns such views into weak-perspective
  cameras (CMR's model, for the "cub" layout): the same rotation as the look-at view, scale
  ``1 / (distance tan 15 deg)`` (the perspective size at the object's centre) and a small random shift.
- ``render_views(obj, camera, size, backgrounds, lighting)`` renders the object from B cameras at twice
  the size with hard rasterisation (``backend.render``, Lambert lighting), and averages 2 x 2 blocks: the
  alpha is the pixel's coverage, the colour is composited over the background with it, and each pixel's
  part label (0 background, k part k - 1) is the most covered one. Keypoints are projected with the
  camera; one is visible when the surface seen within a pixel of it is at its depth (it is not hidden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.geometry import Camera
from backend.geometry.camera import SOFTRAS_VIEWING_ANGLE
from backend.render import Lighting, RasterSettings, render_mesh
from training.datasets import transforms
from training.datasets.synthetic_object import SyntheticObject

SUPERSAMPLE = 2
KEYPOINT_DEPTH_TOLERANCE = 0.04
"""A keypoint is visible when the visible surface near it is at most this much nearer (world units)."""


@dataclass(frozen=True)
class CameraRanges:
    """Uniform ranges (low, high) of random cameras: degrees, degrees, world units."""

    azimuth: tuple[float, float]
    elevation: tuple[float, float]
    distance: tuple[float, float]


CAMERA_RANGES = {
    "bird": CameraRanges((-180.0, 180.0), (-10.0, 45.0), (2.3, 3.0)),
    "car": CameraRanges((-180.0, 180.0), (0.0, 40.0), (2.3, 3.0)),
    "chair": CameraRanges((-180.0, 180.0), (5.0, 45.0), (2.3, 3.0)),
}


@dataclass(frozen=True)
class RenderedViews:
    """B renders of one object.

    Attributes:
        rgb: (B, S, S, 3) float32 in [0, 1], composited over the background.
        alpha: (B, S, S) float32 coverage in [0, 1].
        labels: (B, S, S) uint8 part labels, 0 on the background.
        keypoints: (B, K, 3) float32 NDC (x, y up) of each keypoint and its visibility (0 or 1).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    labels: np.ndarray
    keypoints: np.ndarray


def sample_views(category: str, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(B,) float32 ``distance``, ``elevation``, ``azimuth`` drawn from the category's ranges."""
    ranges = CAMERA_RANGES[category]
    return {
        "distance": rng.uniform(*ranges.distance, size=count).astype(np.float32),
        "elevation": rng.uniform(*ranges.elevation, size=count).astype(np.float32),
        "azimuth": rng.uniform(*ranges.azimuth, size=count).astype(np.float32),
    }


def look_at_cameras(views: dict[str, np.ndarray]) -> Camera:
    """B look-at cameras of views (``sample_views`` or ``shapenet.softras_cameras``)."""
    return Camera.look_at(
        torch.from_numpy(np.asarray(views["distance"], dtype=np.float32)),
        torch.from_numpy(np.asarray(views["elevation"], dtype=np.float32)),
        torch.from_numpy(np.asarray(views["azimuth"], dtype=np.float32)),
        SOFTRAS_VIEWING_ANGLE,
    )


def weak_perspective_from_views(views: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(B, 7) weak-perspective cameras [s, tx, ty, qw, qx, qy, qz] seeing what the look-at views see."""
    rotation, _ = look_at_cameras(views).view_transform()  # (B, 3, 3)
    count = rotation.shape[0]
    scale = 1.0 / (
        np.asarray(views["distance"], dtype=np.float64) * math.tan(math.radians(SOFTRAS_VIEWING_ANGLE))
    )
    shift = rng.uniform(-0.12, 0.12, size=(count, 2))
    quaternions = np.stack([transforms.matrix_to_quaternion(r) for r in rotation.double().numpy()])
    return np.concatenate([scale[:, None], shift, quaternions], axis=1).astype(np.float32)


def weak_perspective_camera(cameras: np.ndarray) -> Camera:
    """``Camera.weak_perspective`` of (B, 7) camera vectors."""
    tensor = torch.from_numpy(np.asarray(cameras, dtype=np.float32))
    return Camera.weak_perspective(tensor[:, 0], tensor[:, 1:3], tensor[:, 3:7])


def random_lighting(rng: np.random.Generator) -> Lighting:
    """Lambert lighting with a random share of ambient light and a light from the camera's upper side."""
    ambient = float(rng.uniform(0.4, 0.65))
    direction = np.array([rng.uniform(-0.7, 0.7), rng.uniform(0.1, 0.8), 1.0])
    direction /= np.linalg.norm(direction)
    light = (float(direction[0]), float(direction[1]), float(direction[2]))
    return Lighting(ambient=ambient, diffuse=1.0 - ambient, light_direction=light)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """(B, H, W, C) -> (B, H / f, W / f, C) mean of f x f blocks."""
    batch, height, width, channels = image.shape
    blocks = image.reshape(batch, height // factor, factor, width // factor, factor, channels)
    return blocks.mean(axis=(2, 4))


def _keypoint_visibility(projected: np.ndarray, depth: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """(B, K) bool: keypoints (B, K, 3) (x_ndc, y_ndc, depth) not hidden in the (B, H, H) depth map."""
    batch, size = depth.shape[0], depth.shape[1]
    column = np.floor((projected[..., 0] + 1.0) / 2.0 * size).astype(np.int64)  # (B, K)
    row = np.floor((1.0 - projected[..., 1]) / 2.0 * size).astype(np.int64)
    visible = np.zeros(projected.shape[:2], dtype=bool)
    for d_row in (-1, 0, 1):
        for d_column in (-1, 0, 1):
            r, c = row + d_row, column + d_column
            inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            r, c = np.clip(r, 0, size - 1), np.clip(c, 0, size - 1)
            b = np.arange(batch)[:, None]
            seen = covered[b, r, c] & (depth[b, r, c] >= projected[..., 2] - KEYPOINT_DEPTH_TOLERANCE)
            visible |= inside & seen
    return visible


def render_views(
    obj: SyntheticObject, camera: Camera, size: int, backgrounds: np.ndarray, lighting: Lighting
) -> RenderedViews:
    """Render ``obj`` from B cameras over (B, S, S, 3) ``backgrounds`` (module docstring)."""
    big = size * SUPERSAMPLE
    settings = RasterSettings(image_size=big, soft=False)
    with torch.no_grad():
        output = render_mesh(obj.mesh, camera, settings, lighting)
        rgb = output.rgb.numpy()  # (B, 2S, 2S, 3), black background
        covered = output.mask.numpy()[..., 0] > 0.5  # (B, 2S, 2S)
        depth = output.depth.numpy()[..., 0]
        face = output.face_index.numpy()  # (B, 2S, 2S)
        projected = camera.project(obj.keypoints).numpy()  # (B, K, 3)
    num_labels = int(obj.face_parts.max()) + 2
    labels_big = np.where(face >= 0, obj.face_parts.numpy()[np.maximum(face, 0)] + 1, 0)
    label_share = _block_mean(np.eye(num_labels, dtype=np.float32)[labels_big], SUPERSAMPLE)
    alpha = _block_mean(covered[..., None].astype(np.float32), SUPERSAMPLE)  # (B, S, S, 1)
    colour = _block_mean(rgb * covered[..., None], SUPERSAMPLE)  # premultiplied
    composite = np.clip(colour + (1.0 - alpha) * backgrounds, 0.0, 1.0)
    visible = _keypoint_visibility(projected, depth, covered)
    keypoints = np.concatenate([projected[..., :2], visible[..., None]], axis=-1)
    return RenderedViews(
        rgb=composite.astype(np.float32),
        alpha=alpha[..., 0],
        labels=label_share.argmax(axis=-1).astype(np.uint8),
        keypoints=keypoints.astype(np.float32),
    )
