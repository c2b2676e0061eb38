"""A mesh as a displacement map in UV space on a symmetric template (ConvMesh, MeshInversion).

ConvMesh and MeshInversion generate a mesh as a 3-channel map ``(B, 3, M, M)`` (M = 32) that is
topologically aligned with the texture: each template vertex reads the map bilinearly at its *topo
position*, and the three values displace it along its own frame::

    vertices = template_vertices + d_normal * normal + d_tangent * tangent + d_bitangent * bitangent

Conventions (the contract the model, the losses and the trainer code against):

- Map layout = texture layout: column ``j`` covers ``u`` in ``[j / M, (j + 1) / M]`` (texel centre at
  ``(j + 0.5) / M``), row 0 is ``v = 1`` (the north pole, +y). Channels: 0 normal, 1 tangent,
  2 bitangent.
- Topo position of a vertex: the mean UV of its UV copies in the template (its spherical
  coordinates), with ``u`` taken modulo 1 so that the two copies of a back-seam vertex (u = 0 and
  u = 1) agree on u = 0. Vertices on the symmetry plane are snapped exactly to u = 0.5 (front and
  poles) or u = 0 (back seam), and every left vertex sits at ``1 - u`` of its right mirror.
- Sampling: bilinear between texel centres; ``u`` wraps around the seam (circular padding), ``v`` is
  clamped to the first / last row (the poles read row 0 and row M - 1).
- Frame: ``normal`` the template vertex's unit normal (its position on the unit sphere),
  ``tangent = normalize(normal x up)`` with up = +y, ``bitangent = normal x tangent``. At the poles,
  where ``normal x up`` vanishes, ``tangent = +x``.
- Symmetry: mirroring x -> -x maps column ``j`` to ``M - 1 - j`` and flips the tangent (the normal and
  bitangent map to their mirrors), so a map is mirror-symmetric when
  ``D[c, :, j] = s_c D[c, :, M - 1 - j]`` with ``s = (1, -1, 1)``; ``symmetrize`` projects onto such
  maps (the mean of a map and its mirror) and the vertices of a symmetric map are mirror-symmetric.
- ``to_map`` inverts ``vertices``: per channel, the least-squares map whose samples match the
  offsets' frame components, plus ``smoothness`` times the squared differences between neighbouring
  texels (circular in u), which defines the texels no vertex reads and makes the system
  positive definite. Both directions are linear, fixed matrices: differentiable and batched.
  On the UV sphere with M = 32 = its segment count, a ring's vertices sit between texel centres and
  read the mean of two neighbouring columns, so the one pattern a ring cannot hold is a zig-zag
  alternating from vertex to vertex; smooth meshes round-trip to ~1e-4 (smoothness 1e-4).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from backend.geometry.templates import PLANE_TOLERANCE, SymmetricTemplate

DEFAULT_SMOOTHNESS = 1e-4
"""Weight of the texel-difference term in ``UvDisplacement.to_map`` (the data term weighs 1 per vertex)."""

MIRROR_SIGN = (1.0, -1.0, 1.0)
"""Sign of each channel (normal, tangent, bitangent) under the mirror x -> -x."""


class UvDisplacement:
    """Mesh <-> (B, 3, M, M) displacement map on a template (ConvMesh).

    Attributes:
        template: the symmetric template whose vertices are displaced.
        map_size: M, the map's height and width.
        num_vertices: V, the template's vertex count.
        topo: (V, 2) float64 (u, v) topo position of each vertex.
        frame: (3, V, 3) float32 unit (normal, tangent, bitangent) of each vertex.
        sample_index: (V, 4) int64 flat texel index (row * M + column) of each bilinear corner.
        sample_weight: (V, 4) float32 bilinear weights (rows sum to 1).
        inverse: (M * M, V) float32 matrix of ``to_map``: map channel = inverse @ frame component.
    """

    def __init__(
        self, template: SymmetricTemplate, map_size: int = 32, smoothness: float = DEFAULT_SMOOTHNESS
    ) -> None:
        if isinstance(map_size, bool) or not isinstance(map_size, int) or map_size < 2:
            raise ValueError(f"map_size must be an int >= 2, got {map_size!r}")
        if not smoothness > 0:
            raise ValueError(f"smoothness must be positive, got {smoothness}")
        self.template = template
        self.map_size = map_size
        self.num_vertices = template.mesh.num_vertices
        self.smoothness = float(smoothness)
        cpu = template.mesh.vertices.device
        base = template.mesh.vertices.to(torch.float64)  # (V, 3)
        self.topo = _topo_positions(template).to(cpu)  # (V, 2) float64
        self.frame = _vertex_frames(base).to(torch.float32)  # (3, V, 3)
        index, weight = _bilinear_taps(self.topo, map_size)
        self.sample_index = index  # (V, 4)
        self.sample_weight = weight.to(torch.float32)  # (V, 4)
        self.inverse = _least_squares_inverse(index, weight, map_size, self.smoothness).to(torch.float32)

    @property
    def device(self) -> torch.device:
        """The device of the template and of every precomputed tensor."""
        return self.frame.device

    def to(self, device: torch.device | str) -> UvDisplacement:
        """The same mapping with the template and every precomputed tensor on ``device``."""
        moved = copy.copy(self)
        moved.template = self.template.to(device)
        moved.topo = self.topo.to(device)
        moved.frame = self.frame.to(device)
        moved.sample_index = self.sample_index.to(device)
        moved.sample_weight = self.sample_weight.to(device)
        moved.inverse = self.inverse.to(device)
        return moved

    def sample(self, displacement: Tensor) -> Tensor:
        """The map read bilinearly at every vertex's topo position.

        Args:
            displacement: (B, 3, M, M).

        Returns:
            (B, 3, V) the (normal, tangent, bitangent) displacement of each vertex; differentiable.
        """
        self._check_map(displacement)
        flat = displacement.flatten(2)  # (B, 3, M * M)
        taps = flat[:, :, self.sample_index.to(flat.device)]  # (B, 3, V, 4)
        weight = self.sample_weight.to(device=flat.device, dtype=flat.dtype)  # (V, 4)
        return (taps * weight).sum(dim=-1)

    def offsets(self, displacement: Tensor) -> Tensor:
        """(B, 3, M, M) -> (B, V, 3): the displacement of each template vertex in object space."""
        components = self.sample(displacement)  # (B, 3, V)
        frame = self.frame.to(device=displacement.device, dtype=displacement.dtype)  # (3, V, 3)
        return torch.einsum("bcv,cvk->bvk", components, frame)

    def vertices(self, displacement: Tensor) -> Tensor:
        """(B, 3, M, M) -> (B, V, 3): template vertices displaced by the map; differentiable.

        A zero map gives the template's vertices exactly.
        """
        base = self.template.mesh.vertices.to(device=displacement.device, dtype=displacement.dtype)
        return base + self.offsets(displacement)

    def to_map(self, vertices: Tensor) -> Tensor:
        """(B, V, 3) -> (B, 3, M, M): the smoothest map whose ``vertices`` are closest (least squares).

        ``vertices(to_map(v))`` reproduces ``v`` up to the small smoothness term; differentiable.
        """
        if vertices.dim() != 3 or vertices.shape[1:] != (self.num_vertices, 3):
            raise ValueError(
                f"vertices must have shape (B, {self.num_vertices}, 3), got {tuple(vertices.shape)}"
            )
        base = self.template.mesh.vertices.to(device=vertices.device, dtype=vertices.dtype)
        frame = self.frame.to(device=vertices.device, dtype=vertices.dtype)  # (3, V, 3)
        components = torch.einsum("bvk,cvk->bcv", vertices - base, frame)  # (B, 3, V)
        inverse = self.inverse.to(device=vertices.device, dtype=vertices.dtype)  # (M * M, V)
        flat = torch.einsum("tv,bcv->bct", inverse, components)  # (B, 3, M * M)
        return flat.reshape(vertices.shape[0], 3, self.map_size, self.map_size)

    def mirror(self, displacement: Tensor) -> Tensor:
        """The map of the mirrored mesh (x -> -x): columns reversed, tangent channel negated."""
        self._check_map(displacement)
        sign = torch.tensor(MIRROR_SIGN, dtype=displacement.dtype, device=displacement.device)
        return displacement.flip(-1) * sign[:, None, None]

    def symmetrize(self, displacement: Tensor) -> Tensor:
        """The nearest mirror-symmetric map: the mean of the map and its mirror; differentiable.

        ConvMesh predicts half a map and mirrors it; this is the same constraint as a projection, so a
        symmetric map is unchanged and the vertices of the result are symmetric about x = 0.
        """
        return (displacement + self.mirror(displacement)) / 2

    def _check_map(self, displacement: Tensor) -> None:
        size = self.map_size
        if displacement.dim() != 4 or displacement.shape[1:] != (3, size, size):
            raise ValueError(
                f"displacement must have shape (B, 3, {size}, {size}), got {tuple(displacement.shape)}"
            )


def _topo_positions(template: SymmetricTemplate) -> Tensor:
    """(V, 2) float64 mean (u mod 1, v) of each vertex's UV copies, plane vertices snapped, mirrored."""
    mesh = template.mesh
    device = mesh.vertices.device
    num_vertices = mesh.num_vertices
    uvs = mesh.uvs.to(torch.float64)  # (T, 2)
    vertex = mesh.faces.reshape(-1)  # (3F,)
    uv_index = mesh.face_uvs.reshape(-1)  # (3F,)
    # each distinct (vertex, uv) copy counts once, however many faces share it
    pairs = torch.unique(torch.stack([vertex, uv_index], dim=1), dim=0)  # (K, 2)
    copies = uvs[pairs[:, 1]].clone()  # (K, 2)
    copies[:, 0] = torch.remainder(copies[:, 0], 1.0)
    total = torch.zeros(num_vertices, 2, dtype=torch.float64, device=device)
    total.index_add_(0, pairs[:, 0], copies)
    count = torch.zeros(num_vertices, dtype=torch.float64, device=device)
    count.index_add_(0, pairs[:, 0], torch.ones(pairs.shape[0], dtype=torch.float64, device=device))
    topo = total / count.clamp(min=1.0)[:, None]
    positions = mesh.vertices.to(torch.float64)
    plane = template.plane_index.to(device)
    back = positions[plane, 2] < -PLANE_TOLERANCE
    topo[plane, 0] = torch.where(
        back,
        torch.zeros((), dtype=torch.float64, device=device),
        torch.full((), 0.5, dtype=torch.float64, device=device),
    )
    right, left = template.right_index.to(device), template.left_index.to(device)
    topo[left, 0] = 1.0 - topo[right, 0]
    topo[left, 1] = topo[right, 1]
    return topo


def _vertex_frames(vertices: Tensor) -> Tensor:
    """(3, V, 3) (normal, tangent, bitangent) of vertices (V, 3) on a sphere centred at the origin."""
    normal = vertices / vertices.norm(dim=1, keepdim=True)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=vertices.dtype, device=vertices.device)
    tangent = torch.linalg.cross(normal, up.expand_as(normal), dim=1)
    length = tangent.norm(dim=1, keepdim=True)
    pole = length[:, 0] < 1e-8
    x_axis = torch.tensor([1.0, 0.0, 0.0], dtype=vertices.dtype, device=vertices.device)
    tangent = torch.where(pole[:, None], x_axis.expand_as(tangent), tangent / length.clamp(min=1e-12))
    bitangent = torch.linalg.cross(normal, tangent, dim=1)
    return torch.stack([normal, tangent, bitangent])


def _bilinear_taps(topo: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """(V, 4) flat texel indices and (V, 4) float64 weights reading a (size, size) map at ``topo``."""
    x = topo[:, 0] * size - 0.5  # column coordinate, texel centres at integers
    y = (1.0 - topo[:, 1]) * size - 0.5  # row coordinate, row 0 at v = 1
    y = y.clamp(0.0, size - 1.0)
    x0 = torch.floor(x)
    y0 = torch.floor(y).clamp(max=size - 2.0)
    fx, fy = x - x0, y - y0
    col0 = torch.remainder(x0.long(), size)
    col1 = torch.remainder(x0.long() + 1, size)
    row0 = y0.long()
    row1 = row0 + 1
    index = torch.stack(
        [row0 * size + col0, row0 * size + col1, row1 * size + col0, row1 * size + col1], dim=1
    )
    weight = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], dim=1)
    return index, weight


def _least_squares_inverse(index: Tensor, weight: Tensor, size: int, smoothness: float) -> Tensor:
    """(size * size, V) float64 ``(S^T S + smoothness D^T D)^-1 S^T`` with S the sampling matrix.

    D holds one row per pair of neighbouring texels (circular in columns, not across the top and
    bottom rows); the system is positive definite because the rows of S sum to 1.
    """
    device = index.device
    num_vertices = index.shape[0]
    texels = size * size
    sampling = torch.zeros(num_vertices, texels, dtype=torch.float64, device=device)  # (V, M * M)
    rows = torch.arange(num_vertices, device=device)[:, None].expand_as(index)
    sampling.index_put_((rows.reshape(-1), index.reshape(-1)), weight.reshape(-1), accumulate=True)
    grid = torch.arange(texels, device=device).reshape(size, size)
    first = torch.cat([grid.reshape(-1), grid[:-1].reshape(-1)])  # horizontal then vertical pairs
    second = torch.cat([grid.roll(-1, dims=1).reshape(-1), grid[1:].reshape(-1)])
    pairs = torch.arange(first.shape[0], device=device)
    difference = torch.zeros(first.shape[0], texels, dtype=torch.float64, device=device)
    difference[pairs, first] = 1.0
    difference[pairs, second] = -1.0
    system = sampling.T @ sampling + smoothness * difference.T @ difference  # (M * M, M * M)
    return torch.linalg.solve(system, sampling.T)
