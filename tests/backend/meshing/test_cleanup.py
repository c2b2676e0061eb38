"""Cleanup on a hand-made mesh with every defect, decimation to a budget, orientation checks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import open3d as o3d
import pytest

from backend.geometry.templates import icosphere_template
from backend.meshing.cleanup import (
    clean_mesh,
    decimate,
    face_components,
    is_closed,
    orient_outward,
    remove_degenerate_faces,
    remove_duplicate_faces,
    remove_unreferenced_vertices,
    signed_volume,
)

# A tetrahedron (vertices 0-3, counter-clockwise from outside), an unused vertex 4, a collinear vertex 5
# on the edge 0-1, and a small triangle 6-8 far away.
VERTICES = np.array(
    [
        [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
        [9.0, 9.0, 9.0], [0.5, 0.0, 0.0],
        [5.0, 5.0, 5.0], [5.1, 5.0, 5.0], [5.0, 5.1, 5.0],
    ]
)  # fmt: skip
TETRAHEDRON = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


def defective_faces() -> np.ndarray:
    return np.array(
        [
            *TETRAHEDRON,
            [0, 0, 2],  # repeated index
            [0, 5, 1],  # zero area
            [1, 3, 0],  # duplicate of [0, 1, 3] (same winding, rotated)
            [2, 1, 0],  # duplicate of [0, 2, 1] (opposite winding)
            [6, 7, 8],  # second, smaller component
        ]
    )


def naive_is_closed(faces: np.ndarray) -> bool:
    counts = Counter(tuple(sorted((int(f[i]), int(f[(i + 1) % 3])))) for f in faces for i in range(3))
    return all(count == 2 for count in counts.values())


def test_clean_mesh_leaves_the_tetrahedron() -> None:
    vertices, faces, removed = clean_mesh(VERTICES, defective_faces())
    np.testing.assert_array_equal(vertices, VERTICES[:4])
    np.testing.assert_array_equal(faces, TETRAHEDRON)
    assert removed == {
        "degenerate_faces": 2,
        "duplicate_faces": 2,
        "component_faces": 1,
        "unreferenced_vertices": 5,
    }
    assert is_closed(faces) and signed_volume(vertices, faces) == pytest.approx(1 / 6)


def test_each_cleanup_step() -> None:
    faces = defective_faces()
    assert remove_degenerate_faces(VERTICES, faces).tolist() == [
        *TETRAHEDRON,
        [1, 3, 0],
        [2, 1, 0],
        [6, 7, 8],
    ]
    assert remove_duplicate_faces(faces).tolist() == [*TETRAHEDRON, [0, 0, 2], [0, 5, 1], [6, 7, 8]]
    vertices, reindexed = remove_unreferenced_vertices(VERTICES, np.array([[6, 7, 8], [1, 2, 3]]))
    np.testing.assert_array_equal(vertices, VERTICES[[1, 2, 3, 6, 7, 8]])
    np.testing.assert_array_equal(vertices[reindexed], VERTICES[[[6, 7, 8], [1, 2, 3]]])
    tiny = VERTICES[:4] * 1e-4  # a small but well-shaped mesh keeps every face
    assert len(remove_degenerate_faces(tiny, np.array(TETRAHEDRON))) == 4


def test_closedness_and_orientation_against_loops() -> None:
    sphere = icosphere_template().mesh
    vertices, faces = sphere.vertices.double().numpy(), sphere.faces.numpy()
    assert is_closed(faces) == naive_is_closed(faces) is True
    assert is_closed(faces[1:]) == naive_is_closed(faces[1:]) is False
    volume = signed_volume(vertices, faces)
    assert 0 < volume < 4 / 3 * np.pi
    flipped, changed = orient_outward(vertices, faces[:, ::-1])
    assert changed and np.array_equal(flipped, faces)
    same, changed = orient_outward(vertices, faces)
    assert not changed and same is faces


def test_decimation_respects_the_budget() -> None:
    sphere = icosphere_template(level=4).mesh
    vertices, faces = sphere.vertices.double().numpy(), sphere.faces.numpy()  # 5120 faces
    small_vertices, small_faces = decimate(vertices, faces, 1000)
    assert 900 <= len(small_faces) <= 1000
    assert small_faces.max() == len(small_vertices) - 1  # no unused vertices
    assert is_closed(small_faces) and signed_volume(small_vertices, small_faces) > 0
    assert np.abs(np.linalg.norm(small_vertices, axis=1) - 1).max() < 0.05
    kept = decimate(vertices, faces, 6000)
    assert kept[0] is vertices and kept[1] is faces
    with pytest.raises(ValueError, match="face_budget"):
        decimate(vertices, faces, 2)


def test_face_components_partition_like_open3d() -> None:
    """Three spheres, two of them joined through a shared vertex only, and a fin on one edge."""
    sphere = icosphere_template(level=1).mesh
    vertices = sphere.vertices.double().numpy()
    faces = sphere.faces.numpy()
    count = len(vertices)
    all_vertices = np.concatenate(
        [vertices, vertices + np.array([3.0, 0, 0]), vertices + np.array([0, 3.0, 0]), [[0.0, 0.0, 5.0]]]
    )
    second = faces + count
    second[second == count] = 0  # shares vertex 0 with the first sphere: not an edge, so not connected
    fin = [[int(faces[0, 0]), int(faces[0, 1]), 3 * count]]  # a third face on an edge of the first sphere
    all_faces = np.concatenate([faces, second, faces + 2 * count, fin])
    labels = face_components(all_faces)
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(all_vertices), o3d.utility.Vector3iVector(all_faces.astype(np.int32))
    )
    reference = np.asarray(mesh.cluster_connected_triangles()[0])
    pairs = np.unique(np.stack([labels, reference], axis=1), axis=0)
    assert len(pairs) == len(np.unique(labels)) == len(np.unique(reference)) == 3
    assert labels[-1] == labels[0]  # the fin belongs to the first sphere
