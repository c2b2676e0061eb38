"""xatlas unwrap of a Poisson sphere, the UV raster against loop oracles, and the overlap measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xatlas

from backend.geometry.mesh import PointCloud
from backend.geometry.templates import icosphere_template
from backend.meshing.pipeline import MeshingOptions, mesh_point_cloud
from backend.meshing.unwrap import unwrap_uvs, uv_overlap_fraction, uv_texels
from backend.render.uv import uv_rasterize


def naive_hits(uvs: np.ndarray, face_uvs: np.ndarray, height: int, width: int, slack: float) -> set:
    """(face, row, column) of texel centres inside each UV triangle with barycentric slack (loop oracle)."""
    hits = set()
    for f, (a, b, c) in enumerate(face_uvs):
        (ax, ay), (bx, by), (cx, cy) = uvs[a], uvs[b], uvs[c]
        det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
        if abs(det) < 1e-14:
            continue
        for i in range(height):
            for j in range(width):
                u, v = (j + 0.5) / width, 1 - (i + 0.5) / height
                l1 = ((by - cy) * (u - cx) + (cx - bx) * (v - cy)) / det
                l2 = ((cy - ay) * (u - cx) + (ax - cx) * (v - cy)) / det
                if min(l1, l2, 1 - l1 - l2) > slack:
                    hits.add((f, i, j))
    return hits


def test_unwrap_of_a_poisson_sphere() -> None:
    directions = np.random.default_rng(1).normal(size=(2000, 3))
    points = torch.from_numpy(0.4 * directions / np.linalg.norm(directions, axis=1, keepdims=True)).float()
    mesh = mesh_point_cloud(
        PointCloud(points), MeshingOptions(depth=5, density_quantile=0.0, face_budget=1500)
    )
    vertices, faces = mesh.vertices.clone(), mesh.faces.clone()
    uvs, face_uvs = unwrap_uvs(mesh.vertices, mesh.faces, padding=2, resolution=256)
    assert torch.equal(mesh.vertices, vertices) and torch.equal(mesh.faces, faces)  # geometry untouched
    assert uvs.dtype == torch.float32 and face_uvs.dtype == torch.int64 and face_uvs.shape == faces.shape
    assert float(uvs.min()) >= 0.0 and float(uvs.max()) <= 1.0
    assert len(uvs) >= len(vertices) and int(face_uvs.max()) == len(uvs) - 1
    owner = torch.full((len(uvs),), -1, dtype=torch.long)
    owner[face_uvs.reshape(-1)] = faces.reshape(-1)
    assert torch.equal(owner[face_uvs], faces)  # every UV vertex belongs to one mesh vertex
    assert uv_overlap_fraction(uvs, face_uvs, 512) < 0.01
    texels = uv_texels(uvs, face_uvs, 256, 256)
    assert len(np.unique(texels.row * 256 + texels.column)) > 0.4 * 256**2  # charts fill a fair part


def test_unwrap_flips_xatlas_rows_to_bottom_left_uvs() -> None:
    mesh = icosphere_template(level=2).mesh
    uvs, face_uvs = unwrap_uvs(mesh.vertices, mesh.faces, padding=1, resolution=64)
    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices.numpy(), mesh.faces.numpy().astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.padding, pack.resolution = 1, 64
    atlas.generate(xatlas.ChartOptions(), pack)
    _, indices, raw = atlas[0]  # xatlas: y counted down from the top row
    np.testing.assert_array_equal(face_uvs.numpy(), indices)
    np.testing.assert_allclose(uvs.numpy(), np.stack([raw[:, 0], 1 - raw[:, 1]], axis=1), atol=1e-7)


def test_uv_texels_match_a_loop_oracle() -> None:
    rng = np.random.default_rng(3)
    uvs = rng.uniform(0.0, 1.0, size=(12, 2))
    face_uvs = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [0, 4, 8]])
    texels = uv_texels(torch.from_numpy(uvs), torch.from_numpy(face_uvs), 12, 20)
    found = set(zip(texels.face.tolist(), texels.row.tolist(), texels.column.tolist(), strict=True))
    assert naive_hits(uvs, face_uvs, 12, 20, 1e-7) <= found <= naive_hits(uvs, face_uvs, 12, 20, -1e-7)
    corners = uvs[face_uvs[texels.face]]  # (K, 3, 2)
    centre = (texels.bary[..., None] * corners).sum(1)
    np.testing.assert_allclose(centre[:, 0], (texels.column + 0.5) / 20, atol=1e-12)
    np.testing.assert_allclose(centre[:, 1], 1 - (texels.row + 0.5) / 12, atol=1e-12)


def test_uv_texels_cover_what_uv_rasterize_covers() -> None:
    mesh = icosphere_template().mesh
    face, _ = uv_rasterize(mesh.uvs, mesh.face_uvs, 32, 64)
    texels = uv_texels(mesh.uvs, mesh.face_uvs, 32, 64)
    covered = np.zeros((32, 64), bool)
    covered[texels.row, texels.column] = True
    np.testing.assert_array_equal(covered, face.numpy() >= 0)
    flat = texels.row * 64 + texels.column
    single = np.bincount(flat, minlength=32 * 64)[flat] == 1  # texels inside exactly one triangle
    np.testing.assert_array_equal(face.numpy()[texels.row, texels.column][single], texels.face[single])


def test_overlap_fraction_of_hand_made_layouts() -> None:
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    halves = torch.tensor([[0, 1, 2], [0, 2, 3]])  # the diagonal runs through texel centres
    assert uv_overlap_fraction(square, halves, 32) == 0.0
    doubled = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 1, 2]])  # one half twice
    fraction = uv_overlap_fraction(square, doubled, 32)
    inside = naive_hits(square.numpy().astype(np.float64), np.array([[0, 1, 2]]), 32, 32, 1e-9)
    assert fraction == pytest.approx(len(inside) / (32 * 32))
    assert 0.45 < fraction < 0.5


def test_unwrap_checks_its_input() -> None:
    mesh = icosphere_template(level=1).mesh
    with pytest.raises(ValueError, match="index vertex"):
        unwrap_uvs(mesh.vertices[:10], mesh.faces)
    with pytest.raises(ValueError, match="padding"):
        unwrap_uvs(mesh.vertices, mesh.faces, padding=-1)
