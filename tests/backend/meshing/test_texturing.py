"""Texture by projection: UV rasterization against a loop oracle, photo lookup, mirror fill, inpainting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.geometry.camera import Camera
from backend.geometry.templates import icosphere_template
from backend.meshing.texturing import fill_mirrored, inpaint, project_photo, texel_surface, uv_rasterize


def naive_uv_faces(uvs: np.ndarray, face_uvs: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) lists of faces whose UV triangle contains the texel centre (loop oracle, with a tiny slack)."""
    hits = np.empty((height, width), dtype=object)
    for i in range(height):
        for j in range(width):
            u, v = (j + 0.5) / width, 1 - (i + 0.5) / height
            found = []
            for f, (a, b, c) in enumerate(face_uvs):
                (ax, ay), (bx, by), (cx, cy) = uvs[a], uvs[b], uvs[c]
                det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
                if abs(det) < 1e-12:
                    continue
                l1 = ((by - cy) * (u - cx) + (cx - bx) * (v - cy)) / det
                l2 = ((cy - ay) * (u - cx) + (ax - cx) * (v - cy)) / det
                if min(l1, l2, 1 - l1 - l2) >= -1e-6:
                    found.append(f)
            hits[i, j] = found
    return hits


@pytest.mark.parametrize(("height", "width"), [(16, 32), (24, 24), (32, 16)])
def test_uv_rasterize_matches_a_loop_oracle(height: int, width: int) -> None:
    mesh = icosphere_template().mesh
    face, bary = uv_rasterize(mesh.uvs, mesh.face_uvs, height, width)
    assert face.shape == (height, width) and bary.shape == (height, width, 3)
    oracle = naive_uv_faces(mesh.uvs.numpy(), mesh.face_uvs.numpy(), height, width)
    for i in range(height):
        for j in range(width):
            if oracle[i, j]:
                assert int(face[i, j]) in oracle[i, j], (i, j)
            else:
                assert int(face[i, j]) == -1, (i, j)
    covered = face >= 0
    corners = mesh.uvs[mesh.face_uvs[face[covered]]]  # (N, 3, 2)
    uv = (bary[covered][..., None] * corners).sum(1)
    rows, columns = torch.nonzero(covered, as_tuple=True)
    expected = torch.stack([(columns + 0.5) / width, 1 - (rows + 0.5) / height], dim=-1)
    torch.testing.assert_close(uv, expected, atol=1e-5, rtol=0)


def test_uv_rasterize_refuses_incommensurate_sides() -> None:
    mesh = icosphere_template().mesh
    with pytest.raises(ValueError, match="multiples"):
        uv_rasterize(mesh.uvs, mesh.face_uvs, 16, 24)


def test_texel_points_lie_on_the_sphere() -> None:
    mesh = icosphere_template().mesh
    face, bary = uv_rasterize(mesh.uvs, mesh.face_uvs, 32, 64)
    index, points, normals = texel_surface(mesh.vertices, mesh.faces, face, bary)
    radius = points.norm(dim=-1)
    assert index.shape[0] == points.shape[0] > 0.9 * 32 * 64
    assert float(radius.max()) <= 1.0 + 1e-5 and float(radius.min()) > 0.95  # chords of a unit sphere
    assert float((normals * points).sum(-1).min()) > 0.9  # outward normals


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
