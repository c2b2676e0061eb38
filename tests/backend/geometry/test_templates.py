"""Tests for backend.geometry.templates against the reference template files and hand-derived counts."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.geometry.templates import (
    SymmetricTemplate,
    icosphere_template,
    mirror_texel_index,
    mirror_texture,
    select_free_vertices,
    symmetrize_offsets,
    symmetrize_vertices,
    uv_sphere_template,
)

TEMPLATE_DIR = Path("/work/shared/data/templates")
FLIP = torch.tensor([-1.0, 1.0, 1.0])


def parse_obj(path: Path) -> tuple[np.ndarray, int, np.ndarray]:
    """Vertices (V, 3), number of ``vt`` lines and faces (F, 3) (0-based vertex indices) of an OBJ."""
    vertices, faces, uv_count = [], [], 0
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "v":
            vertices.append([float(x) for x in fields[1:4]])
        elif fields[0] == "vt":
            uv_count += 1
        elif fields[0] == "f":
            faces.append([int(corner.split("/")[0]) - 1 for corner in fields[1:]])
    return np.array(vertices), uv_count, np.array(faces)


def valence_histogram(faces: np.ndarray) -> Counter:
    return Counter(Counter(faces.reshape(-1).tolist()).values())


@pytest.fixture(scope="module")
def icosphere() -> SymmetricTemplate:
    return icosphere_template()


@pytest.fixture(scope="module")
def icosphere_level4() -> SymmetricTemplate:
    return icosphere_template(level=4)


@pytest.fixture(scope="module")
def uv_sphere() -> SymmetricTemplate:
    return uv_sphere_template()


@pytest.fixture(params=["icosphere", "icosphere_level4", "uv_sphere"])
def template(
    request: pytest.FixtureRequest,
    icosphere: SymmetricTemplate,
    icosphere_level4: SymmetricTemplate,
    uv_sphere: SymmetricTemplate,
) -> SymmetricTemplate:
    return {"icosphere": icosphere, "icosphere_level4": icosphere_level4, "uv_sphere": uv_sphere}[
        request.param
    ]


def test_icosphere_matches_softras_sphere_counts(icosphere: SymmetricTemplate) -> None:
    vertices, _, faces = parse_obj(TEMPLATE_DIR / "softras_sphere_642.obj")
    assert icosphere.mesh.num_vertices == len(vertices) == 642
    assert icosphere.mesh.num_faces == len(faces) == 1280
    # Same combinatorial icosphere: the 12 icosahedron vertices keep valence 5, all others 6. The file
    # is Blender's icosphere with a vertex at each pole, ours has edge midpoints at the poles.
    assert (
        valence_histogram(icosphere.mesh.faces.numpy())
        == valence_histogram(faces)
        == Counter({6: 630, 5: 12})
    )


def test_uv_sphere_matches_convmesh_file(uv_sphere: SymmetricTemplate) -> None:
    vertices, uv_count, faces = parse_obj(TEMPLATE_DIR / "uvsphere_16rings.obj")
    mesh = uv_sphere.mesh
    assert (mesh.num_vertices, mesh.num_faces) == (len(vertices), len(faces)) == (482, 960)
    # 15 rings x 33 UV columns (the seam column twice) + one pole UV per pole face (2 x 32): the same
    # 559 UVs as Blender's file.
    assert mesh.uvs.shape[0] == uv_count == 559
    # Same vertex positions up to order (the file has 6 decimals).
    distance = np.linalg.norm(vertices[:, None] - mesh.vertices.numpy()[None], axis=-1)
    assert distance.min(axis=1).max() < 1e-5
    assert distance.min(axis=0).max() < 1e-5


def test_icosphere_uv_count(icosphere: SymmetricTemplate) -> None:
    # 640 non-pole vertices + 15 back-seam vertices with a second UV (u = 0 and u = 1) + 8 left vertices
    # of seam-crossing faces clamped onto the seam + 6 pole UVs per pole.
    assert icosphere.mesh.uvs.shape[0] == 640 + 15 + 8 + 12


def test_icosphere_level4_counts(icosphere_level4: SymmetricTemplate) -> None:
    mesh = icosphere_level4.mesh
    assert (mesh.num_vertices, mesh.num_faces) == (2562, 5120)
    # Subdivision keeps the 12 valence-5 vertices; every new vertex has valence 6.
    assert valence_histogram(mesh.faces.numpy()) == Counter({6: 2550, 5: 12})
    # 2560 non-pole vertices + 31 back-seam vertices with a second UV + 16 left vertices of
    # seam-crossing faces clamped onto the seam + 6 pole UVs per pole.
    assert mesh.uvs.shape[0] == 2560 + 31 + 16 + 12
    assert mesh.texture.shape == (128, 256, 3)
    sides = [int((icosphere_level4.face_side == s).sum()) for s in (0, 1, -1)]
    assert (len(icosphere_level4.plane_index), len(icosphere_level4.right_index), sides) == (
        64,
        1249,
        [64, 2528, 2528],
    )
    assert icosphere_level4.num_free == 64 + 1249


def test_icosphere_levels_nest(icosphere: SymmetricTemplate, icosphere_level4: SymmetricTemplate) -> None:
    """Level 3's vertices come first in level 4; every other level-4 vertex is an edge midpoint."""
    coarse, fine = icosphere.mesh, icosphere_level4.mesh
    assert torch.equal(fine.vertices[: coarse.num_vertices], coarse.vertices)
    coarse_edges = {tuple(sorted((f[k], f[(k + 1) % 3]))) for f in coarse.faces.tolist() for k in range(3)}
    neighbours: dict[int, set[int]] = {}
    for face in fine.faces.tolist():
        for k in range(3):
            neighbours.setdefault(face[k], set()).update((face[(k + 1) % 3], face[(k + 2) % 3]))
    parents = []
    for i in range(coarse.num_vertices, fine.num_vertices):
        old = sorted(j for j in neighbours[i] if j < coarse.num_vertices)
        assert len(old) == 2 and tuple(old) in coarse_edges
        midpoint = (coarse.vertices[old[0]] + coarse.vertices[old[1]]).double()
        assert torch.allclose(fine.vertices[i].double(), midpoint / midpoint.norm(), atol=1e-6)
        parents.append(tuple(old))
    assert len(set(parents)) == len(coarse_edges)  # one new vertex per coarse edge


def test_icosphere_level_default_and_bounds() -> None:
    assert icosphere_template(level=0).mesh.num_vertices == 12
    assert torch.equal(icosphere_template(level=3).mesh.faces, icosphere_template().mesh.faces)
    for bad in (-1, 7, 2.0, True):
        with pytest.raises(ValueError, match="level must be an int"):
            icosphere_template(level=bad)  # type: ignore[arg-type]


def test_vertices_on_unit_sphere(template: SymmetricTemplate) -> None:
    norms = template.mesh.vertices.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)


def test_symmetry_counts(icosphere: SymmetricTemplate, uv_sphere: SymmetricTemplate) -> None:
    counts = [
        (
            len(t.plane_index),
            len(t.right_index),
            t.num_free,
            [int((t.face_side == s).sum()) for s in (0, 1, -1)],
        )
        for t in (icosphere, uv_sphere)
    ]
    assert counts == [(32, 305, 337, [32, 624, 624]), (32, 225, 257, [0, 480, 480])]


def test_symmetric_pairs_mirror_each_other(template: SymmetricTemplate) -> None:
    vertices = template.mesh.vertices
    assert (vertices[template.plane_index, 0].abs() < 1e-6).all()
    assert (vertices[template.right_index, 0] > 1e-6).all()
    assert (vertices[template.left_index] - vertices[template.right_index] * FLIP).abs().max() < 1e-6
    assert torch.equal(template.mirror_index[template.mirror_index], torch.arange(len(vertices)))
    assert torch.equal(template.mirror_index[template.right_index], template.left_index)
    everything = torch.cat([template.plane_index, template.right_index, template.left_index]).sort().values
    assert torch.equal(everything, torch.arange(len(vertices)))
    assert torch.equal(
        template.free_index, torch.cat([template.plane_index, template.right_index]).sort().values
    )


def test_face_side_rule(template: SymmetricTemplate) -> None:
    x = template.mesh.vertices[:, 0].tolist()
    for face, side in zip(template.mesh.faces.tolist(), template.face_side.tolist(), strict=True):
        signs = [0 if abs(x[i]) < 1e-6 else (1 if x[i] > 0 else -1) for i in face]
        expected = (
            1 if min(signs) >= 0 and max(signs) > 0 else (-1 if max(signs) <= 0 and min(signs) < 0 else 0)
        )
        assert side == expected


def test_faces_closed_under_mirroring(template: SymmetricTemplate) -> None:
    def canonical(face: list[int]) -> tuple[int, ...]:  # rotation keeps the orientation
        k = face.index(min(face))
        return tuple(face[k:] + face[:k])

    faces = template.mesh.faces.tolist()
    face_set = {canonical(face) for face in faces}
    mirror = template.mirror_index.tolist()
    for a, b, c in faces:
        # Mirroring reverses the winding, so the mirrored face is (m(a), m(c), m(b)).
        assert canonical([mirror[a], mirror[c], mirror[b]]) in face_set


def test_euler_characteristic_and_closed_surface(template: SymmetricTemplate) -> None:
    faces = template.mesh.faces.tolist()
    edges = Counter(tuple(sorted((face[k], face[(k + 1) % 3]))) for face in faces for k in range(3))
    assert set(edges.values()) == {2}  # closed 2-manifold
    assert template.mesh.num_vertices - len(edges) + len(faces) == 2


def test_faces_point_outwards(template: SymmetricTemplate) -> None:
    corners = template.mesh.vertices.double()[template.mesh.faces]  # (F, 3, 3)
    normals = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1)
    assert ((normals * corners.mean(dim=1)).sum(dim=1) > 0).all()
    signed_volume = (corners[:, 0] * torch.linalg.cross(corners[:, 1], corners[:, 2], dim=1)).sum() / 6
    assert 0.9 * 4 / 3 * math.pi < signed_volume < 4 / 3 * math.pi


def test_uvs_in_range_without_seam_smearing(template: SymmetricTemplate) -> None:
    mesh = template.mesh
    assert mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1
    corner_u = mesh.uvs[mesh.face_uvs][..., 0]  # (F, 3)
    assert (corner_u.max(dim=1).values - corner_u.min(dim=1).values).max() < 0.5


def test_uvs_follow_spherical_coordinates(template: SymmetricTemplate) -> None:
    mesh = template.mesh
    vertices, uvs = mesh.vertices.double(), mesh.uvs.double()
    x, y, z = vertices.unbind(1)
    pole = (x.abs() < 1e-6) & (z.abs() < 1e-6)
    expected_u = 0.5 + torch.atan2(x, z) / (2 * math.pi)
    expected_v = 0.5 + torch.asin(y.clamp(-1, 1)) / math.pi
    clamped_faces = set()
    for f, (face, face_uv) in enumerate(zip(mesh.faces.tolist(), mesh.face_uvs.tolist(), strict=True)):
        for i, t in zip(face, face_uv, strict=True):
            assert abs(uvs[t, 1] - expected_v[i]) < 1e-6
            if pole[i]:
                continue
            u = float(uvs[t, 0])
            if abs(x[i]) < 1e-6 and z[i] < 0:  # the back seam: u = 0 or 1
                assert u in (0.0, 1.0)
            elif abs(u - expected_u[i]) > 1e-6:  # only left corners of seam-crossing faces move onto the seam
                assert x[i] < 0 and u == 1.0
                clamped_faces.add(f)
    # Only the icosphere has faces across the back seam: 8 between each pole and the icosahedron vertex
    # at level 3 (642 vertices), twice as many at level 4.
    expected = {642: 16, 2562: 32}.get(mesh.num_vertices, 0) if template.name == "icosphere" else 0
    assert len(clamped_faces) == expected
    pole_corners = pole[mesh.faces]
    assert pole_corners.sum() == len(torch.unique(mesh.face_uvs[pole_corners]))  # one pole UV per face


def test_mirrored_faces_have_mirrored_uvs(template: SymmetricTemplate) -> None:
    """u -> 1 - u between each right face and its mirror face, corner by corner; v unchanged."""
    mesh = template.mesh
    corner_uv = {}
    for face, face_uv in zip(mesh.faces.tolist(), mesh.face_uvs.tolist(), strict=True):
        for k in range(3):
            corner_uv[(face[k], face[(k + 1) % 3], face[(k + 2) % 3])] = mesh.uvs[face_uv[k]]
    mirror = template.mirror_index.tolist()
    right_faces = mesh.faces[template.face_side == 1].tolist()
    assert right_faces
    for a, b, c in right_faces:
        for corner, next_corner, last in ((a, b, c), (b, c, a), (c, a, b)):
            mirrored = corner_uv[(mirror[corner], mirror[last], mirror[next_corner])]
            original = corner_uv[(corner, next_corner, last)]
            assert torch.allclose(mirrored, torch.stack([1 - original[0], original[1]]), atol=1e-6)


def test_mirror_texel_index_maps_texel_centres_to_mirrored_u() -> None:
    height, width = 4, 6
    index = mirror_texel_index(height, width)
    assert index.shape == (height, width, 2)
    for i in range(height):
        for j in range(width):
            row, column = index[i, j].tolist()
            assert row == i
            assert (column + 0.5) / width == pytest.approx(1 - (j + 0.5) / width)
    with pytest.raises(ValueError, match="positive"):
        mirror_texel_index(0, 4)


def test_mirror_texture_uses_mirror_texel_index() -> None:
    texture = torch.rand(2, 5, 3)
    index = mirror_texel_index(2, 5)
    expected = texture[index[..., 0], index[..., 1]]
    assert torch.equal(mirror_texture(texture), expected)
    assert torch.equal(mirror_texture(texture[None])[0], expected)
    assert torch.equal(mirror_texture(mirror_texture(texture)), texture)
    with pytest.raises(ValueError, match="texture must have shape"):
        mirror_texture(torch.rand(5, 3))


def test_symmetrize_vertices_builds_symmetric_mesh(template: SymmetricTemplate) -> None:
    generator = torch.Generator().manual_seed(0)
    free = torch.randn(2, template.num_free, 3, generator=generator, requires_grad=True)
    full = symmetrize_vertices(free, template)
    assert full.shape == (2, template.mesh.num_vertices, 3)
    assert torch.equal(full[:, template.left_index], full[:, template.right_index] * FLIP)
    assert (full[:, template.plane_index, 0] == 0).all()
    kept = free.detach().clone()
    kept[:, torch.isin(template.free_index, template.plane_index), 0] = 0  # plane vertices lose x
    assert torch.equal(select_free_vertices(full, template), kept)
    full.sum().backward()
    assert free.grad is not None and free.grad.abs().sum() > 0
    unbatched = symmetrize_vertices(free[0].detach(), template)
    assert torch.equal(unbatched, full[0].detach())


def test_symmetrize_vertices_recovers_template(template: SymmetricTemplate) -> None:
    vertices = template.mesh.vertices
    rebuilt = symmetrize_vertices(select_free_vertices(vertices, template), template)
    assert torch.equal(rebuilt, vertices)


def test_symmetrize_offsets_matches_loop(template: SymmetricTemplate) -> None:
    offsets = torch.randn(3, template.mesh.num_vertices, 3, generator=torch.Generator().manual_seed(1))
    result = symmetrize_offsets(offsets, template)
    mirror = template.mirror_index.tolist()
    for i in range(0, template.mesh.num_vertices, 7):
        expected = (offsets[:, i] + offsets[:, mirror[i]] * FLIP) / 2
        assert torch.allclose(result[:, i], expected)
    assert torch.allclose(result[:, template.left_index], result[:, template.right_index] * FLIP)
    assert (result[:, template.plane_index, 0] == 0).all()
    assert torch.allclose(symmetrize_offsets(result, template), result)  # a projection


def test_bad_inputs_raise(icosphere: SymmetricTemplate) -> None:
    with pytest.raises(ValueError, match="vertices_free must have shape"):
        symmetrize_vertices(torch.zeros(2, 336, 3), icosphere)
    with pytest.raises(ValueError, match="offsets must have shape"):
        symmetrize_offsets(torch.zeros(641, 3), icosphere)
    with pytest.raises(ValueError, match="vertices must have shape"):
        select_free_vertices(torch.zeros(642, 2), icosphere)
    with pytest.raises(ValueError, match="segments must be an even number"):
        uv_sphere_template(segments=31)


def test_template_to_device_keeps_everything(icosphere: SymmetricTemplate) -> None:
    moved = icosphere.to("cpu")
    assert torch.equal(moved.mesh.vertices, icosphere.mesh.vertices)
    assert torch.equal(moved.free_index, icosphere.free_index)
    assert icosphere.mesh.texture.shape == (128, 256, 3)
    assert uv_sphere_template().mesh.texture.shape == (512, 512, 3)
