"""Texture baking for any UV atlas: photo projection, mirror fill across x = 0 in 3-D, inpainting.

Contract: ``bake_texture(vertices, faces, uvs, face_uvs, camera, image, mask, texture_size)`` gives every
texel of an (H, W) texture a colour:

1. *photo*: a texel whose surface point the camera sees (facing it, not occluded, inside the eroded
   mask; ``backend.meshing.texturing.sample_photo``) takes the photo's colour there;
2. *mirror* (``mirror=True``): a texel still unknown whose surface point, mirrored across the object's
   symmetry plane x = 0 (the plane of ``backend.geometry.templates``), would be seen by the camera
   takes the photo's colour at the mirrored point. This works for any atlas, because the mirror is taken
   on the surface, not in UV space; its visibility test uses ``mirror_depth_tolerance``, looser than the
   photo's, because the mirrored point lies only near a surface that is not exactly symmetric;
3. *inpaint*: everything else, including texels outside all charts (so bilinear lookups at chart edges
   never read black), is filled from its surroundings (``texturing.inpaint``).

The result is a ``BakedTexture`` whose ``texture`` is ready for ``TexturedMesh`` (after
``torch.from_numpy``): (H, W, 3) float32 in [0, 1], row 0 the top (v = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from backend.geometry.camera import Camera
from backend.geometry.mesh import check_faces
from backend.meshing.texturing import inpaint, sample_photo
from backend.meshing.unwrap import uv_texels
from backend.render.uv import texel_surface

MIRROR = torch.tensor([-1.0, 1.0, 1.0], device="cpu")
"""The reflection across the symmetry plane x = 0, as a per-axis sign (baking runs on the CPU)."""


@dataclass(frozen=True)
class BakedTexture:
    """A baked texture and where its colours came from.

    Attributes:
        texture: (H, W, 3) float32 in [0, 1] after inpainting; row 0 is v = 1.
        known: (H, W) bool, texels coloured before inpainting (from the photo or its mirror image).
        from_photo: (H, W) bool, texels coloured directly from the photo.
        photo_fraction: share of the texels inside UV charts that came from the photo.
        mirrored_fraction: share of the texels inside UV charts that came from the mirror image.
    """

    texture: np.ndarray
    known: np.ndarray
    from_photo: np.ndarray
    photo_fraction: float
    mirrored_fraction: float


def bake_texture(
    vertices: Tensor,
    faces: Tensor,
    uvs: Tensor,
    face_uvs: Tensor,
    camera: Camera,
    image: np.ndarray,
    mask: np.ndarray,
    texture_size: tuple[int, int] = (1024, 1024),
    *,
    mirror: bool = True,
    min_facing: float = 0.1,
    depth_tolerance: float = 0.02,
    mirror_depth_tolerance: float = 0.05,
    erode_pixels: int = 2,
) -> BakedTexture:
    """The texture of a UV-mapped mesh from one photo (module docstring).

    Args:
        vertices: (V, 3) object-frame positions, faces: (F, 3) int64 counter-clockwise from outside.
        uvs: (T, 2) in [0, 1]; face_uvs: (F, 3) int64.
        camera: a batch-of-one camera mapping the object frame onto ``image``.
        image: (S, S, 3) float32 in [0, 1]; mask: (S, S) bool object mask.
        texture_size: (H, W).
        mirror: fill hidden texels from their mirror image across x = 0.
        min_facing, depth_tolerance, erode_pixels: as ``texturing.project_photo``.
        mirror_depth_tolerance: visibility slack of mirrored points (fraction of the bounding diagonal).
    """
    height, width = texture_size
    if height < 1 or width < 1:
        raise ValueError(f"texture_size must be positive, got {texture_size}")
    if camera.batch_size != 1:
        raise ValueError(f"bake_texture takes one camera, got a batch of {camera.batch_size}")
    check_faces(faces, int(vertices.shape[0]))
    if face_uvs.shape != faces.shape:
        raise ValueError(
            f"face_uvs must have the shape of faces {tuple(faces.shape)}, got {tuple(face_uvs.shape)}"
        )
    vertices = vertices.detach().float().cpu()  # baking runs on the CPU (numpy, OpenCV, xatlas)
    faces = faces.cpu()

    texels = uv_texels(uvs, face_uvs, height, width)
    texel_face = torch.full((height, width), -1, dtype=torch.long, device="cpu")
    texel_bary = torch.zeros(height, width, 3, device="cpu")
    texel_face[texels.row, texels.column] = torch.from_numpy(texels.face)
    texel_bary[texels.row, texels.column] = torch.from_numpy(texels.bary).float()
    index, points, normals = texel_surface(vertices, faces, texel_face, texel_bary)  # (N, 2), (N, 3), (N, 3)
    count = len(points)
    if mirror:
        points = torch.cat([points, points * MIRROR])  # (2N, 3)
        normals = torch.cat([normals, normals * MIRROR])
    tolerance = torch.full((len(points),), depth_tolerance, device="cpu")
    tolerance[count:] = mirror_depth_tolerance
    sampled, good = sample_photo(
        points, normals, vertices, faces, camera, image, mask,
        min_facing=min_facing, depth_tolerance=tolerance, erode_pixels=erode_pixels,
    )  # fmt: skip
    direct = good[:count]  # (N,)
    mirrored = good[count:] & ~direct if mirror else torch.zeros_like(direct)
    values = torch.where(direct[:, None], sampled[:count], sampled[count:] if mirror else sampled[:count])

    rows, columns = index[:, 0].numpy(), index[:, 1].numpy()
    colors = np.zeros((height, width, 3), np.float32)
    known = np.zeros((height, width), bool)
    from_photo = np.zeros((height, width), bool)
    take = (direct | mirrored).numpy()
    colors[rows[take], columns[take]] = values[take].numpy()
    known[rows[take], columns[take]] = True
    from_photo[rows[direct.numpy()], columns[direct.numpy()]] = True
    texture = np.clip(inpaint(colors, known), 0.0, 1.0).astype(np.float32)
    return BakedTexture(
        texture=texture,
        known=known,
        from_photo=from_photo,
        photo_fraction=float(direct.sum()) / max(count, 1),
        mirrored_fraction=float(mirrored.sum()) / max(count, 1),
    )
