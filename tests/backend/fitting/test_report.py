"""``topology_id``: the UV layout's id survives renumbering, face order, seams and shape; a changed layout
changes it. (``reprojection_iou`` is exercised by every method test's report.)"""

from __future__ import annotations

import torch

from backend.fitting.report import topology_id
from backend.geometry.mesh import TexturedMesh
from backend.geometry.templates import icosphere_template


def _split_at_seams(mesh: TexturedMesh) -> TexturedMesh:
    """One vertex per distinct (vertex, uv) pair, as glTF writes a mesh."""
    pairs = torch.stack([mesh.faces.reshape(-1), mesh.face_uvs.reshape(-1)], dim=1)
    unique, corner = torch.unique(pairs, dim=0, return_inverse=True)
    faces = corner.reshape(-1, 3)
    return TexturedMesh(mesh.vertices[unique[:, 0]], faces, mesh.uvs[unique[:, 1]], faces, mesh.texture)


def test_topology_id_ignores_numbering_face_order_seams_and_shape() -> None:
    template = icosphere_template().mesh
    assert topology_id(template) == "icosphere-642"
    generator = torch.Generator().manual_seed(0)
    vertex_order = torch.randperm(template.num_vertices, generator=generator)
    uv_order = torch.randperm(template.uvs.shape[0], generator=generator)
    face_order = torch.randperm(template.num_faces, generator=generator)
    new_vertex = torch.argsort(vertex_order)  # old index -> new index
    new_uv = torch.argsort(uv_order)
    # renumbered vertices and UVs, shuffled faces, each face starting at another corner (winding kept)
    faces = new_vertex[template.faces][face_order].roll(1, dims=1)
    face_uvs = new_uv[template.face_uvs][face_order].roll(1, dims=1)
    moved = template.vertices[vertex_order] * torch.tensor([0.4, 0.9, 1.3]) + 0.2
    shuffled = TexturedMesh(moved, faces, template.uvs[uv_order], face_uvs, template.texture)
    assert topology_id(shuffled) == "icosphere-642"
    split = _split_at_seams(shuffled)
    assert split.num_vertices > template.num_vertices
    assert topology_id(split) == "icosphere-642"
    # the last-bit noise of a glTF V flip there and back keeps it too
    one = torch.tensor(1.0, dtype=torch.float64)
    flipped = (one - (one - split.uvs.double()).float().double()).float()
    assert topology_id(TexturedMesh(split.vertices, split.faces, flipped, split.face_uvs, split.texture)) == (
        "icosphere-642"
    )


def test_topology_id_changes_with_the_uv_layout() -> None:
    template = icosphere_template().mesh
    uvs = template.uvs.clone()
    uvs[5] += torch.tensor([0.01, 0.0])
    changed = TexturedMesh(template.vertices, template.faces, uvs, template.face_uvs, template.texture)
    changed_id = topology_id(changed)
    assert changed_id != "icosphere-642" and changed_id.startswith("1280f-")
    swapped = TexturedMesh(
        template.vertices, template.faces, template.uvs.flip(1), template.face_uvs, template.texture
    )
    assert topology_id(swapped) not in ("icosphere-642", changed_id)
    reversed_winding = TexturedMesh(
        template.vertices, template.faces.flip(1), template.uvs, template.face_uvs.flip(1), template.texture
    )
    assert topology_id(reversed_winding) != "icosphere-642"
    # a non-template layout: stable under face shuffling, its own "<F>f-" id
    order = torch.randperm(changed.num_faces, generator=torch.Generator().manual_seed(1))
    shuffled = TexturedMesh(
        changed.vertices, changed.faces[order], uvs, changed.face_uvs[order], changed.texture
    )
    assert topology_id(shuffled) == changed_id
