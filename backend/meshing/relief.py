"""A relief: an open, oriented surface (e.g. a depth-grid mesh) cut to some of its faces and, if asked,
closed into a solid by a back surface and a rim.

Contract:

- ``boundary_edges(faces)``: the directed edges (E, 2) that only one face uses, in that face's winding.
  The faces must form an oriented, edge-manifold surface (every undirected edge used by one face, or by
  two with opposite windings), as a depth grid's do; ``ValueError`` otherwise.
- ``manifold_keep(faces, keep)``: ``keep`` (F,) bool with the faces around *pinch vertices* dropped, those
  where kept faces meet at the vertex only (the vertex starts more than one boundary edge), repeated until
  none is left. Afterwards every boundary vertex has exactly one boundary edge in and one out, so the
  rim below closes the surface without non-manifold edges.
- ``close_relief(front, back, faces, keep)`` -> ``Relief``: the kept faces (``manifold_keep`` applied)
  on the vertices they use (``front_vertices`` of them, in input order) and, when ``back`` (N, 3) is
  given, a back surface and a rim. The back is each kept vertex's twin at ``back[index]``, its faces the
  front faces with reversed winding; the rim joins each boundary edge a -> b of the front to its twins
  a' -> b' by the triangles (a, a', b') and (a, b', b). With a front whose faces wind counter-clockwise
  seen from outside and a back behind it (along the direction the front faces away from), the result is
  closed and consistently oriented: every undirected edge is used by exactly two faces, every directed
  edge by one, and its normals point outwards.

Layout of a ``Relief``: vertices = [kept front vertices (Vf), their back twins (Vf, with a back)];
faces = [front (Ff), back (Ff, with a back), rim (2 E, with a back)]; ``source`` (V,) is each output
vertex's input index (a twin has its front vertex's), so a per-input-vertex table such as UVs follows
with ``table[source]``; ``uv_index`` (V,) is the index of that row among the front rows, so a twin shares
its front vertex's UV (the back shows the front's texture through the object, and the rim's triangles,
zero-area in UV, the colour along their front edge). Every tensor stays on the device of ``faces``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _directed_edges(faces: Tensor) -> Tensor:
    """(3F, 2) the faces' edges a -> b, b -> c, c -> a."""
    return torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def boundary_edges(faces: Tensor) -> Tensor:
    """Directed edges (E, 2) int64 used by one face only, in its winding (module docstring)."""
    if faces.numel() == 0:
        return faces.new_zeros((0, 2))
    edges = _directed_edges(faces)  # (3F, 2)
    count = int(faces.max()) + 1
    directed = edges[:, 0] * count + edges[:, 1]  # (3F,) one key per directed edge
    undirected = edges.amin(dim=1) * count + edges.amax(dim=1)  # (3F,) the same key both ways
    _, inverse, uses = torch.unique(undirected, return_inverse=True, return_counts=True)
    if int(uses.max()) > 2:
        raise ValueError("the faces are not edge-manifold: an edge is used by more than two faces")
    if torch.unique(directed).numel() < directed.numel():
        raise ValueError("the faces are not consistently oriented: two faces share an edge in one direction")
    return edges[uses[inverse] == 1]


def pinch_vertices(faces: Tensor, num_vertices: int) -> Tensor:
    """(P,) vertices where the faces meet at the vertex only: more than one boundary edge starts there."""
    starts = boundary_edges(faces)[:, 0]
    out_degree = torch.bincount(starts, minlength=num_vertices)
    return torch.nonzero(out_degree > 1).flatten()


def manifold_keep(faces: Tensor, keep: Tensor) -> Tensor:
    """``keep`` (F,) bool without the faces around pinch vertices, repeatedly (module docstring)."""
    keep = keep.clone()
    num_vertices = int(faces.max()) + 1 if faces.numel() else 0
    while bool(keep.any()):
        pinches = pinch_vertices(faces[keep], num_vertices)
        if pinches.numel() == 0:
            break
        pinched = torch.zeros(num_vertices, dtype=torch.bool, device=faces.device)
        pinched[pinches] = True
        keep &= ~pinched[faces].any(dim=1)
    return keep


@dataclass(frozen=True)
class Relief:
    """The cut (and closed) surface (module docstring).

    Attributes:
        vertices: (V, 3) positions: kept front vertices, then their back twins (with a back).
        faces: (F, 3) int64: front, back (reversed), rim.
        source: (V,) int64 input vertex index of each vertex (a twin: its front vertex's).
        uv_index: (V,) int64 index of each vertex's front vertex among the front vertices.
        front_vertices, front_faces, rim_faces: Vf, Ff and the rim's 2 E (0 without a back).
    """

    vertices: Tensor
    faces: Tensor
    source: Tensor
    uv_index: Tensor
    front_vertices: int
    front_faces: int
    rim_faces: int

    @property
    def closed(self) -> bool:
        """Whether it has a back surface and rim."""
        return self.vertices.shape[0] > self.front_vertices


def close_relief(front: Tensor, back: Tensor | None, faces: Tensor, keep: Tensor) -> Relief:
    """The kept faces of the surface ``front`` (N, 3), ``faces`` (F, 3), closed by ``back`` (N, 3) when
    given (module docstring). ``ValueError`` when no face is left to keep."""
    if keep.shape != faces.shape[:1]:
        raise ValueError(f"keep must have shape ({faces.shape[0]},), got {tuple(keep.shape)}")
    kept = faces[manifold_keep(faces, keep)]  # (Ff, 3)
    if kept.shape[0] == 0:
        raise ValueError("no face is left to keep: the cut removed the whole surface")
    used = torch.unique(kept)  # (Vf,) sorted input indices
    count = int(used.shape[0])
    remap = torch.full((front.shape[0],), -1, dtype=torch.int64, device=faces.device)
    remap[used] = torch.arange(count, device=faces.device)
    front_faces = remap[kept]  # (Ff, 3)
    ordinal = torch.arange(count, device=faces.device)
    if back is None:
        return Relief(front[used], front_faces, used, ordinal, count, int(front_faces.shape[0]), 0)
    rim_edges = boundary_edges(front_faces)  # (E, 2)
    a, b = rim_edges[:, 0], rim_edges[:, 1]
    a_twin, b_twin = a + count, b + count
    rim = torch.cat([torch.stack([a, a_twin, b_twin], dim=1), torch.stack([a, b_twin, b], dim=1)])
    back_faces = front_faces[:, [0, 2, 1]] + count
    return Relief(
        vertices=torch.cat([front[used], back[used]]),
        faces=torch.cat([front_faces, back_faces, rim]),
        source=torch.cat([used, used]),
        uv_index=torch.cat([ordinal, ordinal]),
        front_vertices=count,
        front_faces=int(front_faces.shape[0]),
        rim_faces=int(rim.shape[0]),
    )
