"""Tests for backend.geometry.ops: naive-loop oracles, hand-computed values and float64 gradchecks."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from backend.geometry.ops import (
    cotangent_laplacian,
    deformation_loss,
    edge_adjacent_faces,
    face_areas,
    face_normals,
    flatten_loss,
    laplacian_loss,
    uniform_laplacian,
    vertex_normals,
)
from backend.geometry.templates import icosphere_template

# A regular tetrahedron centred at the origin, faces counter-clockwise seen from outside.
TETRA_VERTICES = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
TETRA_FACES = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])


def grid_mesh(
    size: int, jitter: float = 0.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A flat size x size vertex grid in the plane z = 0 (interior vertices jittered in-plane).

    Returns vertices (V, 3) float64, faces (F, 3) and a (V,) bool mask of interior vertices.
    """
    i, j = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    xy = torch.stack([i, j], dim=-1).reshape(-1, 2).double()
    interior = ((i > 0) & (i < size - 1) & (j > 0) & (j < size - 1)).reshape(-1)
    noise = torch.rand(xy.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 0.5
    xy = xy + jitter * noise * interior[:, None]
    vertices = torch.cat([xy, torch.zeros(len(xy), 1, dtype=torch.float64)], dim=1)
    faces = []
    for a in range(size - 1):
        for b in range(size - 1):
            v00, v01, v10, v11 = a * size + b, a * size + b + 1, (a + 1) * size + b, (a + 1) * size + b + 1
            faces += [(v00, v10, v11), (v00, v11, v01)]
    return vertices, torch.tensor(faces), interior


@pytest.fixture(scope="module")
def sphere() -> tuple[torch.Tensor, torch.Tensor]:
    """A randomly bumped icosphere: vertices (642, 3) float64 and faces."""
    mesh = icosphere_template().mesh
    scale = 1 + 0.1 * torch.rand(mesh.num_vertices, 1, generator=torch.Generator().manual_seed(3))
    return mesh.vertices.double() * scale.double(), mesh.faces


def naive_cross(vertices: np.ndarray, face: list[int]) -> np.ndarray:
    a, b, c = (vertices[i] for i in face)
    return np.cross(b - a, c - a)


def test_face_normals_and_areas_match_loop(sphere: tuple[torch.Tensor, torch.Tensor]) -> None:
    vertices, faces = sphere
    normals, areas = face_normals(vertices, faces), face_areas(vertices, faces)
    points = vertices.numpy()
    for f, face in enumerate(faces.tolist()):
        cross = naive_cross(points, face)
        assert np.allclose(normals[f].numpy(), cross / np.linalg.norm(cross))
        assert areas[f].item() == pytest.approx(np.linalg.norm(cross) / 2)
    batched = face_normals(torch.stack([vertices, 2 * vertices]), faces)
    assert batched.shape == (2, faces.shape[0], 3)
    assert torch.allclose(batched[1], normals)
    assert torch.allclose(face_areas(torch.stack([vertices, 2 * vertices]), faces)[1], 4 * areas)


def test_vertex_normals_match_loop(sphere: tuple[torch.Tensor, torch.Tensor]) -> None:
    vertices, faces = sphere
    points = vertices.numpy()
    summed = np.zeros_like(points)
    for face in faces.tolist():
        for i in face:
            summed[i] += naive_cross(points, face)  # area-weighted: |cross| = 2 area
    expected = summed / np.linalg.norm(summed, axis=1, keepdims=True)
    assert np.allclose(vertex_normals(vertices, faces).numpy(), expected)
    round_normals = vertex_normals(icosphere_template().mesh.vertices, faces)
    assert (round_normals * icosphere_template().mesh.vertices).sum(dim=1).min() > 0.999  # radial on a sphere


def naive_uniform_laplacian(faces: torch.Tensor, num_vertices: int) -> np.ndarray:
    neighbours: dict[int, set[int]] = defaultdict(set)
    for face in faces.tolist():
        for k in range(3):
            neighbours[face[k]] |= {face[(k + 1) % 3], face[(k + 2) % 3]}
    laplacian = np.zeros((num_vertices, num_vertices))
    for i, others in neighbours.items():
        laplacian[i, i] = 1
        for j in others:
            laplacian[i, j] = -1 / len(others)
    return laplacian


def naive_cotangent_laplacian(vertices: np.ndarray, faces: torch.Tensor) -> np.ndarray:
    laplacian = np.zeros((len(vertices), len(vertices)))
    for face in faces.tolist():
        for k in range(3):
            i, j, opposite = face[k], face[(k + 1) % 3], face[(k + 2) % 3]
            e1, e2 = vertices[i] - vertices[opposite], vertices[j] - vertices[opposite]
            angle = math.acos(np.dot(e1, e2) / (np.linalg.norm(e1) * np.linalg.norm(e2)))
            weight = 0.5 / math.tan(angle)
            laplacian[i, j] -= weight
            laplacian[j, i] -= weight
            laplacian[i, i] += weight
            laplacian[j, j] += weight
    return laplacian


def test_uniform_laplacian_matches_loop(sphere: tuple[torch.Tensor, torch.Tensor]) -> None:
    vertices, faces = sphere
    dense = uniform_laplacian(faces, len(vertices)).to_dense().numpy()
    assert np.allclose(dense, naive_uniform_laplacian(faces, len(vertices)))
    assert np.allclose(dense.sum(axis=1), 0, atol=1e-6)
    # A vertex in no face has an all-zero row.
    assert (uniform_laplacian(TETRA_FACES, 5).to_dense()[4] == 0).all()


def test_cotangent_laplacian_matches_loop(sphere: tuple[torch.Tensor, torch.Tensor]) -> None:
    vertices, faces = sphere
    dense = cotangent_laplacian(vertices, faces).to_dense().numpy()
    assert np.allclose(dense, naive_cotangent_laplacian(vertices.numpy(), faces))
    assert np.allclose(dense, dense.T)
    assert np.allclose(dense.sum(axis=1), 0)
    # Regular tetrahedron: every angle is 60 degrees, so every weight is cot(60) = 1 / sqrt(3).
    tetra = cotangent_laplacian(TETRA_VERTICES, TETRA_FACES).to_dense()
    expected = torch.full((4, 4), -1 / math.sqrt(3)) + torch.eye(4) * 4 / math.sqrt(3)
    assert torch.allclose(tetra, expected)


def test_laplacians_of_linear_function_vanish_inside_flat_grid() -> None:
    vertices, faces, interior = grid_mesh(6)
    linear = vertices @ torch.tensor([0.3, -1.2, 0.0], dtype=torch.float64) + 0.7  # (V,)
    for laplacian in (
        cotangent_laplacian(vertices, faces),
        uniform_laplacian(faces, len(vertices), torch.float64),
    ):
        assert torch.allclose((laplacian @ linear[:, None])[interior], torch.zeros(1, dtype=torch.float64))
    # Linear precision holds for the cotangent Laplacian on an irregular grid; the uniform one fails.
    jittered, faces, interior = grid_mesh(6, jitter=0.4)
    linear = jittered @ torch.tensor([0.3, -1.2, 0.0], dtype=torch.float64)
    cot = cotangent_laplacian(jittered, faces) @ linear[:, None]
    uniform = uniform_laplacian(faces, len(jittered), torch.float64) @ linear[:, None]
    assert cot[interior].abs().max() < 1e-12
    assert uniform[interior].abs().max() > 1e-3


def test_laplacian_loss_values(sphere: tuple[torch.Tensor, torch.Tensor]) -> None:
    # Tetrahedron, uniform: L v = v - mean(others) = 4 v / 3, |v|^2 = 3 -> 16 / 3.
    assert laplacian_loss(TETRA_VERTICES, TETRA_FACES).item() == pytest.approx(16 / 3)
    # Cotangent: L v = 4 v / sqrt(3) -> 16 / 3 * 3 = 16.
    assert laplacian_loss(TETRA_VERTICES, TETRA_FACES, kind="cotangent").item() == pytest.approx(16)
    vertices, faces = sphere
    batch = torch.stack([vertices, vertices * 1.5])
    for kind, matrix in (
        ("uniform", naive_uniform_laplacian(faces, len(vertices))),
        ("cotangent", naive_cotangent_laplacian(vertices.numpy(), faces)),
    ):
        loss = laplacian_loss(batch, faces, kind=kind)
        assert loss.shape == (2,)
        expected = ((matrix @ vertices.numpy()) ** 2).sum(axis=1).mean()
        assert loss[0].item() == pytest.approx(expected)
    precomputed = uniform_laplacian(faces, len(vertices))
    assert torch.allclose(laplacian_loss(batch, faces, laplacian=precomputed), laplacian_loss(batch, faces))


def test_laplacian_loss_gradcheck() -> None:
    vertices = (
        TETRA_VERTICES.double() + 0.1 * torch.randn(4, 3, generator=torch.Generator().manual_seed(4)).double()
    )
    batch = torch.stack([vertices, vertices.flip(1)]).requires_grad_(True)
    for kind in ("uniform", "cotangent"):
        assert torch.autograd.gradcheck(
            lambda v, kind=kind: laplacian_loss(v, TETRA_FACES, kind=kind), (batch,)
        )


def test_edge_adjacent_faces_matches_loop(sphere: tuple[torch.Tensor, torch.Tensor]) -> None:
    for faces in (sphere[1], grid_mesh(4)[1]):
        incident: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for f, face in enumerate(faces.tolist()):
            for k in range(3):
                edge = tuple(sorted((face[k], face[(k + 1) % 3])))
                incident[edge].append((f, face[(k + 2) % 3]))
        expected = {edge: pairs for edge, pairs in incident.items() if len(pairs) == 2}
        adjacency = edge_adjacent_faces(faces)
        assert len(adjacency.edges) == len(expected)
        for edge, pair_faces, opposite in zip(
            adjacency.edges.tolist(), adjacency.faces.tolist(), adjacency.opposite.tolist(), strict=True
        ):
            assert sorted(zip(pair_faces, opposite, strict=True)) == sorted(expected[tuple(edge)])
    assert len(edge_adjacent_faces(sphere[1]).edges) == 1920  # closed: 3F / 2


def test_flatten_loss_zero_on_flat_surfaces() -> None:
    for jitter in (0.0, 0.4):
        vertices, faces, _ = grid_mesh(5, jitter=jitter)
        assert flatten_loss(vertices, faces).item() == pytest.approx(0.0, abs=1e-12)


def test_flatten_loss_hand_values() -> None:
    # Regular tetrahedron: dihedral angle acos(1/3), so cos(theta) = 1/3 on all 6 edges.
    assert flatten_loss(TETRA_VERTICES, TETRA_FACES).item() == pytest.approx(6 * (4 / 3) ** 2)
    # Two triangles folded flat onto each other: theta = 0, loss (1 + 1)^2 = 4.
    folded = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]])
    assert flatten_loss(folded, torch.tensor([[0, 1, 2], [1, 0, 3]])).item() == pytest.approx(4.0)
    # A right-angle fold: theta = 90 degrees, loss 1.
    bent = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert flatten_loss(bent, torch.tensor([[0, 1, 2], [1, 0, 3]])).item() == pytest.approx(1.0)


def test_flatten_loss_matches_normal_oracle(sphere: tuple[torch.Tensor, torch.Tensor]) -> None:
    """On a consistently oriented mesh cos(theta) = -n1 . n2, so the loss is sum (1 - n1 . n2)^2."""
    vertices, faces = sphere
    points = vertices.numpy()
    adjacency = edge_adjacent_faces(faces)
    expected = 0.0
    for first, second in adjacency.faces.tolist():
        n1 = naive_cross(points, faces[first].tolist())
        n2 = naive_cross(points, faces[second].tolist())
        expected += (1 - np.dot(n1, n2) / (np.linalg.norm(n1) * np.linalg.norm(n2))) ** 2
    batch = torch.stack([vertices, vertices * 3])  # scale invariant
    loss = flatten_loss(batch, faces, adjacency)
    assert loss.shape == (2,)
    assert loss[0].item() == pytest.approx(expected, rel=1e-6)
    assert loss[1].item() == pytest.approx(expected, rel=1e-6)


def test_flatten_loss_gradcheck() -> None:
    vertices, faces, _ = grid_mesh(3)
    bumped = vertices + 0.2 * torch.rand(
        vertices.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    adjacency = edge_adjacent_faces(faces)
    assert torch.autograd.gradcheck(
        lambda v: flatten_loss(v, faces, adjacency), (bumped[None].clone().requires_grad_(True),)
    )


def test_deformation_loss() -> None:
    offsets = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    assert torch.allclose(deformation_loss(offsets), torch.tensor([2.5, 1.5]))
    zero = torch.zeros(1, 5, 3, requires_grad=True)
    deformation_loss(zero).sum().backward()
    assert zero.grad is not None and torch.isfinite(zero.grad).all()


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="vertices must have shape"):
        face_normals(torch.zeros(4, 2), TETRA_FACES)
    with pytest.raises(ValueError, match="only 3 vertices"):
        face_areas(torch.zeros(3, 3), TETRA_FACES)
    with pytest.raises(ValueError, match="kind must be"):
        laplacian_loss(TETRA_VERTICES, TETRA_FACES, kind="harmonic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="laplacian must have shape"):
        laplacian_loss(TETRA_VERTICES, TETRA_FACES, laplacian=uniform_laplacian(TETRA_FACES, 5))
    with pytest.raises(ValueError, match=r"shape \(V, 3\)"):
        cotangent_laplacian(TETRA_VERTICES[None], TETRA_FACES)
    with pytest.raises(ValueError, match="offsets must have shape"):
        deformation_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="integer"):
        edge_adjacent_faces(TETRA_FACES.float())


def test_laplacian_loss_backward_under_bf16_autocast() -> None:
    """The sparse product has no bf16 backward: the loss runs in float32 and matches the fp32 value."""
    faces = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    vertices = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = laplacian_loss(vertices.to(torch.bfloat16), faces)
    loss.sum().backward()
    assert loss.dtype == torch.float32 and vertices.grad is not None
    reference = laplacian_loss(vertices.detach().to(torch.bfloat16).float(), faces)
    torch.testing.assert_close(loss.detach(), reference)
