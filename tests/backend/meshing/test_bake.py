"""Baking onto an xatlas atlas of a sphere from an analytic photo: photo colours, mirror fill, GLB trip.

The photo is what a weak-perspective camera sees of the unit sphere painted with
``paint(p) = (0.5 + 0.5 y, 0.5 + 0.5 z, |x|)``: symmetric across x = 0, so a texel filled from the
photo and one filled from its mirror image must both hold ``paint`` of their own surface point.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.geometry.camera import (
    Camera,
    axis_angle_to_quaternion,
    quaternion_multiply,
    quaternion_to_matrix,
)
from backend.geometry.io import load_glb, save_glb
from backend.geometry.mesh import TexturedMesh
from backend.geometry.templates import icosphere_template
from backend.meshing.bake import bake_texture
from backend.meshing.unwrap import unwrap_uvs, uv_texels

Atlas = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # vertices, faces, uvs, face_uvs
SIZE = 128  # photo side
TEXTURE = (128, 128)


def paint(points: np.ndarray) -> np.ndarray:
    unit = points / np.linalg.norm(points, axis=-1, keepdims=True)
    return np.stack([0.5 + 0.5 * unit[..., 1], 0.5 + 0.5 * unit[..., 2], np.abs(unit[..., 0])], axis=-1)


def sphere_photo(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) image and (S, S) mask of the painted unit sphere seen by a weak-perspective camera."""
    centres = (2 * np.arange(SIZE) + 1) / SIZE - 1
    x_view = centres[None, :] / float(camera.weak.scale[0])  # (1, S)
    y_view = -centres[:, None] / float(camera.weak.scale[0])  # (S, 1), row 0 at the top
    squared = x_view**2 + y_view**2  # (S, S)
    mask = squared < 1
    z_view = np.sqrt(np.clip(1 - squared, 0, None))  # the front of the sphere faces +z (the camera)
    view = np.stack(np.broadcast_arrays(x_view, y_view, z_view), axis=-1)  # (S, S, 3)
    rotation = quaternion_to_matrix(camera.weak.rotation)[0].double().numpy()
    world = view @ rotation  # R^T p_view, row-vector form
    return np.where(mask[..., None], paint(world), 0).astype(np.float32), mask


def turned_camera(degrees: float, tilt: float = 0.0) -> Camera:
    """Weak perspective looking at the sphere from azimuth ``degrees`` (90: from +x) and ``tilt`` above."""
    yaw = axis_angle_to_quaternion(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([math.radians(-degrees)]))
    pitch = axis_angle_to_quaternion(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([math.radians(tilt)]))
    return Camera.weak_perspective(torch.tensor([0.8]), torch.zeros(1, 2), quaternion_multiply(pitch, yaw))


@pytest.fixture(scope="module")
def atlas() -> Atlas:
    mesh = icosphere_template().mesh
    uvs, face_uvs = unwrap_uvs(mesh.vertices, mesh.faces, padding=2, resolution=TEXTURE[0])
    return mesh.vertices, mesh.faces, uvs, face_uvs


def texel_points(atlas: Atlas) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertices, faces, uvs, face_uvs = atlas
    texels = uv_texels(uvs, face_uvs, *TEXTURE)
    corners = vertices.double().numpy()[faces.numpy()[texels.face]]  # (K, 3, 3)
    return texels.row, texels.column, (texels.bary[..., None] * corners).sum(1)


@pytest.mark.parametrize(("degrees", "tilt"), [(90.0, 0.0), (50.0, 20.0)])
def test_bake_fills_the_seen_and_the_mirrored_side_with_the_right_colours(
    atlas: Atlas, degrees: float, tilt: float
) -> None:
    camera = turned_camera(degrees, tilt)
    image, mask = sphere_photo(camera)
    baked = bake_texture(*atlas, camera, image, mask, TEXTURE)
    assert baked.texture.shape == (*TEXTURE, 3) and baked.texture.dtype == np.float32
    assert np.isfinite(baked.texture).all() and baked.texture.min() >= 0 and baked.texture.max() <= 1
    rows, columns, points = texel_points(atlas)
    known = baked.known[rows, columns]
    error = np.abs(baked.texture[rows, columns] - paint(points)).max(-1)[known]
    assert np.quantile(error, 0.95) < 0.04 and error.max() < 0.15
    assert baked.photo_fraction > 0.3 and baked.mirrored_fraction > 0.2
    # the eroded mask and the facing test leave out a grazing band around each visible half
    assert baked.photo_fraction + baked.mirrored_fraction > (0.65 if degrees == 90.0 else 0.55)
    assert baked.from_photo.sum() == pytest.approx(
        baked.photo_fraction * len(np.unique(rows * 1000 + columns))
    )
    assert (baked.from_photo <= baked.known).all()
    if degrees == 90.0:  # seen from +x: the far side x < 0 is filled by the mirror, not the photo
        far = points[:, 0] < -0.3
        assert known[far].mean() > 0.95
        assert not baked.from_photo[rows, columns][far].any()


def test_without_mirror_the_hidden_side_is_inpainted(atlas: Atlas) -> None:
    camera = turned_camera(90.0)
    image, mask = sphere_photo(camera)
    baked = bake_texture(*atlas, camera, image, mask, TEXTURE, mirror=False)
    rows, columns, points = texel_points(atlas)
    assert baked.mirrored_fraction == 0.0 and np.array_equal(baked.known, baked.from_photo)
    assert not baked.known[rows, columns][points[:, 0] < -0.3].any()
    assert np.isfinite(baked.texture).all()


def test_texture_rows_follow_the_uv_convention(atlas: Atlas) -> None:
    """Read the texture at each face centre's UV by hand (row 0 = v 1): the photo's colour is there."""
    vertices, faces, uvs, face_uvs = atlas
    camera = turned_camera(90.0)
    image, mask = sphere_photo(camera)
    baked = bake_texture(*atlas, camera, image, mask, TEXTURE)
    centre = vertices[faces].mean(1).double().numpy()  # (F, 3)
    uv = uvs[face_uvs].mean(1).double().numpy()  # (F, 2) the UV of the face centre
    row = np.clip(((1 - uv[:, 1]) * TEXTURE[0]).astype(int), 0, TEXTURE[0] - 1)
    column = np.clip((uv[:, 0] * TEXTURE[1]).astype(int), 0, TEXTURE[1] - 1)
    seen = (centre[:, 0] > 0.5) & baked.known[row, column]
    assert seen.sum() > 100
    np.testing.assert_allclose(baked.texture[row, column][seen], paint(centre)[seen], atol=0.06)


def test_baked_mesh_survives_a_glb_round_trip(atlas: Atlas, tmp_path: Path) -> None:
    vertices, faces, uvs, face_uvs = atlas
    camera = turned_camera(50.0, 20.0)
    baked = bake_texture(*atlas, camera, *sphere_photo(camera), TEXTURE)
    mesh = TexturedMesh(vertices, faces, uvs, face_uvs, torch.from_numpy(baked.texture))
    loaded = load_glb(save_glb(mesh, tmp_path / "sphere.glb"))
    assert loaded.num_faces == mesh.num_faces
    torch.testing.assert_close(loaded.vertices[loaded.faces], vertices[faces], atol=1e-6, rtol=0)
    torch.testing.assert_close(loaded.uvs[loaded.face_uvs], uvs[face_uvs], atol=1e-6, rtol=0)
    torch.testing.assert_close(loaded.texture, mesh.texture, atol=0.5 / 255 + 1e-6, rtol=0)


def test_bake_checks_its_input(atlas: Atlas) -> None:
    camera = turned_camera(90.0)
    image, mask = sphere_photo(camera)
    vertices, faces, uvs, face_uvs = atlas
    with pytest.raises(ValueError, match="one camera"):
        bake_texture(*atlas, Camera.cat([camera, camera]), image, mask, TEXTURE)
    with pytest.raises(ValueError, match="face_uvs"):
        bake_texture(vertices, faces, uvs, face_uvs[:-1], camera, image, mask, TEXTURE)
    with pytest.raises(ValueError, match="mask"):
        bake_texture(*atlas, camera, image, mask[:-1], TEXTURE)
