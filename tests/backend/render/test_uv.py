"""UV-space rasterization against a loop oracle; surface points of the covered texels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.geometry.templates import icosphere_template
from backend.render.uv import texel_surface, uv_rasterize


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
