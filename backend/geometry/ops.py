"""Differentiable mesh operations: normals, areas, Laplacians and the shape regularisers.

Every function takes vertices (B, V, 3) or (V, 3) and faces (F, 3) int64 (counter-clockwise seen from
outside), is differentiable in the vertices, and drops the batch dimension of its result when the
vertices have none. Faces are validated (``ValueError`` for out-of-range or malformed indices).

Regularisers (each returns one value per mesh, shape (B,)):

- ``laplacian_loss``: mean over vertices of ``|(L v)_i|^2`` with the uniform Laplacian
  ``L = I - D^-1 A`` (SoftRas's LaplacianLoss sums over vertices instead: multiply by V) or the
  cotangent Laplacian ``L = D - W`` with ``W_ij = (cot a_ij + cot b_ij) / 2``.
- ``flatten_loss``: SoftRas's FlattenLoss, ``sum over interior edges of (cos theta + 1)^2`` where
  theta is the angle between the two adjacent faces measured inside the surface: for each edge the
  directions from the edge to the two opposite vertices, perpendicular to the edge, make the angle
  theta; a flat surface gives theta = pi and loss 0, a fold onto itself theta = 0 and loss 4.
- ``deformation_loss``: mean Euclidean norm of the per-vertex offsets (CMR's ``deform_l2reg``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.mesh import check_faces

EPS = 1e-12
"""Guards divisions by lengths and areas of degenerate triangles."""


def _batched(vertices: Tensor, faces: Tensor) -> tuple[Tensor, bool]:
    """Vertices as (B, V, 3) and whether the input had a batch dimension; validates both."""
    if vertices.dim() not in (2, 3) or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (B, V, 3) or (V, 3), got {tuple(vertices.shape)}")
    check_faces(faces, vertices.shape[-2])
    return (vertices, True) if vertices.dim() == 3 else (vertices.unsqueeze(0), False)


def _unbatch(result: Tensor, batched: bool) -> Tensor:
    return result if batched else result.squeeze(0)


def gather_rows(table: Tensor, rows: Tensor) -> Tensor:
    """``table[rows]`` for a table (N, C) and int64 row indices of any shape: (*rows.shape, C).

    The same values, gathered so that the gradient to ``table`` is added up in the same order on
    every run, for any thread count. On a CPU that is ``index_select``, whose backward
    (``index_add`` along dim 0) adds in index order, whereas the backward of ``table[rows]``
    (``index_put_`` with ``accumulate=True``) adds float32 with racing atomics there once it has
    32768 elements or more and more than one thread runs. On other devices ``table[rows]`` is kept:
    CUDA's ``index_put_`` sorts the indices before adding, where its ``index_add`` uses atomics.

    >>> gather_rows(torch.arange(6.0).reshape(3, 2), torch.tensor([[2, 0]]))
    tensor([[[4., 5.],
             [0., 1.]]])
    """
    if table.device.type != "cpu":
        return table[rows]
    return table.index_select(0, rows.flatten()).reshape(*rows.shape, table.shape[1])


def barycentric_depth(
    x: list[Tensor], y: list[Tensor], z: list[Tensor], px: Tensor, py: Tensor, perspective: bool
) -> tuple[Tensor, Tensor]:
    """Barycentric coordinates and depth of points in screen-space triangles, from flat columns.

    Args:
        x, y, z: three (N,) tensors each: corner k of triangle i is at (x[k][i], y[k][i]) with depth
            z[k][i]; differentiable.
        px, py: (N,) the points.
        perspective: interpolate inverse depth (perspective-correct) instead of depth.
    Returns:
        (N, 3) barycentric coordinates (perspective-correct when asked) and (N,) depth. A triangle of
        (near) zero area divides by 1e-12 instead of its area.

    Flat (N,) columns keep the arithmetic, and autograd's backward of it, at full vector speed (the
    columns of an (N, 3, 3) gather are strided).

    >>> one = [torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.0])]
    >>> barycentric_depth(one, [torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0])],
    ...     [torch.tensor([2.0])] * 3, torch.tensor([0.25]), torch.tensor([0.5]), True)
    (tensor([[0.2500, 0.2500, 0.5000]]), tensor([2.]))
    """

    def cross(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor) -> Tensor:
        return ax * by - ay * bx

    area2 = cross(x[1] - x[0], y[1] - y[0], x[2] - x[0], y[2] - y[0])  # (N,) twice the signed area
    safe = torch.where(area2.abs() < 1e-12, torch.full_like(area2, 1e-12), area2)
    screen = []  # screen-space barycentric k: the edge function of the edge opposite corner k
    for k in range(3):
        a, b = (k + 1) % 3, (k + 2) % 3
        screen.append(cross(x[b] - x[a], y[b] - y[a], px - x[a], py - y[a]) / safe)
    if not perspective:
        return torch.stack(screen, dim=1), screen[0] * z[0] + screen[1] * z[1] + screen[2] * z[2]
    weighted = [screen[k] / z[k] for k in range(3)]  # (N,) each
    inverse_depth = weighted[0] + weighted[1] + weighted[2]
    return torch.stack([w / inverse_depth for w in weighted], dim=1), 1.0 / inverse_depth


CHUNK = 1 << 15
"""Elements per step of the long elementwise chains over pairs (``segment_sq_dist_rows``, the
rasterizer's search): about ten (CHUNK,) temporaries stay in a CPU core's L2 cache, where whole
(N,) temporaries of a few hundred thousand pairs stream from memory several times slower."""


def chunks(count: int) -> list[slice]:
    """Consecutive slices of ``range(count)`` of at most ``CHUNK`` elements (a fixed split, so results
    computed chunk by chunk do not depend on the thread count)."""
    return [slice(begin, min(begin + CHUNK, count)) for begin in range(0, count, CHUNK)]


class _SegmentSqDist(torch.autograd.Function):
    """Forward and backward of ``segment_sq_dist_rows`` (see there), chunk by chunk."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, y: Tensor, start: Tensor, end: Tensor, px: Tensor, py: Tensor, negate: Tensor
    ) -> Tensor:
        count = start.shape[0]
        signed, off_x, off_y, t = (torch.empty(count, dtype=x.dtype, device=x.device) for _ in range(4))
        for part in chunks(count):
            first, last = start[part], end[part]
            start_x, start_y = x.index_select(0, first), y.index_select(0, first)  # (n,) each
            edge_x = x.index_select(0, last).sub_(start_x)
            edge_y = y.index_select(0, last).sub_(start_y)
            to_x, to_y = px[part] - start_x, py[part] - start_y
            length_sq = (edge_x * edge_x).add_(edge_y * edge_y).clamp_min_(1e-20)
            foot = (to_x * edge_x).add_(to_y * edge_y).div_(length_sq).clamp_(0.0, 1.0)  # along the edge
            to_x.sub_(foot * edge_x)  # now from the foot to the point
            to_y.sub_(foot * edge_y)
            squared = (to_x * to_x).add_(to_y * to_y)
            torch.where(negate[part], -squared, squared, out=signed[part])
            off_x[part], off_y[part], t[part] = to_x, to_y, foot
        ctx.save_for_backward(start, end, off_x, off_y, t, negate)
        ctx.table_size = x.shape[0]
        return signed

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        start, end, off_x, off_y, t, negate = ctx.saved_tensors
        # d = |p - s - t (e - s)|^2 with t the foot: dd/ds = -2 (1 - t) off, dd/de = -2 t off (t is a
        # minimiser or clamped, so its own derivative drops out)
        grad_x = torch.zeros(ctx.table_size, dtype=grad.dtype, device=grad.device)
        grad_y = torch.zeros(ctx.table_size, dtype=grad.dtype, device=grad.device)
        for part in chunks(start.shape[0]):
            scale = torch.where(negate[part], grad[part], -grad[part]).mul_(2.0)  # (n,) -2 g, sign folded in
            to_end = scale * t[part]
            to_start = scale.sub_(to_end)
            first, last = start[part], end[part]
            for table, off in ((grad_x, off_x[part]), (grad_y, off_y[part])):
                _add_at(table, first, to_start * off)
                _add_at(table, last, to_end * off)
        return grad_x, grad_y, None, None, None, None, None


def segment_sq_dist_rows(
    x: Tensor, y: Tensor, start: Tensor, end: Tensor, px: Tensor, py: Tensor, negate: Tensor
) -> Tensor:
    """Signed squared distances from points to segments whose ends are rows of coordinate tables.

    Args:
        x, y: (N,) coordinates of the segment ends; differentiable.
        start, end: (E,) int64 rows of x and y where each segment starts and ends.
        px, py: (E,) the points (constants).
        negate: (E,) bool, where to return ``-d^2`` instead of ``d^2``.
    Returns:
        (E,) ``+-d^2`` with d the distance from each point to its segment.

    The arithmetic of a plain autograd version, run in ``CHUNK``-sized steps, with a hand-written
    backward that gathers nothing new and adds the gradients to x and y chunk after chunk, each in a
    fixed order (``index_add_`` on a CPU, a sorting ``index_put_`` elsewhere, as ``gather_rows``): the
    same bits on every run and for any thread count, in a fraction of the time of autograd's backward.

    >>> segment_sq_dist_rows(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([0]),
    ...     torch.tensor([1]), torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([True]))
    tensor([-9.])
    """
    if not (start.shape == end.shape == px.shape == py.shape == negate.shape) or start.dim() != 1:
        raise ValueError("start, end, px, py and negate must be 1-D tensors of one shape")
    result: Tensor = _SegmentSqDist.apply(x, y, start, end, px, py, negate)
    return result


def gather_values(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for a 1-D tensor (N,) and an int64 index (M,): (M,), with the gradient added up
    in the same order on every run and thread count (``gather_rows``'s rule: ``index_select`` on a CPU,
    indexing elsewhere).

    >>> gather_values(torch.tensor([5.0, 6.0, 7.0]), torch.tensor([2, 2, 0]))
    tensor([7., 7., 5.])
    """
    if values.device.type != "cpu":
        return values[index]
    return values.index_select(0, index)


def _add_at(table: Tensor, index: Tensor, values: Tensor) -> None:
    """``table[index] += values`` for (N,), (M,) and (M,), repeated indices summed in a fixed order: in
    index order with ``index_add_`` on a CPU, sorted by CUDA's ``index_put_`` elsewhere (its
    ``index_add_`` adds with atomics)."""
    if table.device.type == "cpu":
        table.index_add_(0, index, values)
    else:
        table.index_put_((index,), values, accumulate=True)


def gather_vertices(vertices: Tensor, index: Tensor) -> Tensor:
    """``vertices[:, index]`` for vertices (B, V, C) and an int64 index of any shape: (B, *index.shape, C).

    Gathered by ``gather_rows`` from the (B * V, C) rows, so its gradient does not depend on the
    thread count or the run.
    """
    batch, num_vertices, channels = vertices.shape
    rows = index.reshape(1, -1) + torch.arange(batch, device=index.device)[:, None] * num_vertices
    gathered = gather_rows(vertices.reshape(batch * num_vertices, channels), rows)
    return gathered.reshape(batch, *index.shape, channels)


def _face_cross(vertices: Tensor, faces: Tensor) -> Tensor:
    """(B, F, 3) cross products (v1 - v0) x (v2 - v0): normal direction, length twice the area."""
    corners = gather_vertices(vertices, faces)  # (B, F, 3, 3)
    return torch.linalg.cross(
        corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0], dim=-1
    )


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Unit face normals (B, F, 3) or (F, 3), outward for counter-clockwise faces.

    >>> face_normals(torch.eye(3), torch.tensor([[0, 1, 2]])) * 3**0.5
    tensor([[1.0000, 1.0000, 1.0000]])
    """
    vertices, batched = _batched(vertices, faces)
    return _unbatch(F.normalize(_face_cross(vertices, faces), dim=-1, eps=EPS), batched)


def face_areas(vertices: Tensor, faces: Tensor) -> Tensor:
    """Triangle areas (B, F) or (F,).

    >>> face_areas(torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 1, 0]]), torch.tensor([[0, 1, 2]]))
    tensor([1.])
    """
    vertices, batched = _batched(vertices, faces)
    return _unbatch(_face_cross(vertices, faces).norm(dim=-1) / 2, batched)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals (B, V, 3) or (V, 3); a vertex in no face gets (0, 0, 0)."""
    vertices, batched = _batched(vertices, faces)
    cross = _face_cross(vertices, faces)  # (B, F, 3), length = 2 * area
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(1, faces[:, corner], cross)
    return _unbatch(F.normalize(normals, dim=-1, eps=EPS), batched)


def _unique_edges(faces: Tensor) -> Tensor:
    """(E, 2) undirected edges of the faces, each once, smaller index first."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
    return torch.unique(edges.sort(dim=1).values, dim=0)


def uniform_laplacian(
    faces: Tensor, num_vertices: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> Tensor:
    """The row-normalised uniform Laplacian ``L = I - D^-1 A`` as a sparse COO (V, V) tensor.

    ``A`` is the vertex adjacency of the faces and ``D`` the vertex degrees; ``(L v)_i`` is ``v_i``
    minus the mean of its neighbours. A vertex in no face gets an all-zero row.

    >>> uniform_laplacian(torch.tensor([[0, 1, 2]]), 3).to_dense()
    tensor([[ 1.0000, -0.5000, -0.5000],
            [-0.5000,  1.0000, -0.5000],
            [-0.5000, -0.5000,  1.0000]])
    """
    check_faces(faces, num_vertices)
    device = faces.device if device is None else device
    edges = _unique_edges(faces).to(device)
    rows = torch.cat([edges[:, 0], edges[:, 1]])  # (2E,) each edge in both directions
    columns = torch.cat([edges[:, 1], edges[:, 0]])
    degree = torch.zeros(num_vertices, dtype=dtype, device=device).index_add(
        0, rows, torch.ones_like(rows, dtype=dtype)
    )
    used = torch.nonzero(degree > 0).squeeze(1)
    indices = torch.cat([torch.stack([used, used]), torch.stack([rows, columns])], dim=1)
    values = torch.cat([torch.ones_like(used, dtype=dtype), -1.0 / degree[rows]])
    return torch.sparse_coo_tensor(
        indices, values, (num_vertices, num_vertices), check_invariants=True
    ).coalesce()


def _cotangents(vertices: Tensor, faces: Tensor) -> Tensor:
    """(B, F, 3) cotangent of the angle at each face corner."""
    corners = gather_vertices(vertices, faces)  # (B, F, 3, 3)
    side_1 = corners.roll(-1, dims=2) - corners  # (B, F, 3, 3) from each corner to the next
    side_2 = corners.roll(-2, dims=2) - corners  # to the one after
    dot = (side_1 * side_2).sum(-1)
    sine = torch.linalg.cross(side_1, side_2, dim=-1).norm(dim=-1).clamp_min(EPS)
    return dot / sine


def _cotangent_edges(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Directed half-edges (3F, 2) opposite each corner and their weights cot / 2 (B, 3F)."""
    edges = torch.cat([faces[:, [1, 2]], faces[:, [2, 0]], faces[:, [0, 1]]])  # opposite corners 0, 1, 2
    weights = _cotangents(vertices, faces).transpose(1, 2).reshape(vertices.shape[0], -1) / 2
    return edges, weights


def cotangent_laplacian(vertices: Tensor, faces: Tensor) -> Tensor:
    """The cotangent Laplacian ``L = D - W`` as a sparse COO (V, V) tensor of the vertices' dtype.

    ``W_ij = (cot a_ij + cot b_ij) / 2`` over the angles opposite edge ij (one term on a boundary
    edge) and ``D_ii = sum_j W_ij``; rows sum to zero. Not area-normalised.

    Args:
        vertices: (V, 3) positions.
        faces: (F, 3) triangles.
    """
    if vertices.dim() != 2:
        raise ValueError(f"vertices must have shape (V, 3), got {tuple(vertices.shape)}")
    batched, _ = _batched(vertices, faces)
    edges, weights = _cotangent_edges(batched, faces)
    weights = weights[0]  # (3F,)
    diagonal = torch.arange(vertices.shape[0], device=vertices.device)
    degree = torch.zeros(vertices.shape[0], dtype=vertices.dtype, device=vertices.device)
    degree = degree.index_add(0, edges[:, 0], weights).index_add(0, edges[:, 1], weights)
    indices = torch.cat([torch.stack([diagonal, diagonal]), edges.T, edges.flip(1).T], dim=1)
    values = torch.cat([degree, -weights, -weights])
    return torch.sparse_coo_tensor(
        indices, values, (vertices.shape[0],) * 2, check_invariants=True
    ).coalesce()


def laplacian_loss(
    vertices: Tensor,
    faces: Tensor,
    kind: Literal["uniform", "cotangent"] = "uniform",
    laplacian: Tensor | None = None,
) -> Tensor:
    """Mean over vertices of the squared norm of ``L v``, one value per mesh.

    Args:
        vertices: (B, V, 3) or (V, 3).
        faces: (F, 3).
        kind: "uniform" (``uniform_laplacian``) or "cotangent" (weights from the current vertices,
            differentiated through).
        laplacian: optional precomputed sparse (V, V) uniform Laplacian, to build it once per run.

    Returns:
        (B,) or a scalar for unbatched vertices; float32 for half-precision vertices (also under autocast).

    >>> tetrahedron = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    >>> laplacian_loss(tetrahedron, torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]]))
    tensor(5.3333)
    """
    vertices, batched = _batched(vertices, faces)
    batch, num_vertices = vertices.shape[:2]
    if kind == "uniform":
        # the sparse product has no half-precision backward (under autocast neither): float32 there
        dtype = torch.float64 if vertices.dtype == torch.float64 else torch.float32
        if laplacian is None:
            laplacian = uniform_laplacian(faces, num_vertices, dtype, vertices.device)
        if laplacian.shape != (num_vertices, num_vertices):
            raise ValueError(
                f"laplacian must have shape ({num_vertices}, {num_vertices}), got {tuple(laplacian.shape)}"
            )
        flat = vertices.to(dtype).permute(1, 0, 2).reshape(num_vertices, batch * 3)  # (V, B * 3)
        with torch.autocast(vertices.device.type, enabled=False):
            product = torch.sparse.mm(laplacian.to(dtype), flat)
        delta = product.reshape(num_vertices, batch, 3).permute(1, 0, 2)  # (B, V, 3)
    elif kind == "cotangent":
        edges, weights = _cotangent_edges(vertices, faces)  # (3F, 2), (B, 3F)
        ends = gather_vertices(vertices, edges)  # (B, 3F, 2, 3)
        difference = ends[:, :, 0] - ends[:, :, 1]  # (B, 3F, 3)
        weighted = weights[..., None] * difference
        delta = (
            torch.zeros_like(vertices)
            .index_add(1, edges[:, 0], weighted)
            .index_add(1, edges[:, 1], -weighted)
        )
    else:
        raise ValueError(f"kind must be 'uniform' or 'cotangent', got {kind!r}")
    return _unbatch(delta.pow(2).sum(-1).mean(-1), batched)


@dataclass(frozen=True)
class EdgeAdjacency:
    """Interior edges (shared by exactly two faces) and the vertices opposite them.

    Attributes:
        edges: (E, 2) int64 edge endpoints, smaller index first.
        opposite: (E, 2) int64 the third vertex of each of the two faces on the edge.
        faces: (E, 2) int64 the two faces.
    """

    edges: Tensor
    opposite: Tensor
    faces: Tensor


def edge_adjacent_faces(faces: Tensor) -> EdgeAdjacency:
    """The interior edges of a mesh with their two faces; boundary and non-manifold edges are left out.

    Compute it once per topology and pass it to ``flatten_loss``.

    >>> adjacency = edge_adjacent_faces(torch.tensor([[0, 1, 2], [2, 1, 3]]))
    >>> adjacency.edges.tolist(), adjacency.opposite.tolist()
    ([[1, 2]], [[0, 3]])
    """
    check_faces(faces, int(faces.max()) + 1 if faces.numel() else 0)
    num_faces = faces.shape[0]
    corner_edges = torch.cat([faces[:, [1, 2]], faces[:, [2, 0]], faces[:, [0, 1]]])  # (3F, 2)
    opposite = faces.T.reshape(-1)  # (3F,) the corner opposite each edge, same order
    face_of = torch.arange(num_faces, device=faces.device).repeat(3)  # (3F,)
    keys, inverse, counts = torch.unique(
        corner_edges.sort(dim=1).values, dim=0, return_inverse=True, return_counts=True
    )
    order = torch.sort(inverse, stable=True).indices  # half-edges grouped by edge
    start = torch.cumsum(counts, 0) - counts  # first half-edge of each edge in ``order``
    interior = torch.nonzero(counts == 2).squeeze(1)
    first, second = order[start[interior]], order[start[interior] + 1]
    return EdgeAdjacency(
        edges=keys[interior],
        opposite=torch.stack([opposite[first], opposite[second]], dim=1),
        faces=torch.stack([face_of[first], face_of[second]], dim=1),
    )


def flatten_loss(vertices: Tensor, faces: Tensor, adjacency: EdgeAdjacency | None = None) -> Tensor:
    """SoftRas's FlattenLoss: ``sum over interior edges of (cos theta + 1)^2`` (see module docstring).

    Args:
        vertices: (B, V, 3) or (V, 3).
        faces: (F, 3).
        adjacency: ``edge_adjacent_faces(faces)``, computed here when not given.

    Returns:
        (B,) or a scalar for unbatched vertices; 0 for a flat mesh.

    >>> square = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    >>> flatten_loss(square, torch.tensor([[0, 1, 2], [2, 1, 3]]))
    tensor(0.)
    """
    vertices, batched = _batched(vertices, faces)
    if adjacency is None:
        adjacency = edge_adjacent_faces(faces)
    ends = gather_vertices(vertices, adjacency.edges)  # (B, E, 2, 3)
    start, end = ends[:, :, 0], ends[:, :, 1]  # (B, E, 3)
    axis = end - start
    axis_length2 = axis.pow(2).sum(-1, keepdim=True).clamp_min(EPS)

    def perpendicular(point: Tensor) -> Tensor:  # (B, E, 3) from the edge to point, normal to it
        offset = point - start
        return offset - axis * (offset * axis).sum(-1, keepdim=True) / axis_length2

    opposite = gather_vertices(vertices, adjacency.opposite)  # (B, E, 2, 3)
    side_1 = perpendicular(opposite[:, :, 0])
    side_2 = perpendicular(opposite[:, :, 1])
    norms = (side_1.pow(2).sum(-1) * side_2.pow(2).sum(-1) + EPS).sqrt()
    cosine = (side_1 * side_2).sum(-1) / norms  # (B, E)
    return _unbatch((cosine + 1).pow(2).sum(-1), batched)


def deformation_loss(offsets: Tensor) -> Tensor:
    """Mean Euclidean norm of per-vertex offsets (B, V, 3) or (V, 3) -> (B,) or scalar (CMR).

    >>> deformation_loss(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]))
    tensor(3.)
    """
    if offsets.dim() not in (2, 3) or offsets.shape[-1] != 3:
        raise ValueError(f"offsets must have shape (B, V, 3) or (V, 3), got {tuple(offsets.shape)}")
    return offsets.norm(dim=-1).mean(-1)
