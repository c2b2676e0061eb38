"""Texture by projection: give each texel of a UV-mapped mesh the photo colour of its surface point.

Contract:

- ``project_photo(...)`` maps each covered texel (``backend.render.uv``: ``uv_rasterize`` finds the face
  and barycentric coordinates at every texel centre, ``texel_surface`` the surface point there; UV (0, 0)
  is the bottom-left of the texture, ``backend.geometry``) to its 3-D surface point, projects it with the
  camera, and takes the photo's colour there when the point is *visible* (its depth is within a
  tolerance of the depth buffer rendered from the same camera, at a covered pixel), *faces the
  camera* (view-space normal z above ``min_facing``) and lands *inside the object mask* (eroded a
  little, so background does not bleed in at the silhouette). It returns the colours and the mask of
  texels that got one. ``sample_photo(points, normals, ...)`` is the same lookup for any surface points
  (``backend.meshing.bake`` uses it for the mirror images of hidden points).
- ``fill_mirrored(colors, known)`` fills unknown texels of a template texture (whose mirror image is
  its left-right flip, ``backend.geometry.templates``) from their mirror texel, for bilaterally
  symmetric objects.
- ``inpaint(colors, known)`` fills every texel still unknown with OpenCV's Telea inpainting (also the
  texels outside all UV triangles, so bilinear lookups at UV seams never read black).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.camera import Camera
from backend.geometry.templates import mirror_texel_index
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from backend.render.uv import texel_surface, uv_rasterize


def project_photo(
    vertices: Tensor,
    faces: Tensor,
    uvs: Tensor,
    face_uvs: Tensor,
    camera: Camera,
    image: np.ndarray,
    mask: np.ndarray,
    texture_size: tuple[int, int],
    *,
    min_facing: float = 0.1,
    depth_tolerance: float = 0.02,
    erode_pixels: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Photo colours for the texels whose surface point the camera sees (module docstring).

    Args:
        vertices: (V, 3) world positions; faces: (F, 3); uvs: (T, 2); face_uvs: (F, 3).
        camera: a batch-of-one camera mapping the mesh onto ``image`` (its NDC, y up).
        image: (S, S, 3) float32 in [0, 1], the crop the camera explains.
        mask: (S, S) bool object mask of ``image``.
        texture_size: (H, W).
        min_facing: texels whose view-space normal has z at or below this are left out (grazing views
            smear the photo).
        depth_tolerance: visibility slack, as a fraction of the mesh's bounding-box diagonal.
        erode_pixels: the mask is eroded by this many pixels before the lookup.

    Returns:
        colors: (H, W, 3) float32, zero where unknown.
        known: (H, W) bool, texels that got a photo colour.
    """
    height, width = texture_size
    vertices = vertices.detach().float().cpu()
    faces, uvs, face_uvs = faces.cpu(), uvs.float().cpu(), face_uvs.cpu()
    texel_face, texel_bary = uv_rasterize(uvs, face_uvs, height, width)
    index, points, normals = texel_surface(vertices, faces, texel_face, texel_bary)
    sampled, good = sample_photo(
        points, normals, vertices, faces, camera, image, mask,
        min_facing=min_facing, depth_tolerance=depth_tolerance, erode_pixels=erode_pixels,
    )  # fmt: skip
    colors = np.zeros((height, width, 3), np.float32)
    known = np.zeros((height, width), bool)
    rows, columns = index[good, 0].numpy(), index[good, 1].numpy()
    colors[rows, columns] = sampled[good].numpy()
    known[rows, columns] = True
    return colors, known


def sample_photo(
    points: Tensor,
    normals: Tensor,
    vertices: Tensor,
    faces: Tensor,
    camera: Camera,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    min_facing: float = 0.1,
    depth_tolerance: float | Tensor = 0.02,
    erode_pixels: int = 2,
) -> tuple[Tensor, Tensor]:
    """Photo colours at surface points the camera sees: the lookup behind ``project_photo``.

    Args:
        points: (N, 3) points on (or near) the mesh surface; normals: (N, 3) their unit normals.
        vertices: (V, 3), faces: (F, 3): the mesh that occludes (its depth buffer decides visibility).
        camera, image, mask, min_facing, erode_pixels: as ``project_photo``.
        depth_tolerance: visibility slack as a fraction of the bounding-box diagonal; a float, or (N,)
            per point.

    Returns:
        colors: (N, 3) float32 bilinear photo colours (meaningless where not ``good``).
        good: (N,) bool, the point faces the camera, is not occluded and lands inside the mask.
    """
    size = image.shape[0]
    if image.shape != (size, size, 3) or mask.shape != (size, size):
        raise ValueError(f"image must be (S, S, 3) with an (S, S) mask, got {image.shape} and {mask.shape}")
    vertices, faces = vertices.detach().float().cpu(), faces.cpu()
    points, normals = points.detach().float().cpu(), normals.detach().float().cpu()
    camera = camera.to("cpu", torch.float32)
    projected = camera.project(points)[0]  # (N, 3) x_ndc, y_ndc, depth
    rotation, _ = camera.view_transform()
    facing = (normals @ rotation[0].T)[:, 2] > min_facing  # view-space normal towards the camera (+z)

    depth_size = min(size, 512)
    rendered = render(vertices, faces, camera, RasterSettings(image_size=depth_size, soft=False))
    depth_map, covered = rendered.depth[0, ..., 0], rendered.mask[0, ..., 0]  # (D, D) each
    # A point over an uncovered pixel is at the outline, where a lookup at pixel resolution could see
    # past an occluder: it counts as hidden.
    buffer = torch.where(covered > 0, depth_map, torch.full_like(depth_map, -1e9))
    grid = torch.stack([projected[:, 0], -projected[:, 1]], dim=-1)[None, None]  # (1, 1, N, 2), y down
    column = ((projected[:, 0] + 1) * depth_size / 2).long().clamp(0, depth_size - 1)
    row = ((1 - projected[:, 1]) * depth_size / 2).long().clamp(0, depth_size - 1)
    diagonal = float((vertices.max(0).values - vertices.min(0).values).norm())
    visible = projected[:, 2] <= buffer[row, column] + depth_tolerance * diagonal

    if erode_pixels > 0:
        kernel = np.ones((2 * erode_pixels + 1,) * 2, np.uint8)
        mask = cv2.erode(mask.astype(np.uint8), kernel) > 0
    mask_tensor = torch.from_numpy(mask.astype(np.float32))[None, None]  # (1, 1, S, S)
    inside = F.grid_sample(mask_tensor, grid, mode="nearest", align_corners=False)[0, 0, 0] > 0.5
    inside &= (grid.abs() <= 1).all(-1)[0, 0]
    image_tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    sampled = F.grid_sample(image_tensor, grid, mode="bilinear", align_corners=False)[0, :, 0].T  # (N, 3)
    return sampled, facing & visible & inside


def fill_mirrored(colors: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unknown texels of a template texture (H, W, 3) take their mirror texel's colour where it is known."""
    height, width = known.shape
    mirror = mirror_texel_index(height, width).numpy()
    mirrored_known = known[mirror[..., 0], mirror[..., 1]]
    take = ~known & mirrored_known
    filled = colors.copy()
    filled[take] = colors[mirror[..., 0], mirror[..., 1]][take]
    return filled, known | mirrored_known


def inpaint(colors: np.ndarray, known: np.ndarray, radius: int = 3) -> np.ndarray:
    """Fill the unknown texels of (H, W, 3) ``colors`` from their surroundings (OpenCV Telea).

    Large holes are filled on a downscaled copy first (Telea's cost grows with the hole's size), and the
    full-resolution pass only blends the remaining rim, so a half-empty 512 x 1024 texture takes well
    under a second. With nothing known the texture is mid-grey.
    """
    if known.all():
        return colors.copy()
    if not known.any():
        return np.full_like(colors, 0.5)
    height, width = known.shape
    image = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
    holes = (~known).astype(np.uint8)
    if max(height, width) > 256:
        factor = max(height, width) // 256
        small_known = cv2.resize(
            known.astype(np.float32), (width // factor, height // factor), interpolation=cv2.INTER_AREA
        )
        small = cv2.resize(
            (colors * known[..., None]).astype(np.float32),
            (width // factor, height // factor),
            interpolation=cv2.INTER_AREA,
        )
        seen = small_known > 0.05
        small = np.where(seen[..., None], small / np.maximum(small_known, 1e-6)[..., None], 0)
        small_image = (np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)
        small_filled = cv2.inpaint(small_image, (~seen).astype(np.uint8), radius, cv2.INPAINT_TELEA)
        coarse = cv2.resize(small_filled, (width, height), interpolation=cv2.INTER_LINEAR)
        image = np.where(known[..., None], image, coarse)
        rim = cv2.dilate(known.astype(np.uint8), np.ones((2 * factor + 1,) * 2, np.uint8)) > 0
        holes = (rim & ~known).astype(np.uint8)
    filled = cv2.inpaint(image, holes, radius, cv2.INPAINT_TELEA)
    result = filled.astype(np.float32) / 255.0
    result[known] = colors[known]
    return result
