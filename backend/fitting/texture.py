"""Texture a fitted mesh from the photo, and put the fitted vertices and the texture together.

``texture_from_photo(layout, vertices, camera, image, mask, settings) -> (H, W, 3)``: each texel takes
the photo colour where its surface point projects, when that point is visible and faces the camera
(``backend.meshing.texturing.project_photo``). The texels the photo does not see are filled by
``settings.unseen``:

- "mirror": from the mirrored visible side (the mesh has a symmetric template UV layout), then what is
  still empty is inpainted (OpenCV);
- "given": the layout mesh's own texture (resized to the output).

With ``settings.keep_distance`` (an artist's refinement, where the given texture is meaningful), texels
whose surface point moved less than that share of the mesh's size keep the given texture even where the
photo sees them: re-projecting them through a new camera would slide the texture (e.g. onto an eye).

``fitted_mesh(layout, vertices, texture)``: the result mesh on the CPU, ``layout``'s faces and UVs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from backend.fitting.refine_terms import moved_texels
from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.meshing.texturing import fill_mirrored, inpaint, project_photo

UnseenFill = Literal["mirror", "given"]


@dataclass(frozen=True)
class TextureSettings:
    """The texture to make: ``size`` (H, W) texels, how unseen texels are filled, which texels keep the
    given texture (module docstring)."""

    size: tuple[int, int]
    unseen: UnseenFill = "mirror"
    keep_distance: float | None = None


def texture_from_photo(
    layout: TexturedMesh,
    vertices: Tensor,
    camera: Camera,
    image: np.ndarray,
    mask: np.ndarray,
    settings: TextureSettings,
) -> Tensor:
    """(H, W, 3) float32 in [0, 1] on the CPU for ``layout``'s UVs with its vertices moved to ``vertices``
    (V, 3), seen by the batch-of-one ``camera`` in the crop ``image`` (S, S, 3) with ``mask`` (S, S)."""
    size = settings.size
    colors, known = project_photo(
        vertices, layout.faces, layout.uvs, layout.face_uvs, camera, image, mask, size
    )
    if settings.keep_distance is not None:  # the given texture stays where the surface stayed
        known &= moved_texels(
            layout.vertices, vertices, layout.faces, layout.uvs, layout.face_uvs, size,
            settings.keep_distance,
        )  # fmt: skip
    if settings.unseen == "mirror":
        colors, known = fill_mirrored(colors, known)
    else:
        given = layout.texture.detach().cpu().numpy().astype(np.float32)
        previous = cv2.resize(given, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        colors = np.where(known[..., None], colors, previous).astype(np.float32)
        known = np.ones_like(known)
    return torch.from_numpy(inpaint(colors, known)).clamp(0, 1)


def fitted_mesh(layout: TexturedMesh, vertices: Tensor, texture: Tensor) -> TexturedMesh:
    """``layout``'s faces and UVs with ``vertices`` (V, 3) and ``texture`` (H, W, 3), on the CPU."""
    return TexturedMesh(
        vertices=vertices.detach().cpu(),
        faces=layout.faces.cpu(),
        uvs=layout.uvs.cpu(),
        face_uvs=layout.face_uvs.cpu(),
        texture=texture,
    )
