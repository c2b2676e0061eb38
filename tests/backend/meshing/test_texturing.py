"""Texture by projection: photo lookup, mirror fill, inpainting."""

from __future__ import annotations

import math

import numpy as np
import torch

from backend.geometry.camera import Camera
from backend.geometry.templates import icosphere_template
from backend.meshing.texturing import fill_mirrored, inpaint, project_photo
from backend.render.uv import texel_surface, uv_rasterize


def frontal_sphere_camera(scale: float = 0.8) -> Camera:
    return Camera.weak_perspective(torch.tensor([scale]), torch.zeros(1, 2), torch.tensor([[1.0, 0, 0, 0]]))


def test_project_photo_takes_visible_front_texels_only() -> None:
    """A frontal camera over an image that is red left of centre and blue right of it."""
    mesh = icosphere_template().mesh
    size = 64
    image = np.zeros((size, size, 3), np.float32)
    image[:, : size // 2, 0] = 1.0  # left: red
    image[:, size // 2 :, 2] = 1.0  # right: blue
    mask = np.ones((size, size), bool)
    colors, known = project_photo(
        mesh.vertices, mesh.faces, mesh.uvs, mesh.face_uvs, frontal_sphere_camera(), image, mask, (32, 64),
        erode_pixels=0,
    )  # fmt: skip
    face, bary = uv_rasterize(mesh.uvs, mesh.face_uvs, 32, 64)
    index, points, normals = texel_surface(mesh.vertices, mesh.faces, face, bary)
    got = known[index[:, 0].numpy(), index[:, 1].numpy()]
    front = normals[:, 2] > 0.3
    back = normals[:, 2] < 0.0
    assert got[front.numpy()].mean() > 0.95
    assert not got[back.numpy()].any()
    values = colors[index[:, 0].numpy(), index[:, 1].numpy()]
    left = (points[:, 0] < -0.1).numpy() & got
    right = (points[:, 0] > 0.1).numpy() & got
    assert left.any() and right.any()
    np.testing.assert_allclose(values[left], np.broadcast_to([1.0, 0.0, 0.0], values[left].shape), atol=1e-5)
    np.testing.assert_allclose(
        values[right], np.broadcast_to([0.0, 0.0, 1.0], values[right].shape), atol=1e-5
    )
    assert (colors[~known] == 0).all()


def test_project_photo_leaves_out_texels_outside_the_mask() -> None:
    mesh = icosphere_template().mesh
    size = 64
    image = np.full((size, size, 3), 0.7, np.float32)
    mask = np.zeros((size, size), bool)
    mask[:, : size // 2] = True  # only the left half is the object
    _, known = project_photo(
        mesh.vertices, mesh.faces, mesh.uvs, mesh.face_uvs, frontal_sphere_camera(), image, mask, (32, 64)
    )
    face, bary = uv_rasterize(mesh.uvs, mesh.face_uvs, 32, 64)
    index, points, _ = texel_surface(mesh.vertices, mesh.faces, face, bary)
    got = known[index[:, 0].numpy(), index[:, 1].numpy()]
    assert got.any()
    assert not got[(points[:, 0] > 0.05).numpy()].any()  # right of the (eroded) mask edge


def test_project_photo_respects_occlusion() -> None:
    """Two spheres in a row along the view axis: the hidden one gets nothing."""
    mesh = icosphere_template().mesh
    near = mesh.vertices * 0.5 + torch.tensor([0.0, 0.0, 1.0])
    far = mesh.vertices * 0.5 + torch.tensor([0.0, 0.0, -1.0])
    vertices = torch.cat([near, far])
    faces = torch.cat([mesh.faces, mesh.faces + mesh.num_vertices])
    # UVs: the near sphere's faces use the left half of the texture, the far one's the right half.
    uvs = torch.cat(
        [mesh.uvs * torch.tensor([0.5, 1.0]), mesh.uvs * torch.tensor([0.5, 1.0]) + torch.tensor([0.5, 0])]
    )
    face_uvs = torch.cat([mesh.face_uvs, mesh.face_uvs + mesh.uvs.shape[0]])
    image = np.full((64, 64, 3), 0.3, np.float32)
    _, known = project_photo(
        vertices, faces, uvs, face_uvs, frontal_sphere_camera(), image, np.ones((64, 64), bool), (32, 64)
    )
    assert known[:, :32].sum() > 100
    assert known[:, 32:].sum() == 0


def test_fill_mirrored_copies_the_flipped_half() -> None:
    rng = np.random.default_rng(0)
    colors = rng.random((8, 16, 3)).astype(np.float32)
    known = np.zeros((8, 16), bool)
    known[:, 8:] = True
    colors[~known] = 0
    filled, now_known = fill_mirrored(colors, known)
    assert now_known.all()
    np.testing.assert_array_equal(filled[:, :8], colors[:, 8:][:, ::-1])
    np.testing.assert_array_equal(filled[:, 8:], colors[:, 8:])


def test_inpaint_fills_holes_from_their_surroundings() -> None:
    colors = np.zeros((64, 128, 3), np.float32)
    colors[...] = [0.2, 0.6, 0.4]
    known = np.ones((64, 128), bool)
    known[10:50, 20:90] = False  # a big hole
    known[0:3, :] = False  # and a strip at the border
    colors[~known] = 0
    filled = inpaint(colors, known)
    np.testing.assert_allclose(
        filled, np.broadcast_to([0.2, 0.6, 0.4], filled.shape), atol=6 / 255
    )  # Telea works in uint8 and drifts a few levels
    np.testing.assert_array_equal(filled[known], colors[known])


def test_inpaint_large_texture_and_edge_cases() -> None:
    height, width = 512, 1024
    columns = np.linspace(0, 1, width, dtype=np.float32)
    colors = np.repeat(np.repeat(columns[None, :, None], height, 0), 3, 2)  # a horizontal ramp
    known = np.zeros((height, width), bool)
    known[:, ::7] = True  # sparse columns known
    filled = inpaint(np.where(known[..., None], colors, 0), known)
    assert np.abs(filled - colors).max() < 0.05
    assert (inpaint(colors, np.zeros_like(known)) == 0.5).all()
    np.testing.assert_array_equal(inpaint(colors, np.ones_like(known)), colors)
    assert math.isfinite(float(filled.sum()))
