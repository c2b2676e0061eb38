"""Quality metrics shared by the backend (reports) and training (evaluation), as the seed papers define them.

- ``mask_iou``: silhouette IoU, soft (CMR: ``sum(p t) / sum(p + t - p t)``) or hard (both masks
  thresholded at > 0.5). An empty union (both masks empty) counts as a perfect match, 1.0.
- ``ssim``: structural similarity of Wang et al. (2004): an 11 x 11 Gaussian window with sigma 1.5,
  K1 = 0.01, K2 = 0.03, evaluated at every position where the window fits inside the image ("valid",
  as Wang's reference code) and averaged over positions and channels.
- ``chamfer_distance``: DPC's (Insafutdinov & Dosovitskiy) Chamfer distance reported x100: the mean
  Euclidean distance from each point of A to its nearest point in B plus the same from B to A, each
  term multiplied by 100. Computed in chunks of 1024 source points, so 16k x 16k points need about
  70 MB at a time.
- ``voxelize_mesh`` / ``voxel_iou``: the 3D IoU of SoftRas on a 32^3 grid over the cube
  [-0.5, 0.5]^3 (SoftRas maps its [-0.5, 0.5] meshes to [0, 1] with ``faces * 31/32 + 0.5``; we
  keep the object's coordinates and put voxel centres at ``-0.5 + (i + 0.5) / R``). Grid index order is
  ``[x, y, z]``. A voxel is filled when its centre is inside the mesh (odd number of surface
  crossings on a ray along +z, with the rasterisers' top-left rule so rays through edges and vertices
  count once; the mesh must be closed) or, with ``fill_surface``, when a point sampled on a triangle
  (samples at most half a voxel apart, corners and edges included) falls in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.mesh import check_faces


def mask_iou(pred: Tensor, target: Tensor, soft: bool = True) -> Tensor:
    """Intersection over union of masks (B, H, W) or (H, W) with values in [0, 1] -> (B,) or scalar.

    >>> pred = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    >>> mask_iou(pred, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor(0.5000)
    >>> mask_iou(torch.zeros(2, 2), torch.zeros(2, 2), soft=False)
    tensor(1.)
    """
    if pred.shape != target.shape or pred.dim() not in (2, 3):
        raise ValueError(
            f"pred and target must have the same shape (B, H, W) or (H, W), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if not soft:
        pred, target = (pred > 0.5).float(), (target > 0.5).float()
    intersection = (pred * target).sum(dim=(-2, -1))
    union = (pred + target - pred * target).sum(dim=(-2, -1))
    return torch.where(union > 0, intersection / union.clamp_min(1e-12), torch.ones_like(union))


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(size,) normalised 1D Gaussian weights."""
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def ssim(
    img1: Tensor,
    img2: Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> Tensor:
    """Mean structural similarity of images (B, H, W, C) or (H, W, C) -> (B,) or scalar.

    H and W must be at least ``window_size``.

    >>> image = torch.rand(1, 16, 16, 3)
    >>> round(float(ssim(image, image)[0]), 6)
    1.0
    """
    if img1.shape != img2.shape or img1.dim() not in (3, 4):
        raise ValueError(
            f"images must have the same shape (B, H, W, C) or (H, W, C), got {tuple(img1.shape)} "
            f"and {tuple(img2.shape)}"
        )
    batched = img1.dim() == 4
    if not batched:
        img1, img2 = img1.unsqueeze(0), img2.unsqueeze(0)
    height, width, channels = img1.shape[1:]
    if min(height, width) < window_size:
        raise ValueError(
            f"images of {height} x {width} are smaller than the {window_size} x {window_size} window"
        )
    dtype = img1.dtype if img1.dtype.is_floating_point else torch.float32
    window = _gaussian_window(window_size, sigma, dtype, img1.device)
    kernel_rows = window.reshape(1, 1, -1, 1).expand(channels, 1, -1, 1)
    kernel_columns = window.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1)

    def blur(image: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H - ws + 1, W - ws + 1), valid region
        return F.conv2d(F.conv2d(image, kernel_rows, groups=channels), kernel_columns, groups=channels)

    x = img1.to(dtype).permute(0, 3, 1, 2)  # (B, C, H, W)
    y = img2.to(dtype).permute(0, 3, 1, 2)
    mean_x, mean_y = blur(x), blur(y)
    variance_x = blur(x * x) - mean_x**2
    variance_y = blur(y * y) - mean_y**2
    covariance = blur(x * y) - mean_x * mean_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)) / (
        (mean_x**2 + mean_y**2 + c1) * (variance_x + variance_y + c2)
    )
    result = ssim_map.mean(dim=(1, 2, 3))
    return result if batched else result[0]


@dataclass(frozen=True)
class ChamferDistance:
    """DPC-style Chamfer distance x100; ``total = a_to_b + b_to_a``.

    Attributes:
        total: () scalar, the reported value.
        a_to_b: () 100 x mean distance from each point of A to its nearest point of B.
        b_to_a: () the same from B to A.
    """

    total: Tensor
    a_to_b: Tensor
    b_to_a: Tensor


def _nearest_distances(source: Tensor, target: Tensor, chunk_size: int) -> Tensor:
    """(N,) Euclidean distance from each source point (N, 3) to its nearest target point (M, 3).

    The nearest point is found with the fast matrix-product form of the distance and its distance
    recomputed from the coordinate differences, which is exact to rounding.
    """
    parts = []
    target_norm2 = target.pow(2).sum(dim=1)  # (M,)
    for start in range(0, source.shape[0], chunk_size):
        chunk = source[start : start + chunk_size]  # (n, 3)
        # |a - b|^2 - |a|^2 = |b|^2 - 2 a.b has the same argmin over b.
        nearest = torch.addmm(target_norm2[None, :], chunk, target.T, alpha=-2).argmin(dim=1)  # (n,)
        parts.append((chunk - target[nearest]).norm(dim=1))
    return torch.cat(parts)


def chamfer_distance(points_a: Tensor, points_b: Tensor, chunk_size: int = 1024) -> ChamferDistance:
    """Chamfer distance x100 between point sets (N, 3) and (M, 3) (see the module docstring).

    >>> a = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    >>> chamfer_distance(a, a + torch.tensor([0.0, 0.5, 0])).total
    tensor(100.)
    """
    for name, points in (("points_a", points_a), ("points_b", points_b)):
        if points.dim() != 2 or points.shape[1] != 3 or points.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, 3) with N > 0, got {tuple(points.shape)}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    a_to_b = 100 * _nearest_distances(points_a, points_b, chunk_size).mean()
    b_to_a = 100 * _nearest_distances(points_b, points_a, chunk_size).mean()
    return ChamferDistance(a_to_b + b_to_a, a_to_b, b_to_a)


def _edge_function(point_x: Tensor, point_y: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """(P,) signed double area of (start, end, point) in the xy-plane, exactly antisymmetric.

    Points (P,) and segment ends (P, 3). The segment is evaluated in a canonical direction
    (lexicographically smaller endpoint first) and the sign flipped afterwards, so both triangles
    sharing an edge get bit-identical values.
    """
    swap = (start[:, 0] > end[:, 0]) | ((start[:, 0] == end[:, 0]) & (start[:, 1] > end[:, 1]))  # (P,)
    first = torch.where(swap[:, None], end, start)  # (P, 3)
    second = torch.where(swap[:, None], start, end)
    value = (second[:, 0] - first[:, 0]) * (point_y - first[:, 1]) - (second[:, 1] - first[:, 1]) * (
        point_x - first[:, 0]
    )
    return torch.where(swap, -value, value)


def _inside_by_ray_parity(vertices: Tensor, faces: Tensor, centres: Tensor) -> Tensor:
    """(R, R, R) bool, [x, y, z]: voxel centres with an odd number of surface crossings below them.

    One ray per (x, y) column of voxel centres, along +z, tested against the triangles whose xy
    bounding box contains it. A point on an edge or vertex shared by several projected triangles is
    counted once, by the top-left rule of rasterisers (an edge owns its points when it runs downwards,
    or horizontally towards -x, in counter-clockwise order), so rays through edges and vertices keep
    the parity right on closed meshes.
    """
    resolution = centres.shape[0]
    device = vertices.device
    centres = centres.double()
    corners = vertices.double()[faces]  # (F, 3, 3)
    a, b, c = corners.unbind(1)
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])  # (F,)
    keep = area != 0  # triangles seen edge-on are never crossed
    flip = (area < 0)[keep, None]
    a, b, c = a[keep], torch.where(flip, c[keep], b[keep]), torch.where(flip, b[keep], c[keep])  # CCW in xy
    area = area[keep].abs()
    # Candidate (column, triangle) pairs: columns whose centre lies in the triangle's xy bounding box.
    low = torch.searchsorted(centres, torch.minimum(torch.minimum(a, b), c)[:, :2].contiguous())  # (F, 2)
    high = torch.searchsorted(centres, torch.maximum(torch.maximum(a, b), c)[:, :2].contiguous(), right=True)
    counts = (high - low).clamp_min(0)  # (F, 2) columns in x and in y
    face = torch.repeat_interleave(
        torch.arange(a.shape[0], device=device), counts[:, 0] * counts[:, 1]
    )  # (P,)
    offset = torch.arange(face.shape[0], device=device) - torch.repeat_interleave(
        torch.cumsum(counts[:, 0] * counts[:, 1], 0) - counts[:, 0] * counts[:, 1],
        counts[:, 0] * counts[:, 1],
    )
    column_x = low[face, 0] + offset // counts[face, 1]  # (P,)
    column_y = low[face, 1] + offset % counts[face, 1]
    point_x, point_y = centres[column_x], centres[column_y]
    a, b, c, area = a[face], b[face], c[face], area[face]
    inside = torch.ones_like(face, dtype=torch.bool)
    weights = []
    for start, end in ((b, c), (c, a), (a, b)):  # the edges opposite a, b and c
        value = _edge_function(point_x, point_y, start, end)  # (P,)
        dx, dy = end[:, 0] - start[:, 0], end[:, 1] - start[:, 1]
        owns = (dy < 0) | ((dy == 0) & (dx < 0))  # top-left edge
        inside &= (value > 0) | ((value == 0) & owns)
        weights.append(value)
    depth = (weights[0] * a[:, 2] + weights[1] * b[:, 2] + weights[2] * c[:, 2]) / area  # (P,)
    first_above = torch.searchsorted(centres, depth[inside], right=True)  # voxels from here on flip
    ray = (column_x * resolution + column_y)[inside]
    toggles = torch.zeros(resolution * resolution, resolution + 1, dtype=torch.long, device=device)
    toggles.index_put_((ray, first_above), torch.ones_like(ray), accumulate=True)
    parity = toggles.cumsum(dim=1)[:, :resolution] % 2 == 1  # (R^2, R)
    return parity.reshape(resolution, resolution, resolution)


def _surface_samples(vertices: Tensor, faces: Tensor, spacing: float) -> Tensor:
    """(N, 3) points on every triangle (corners, edges, interior) at most ``spacing`` apart."""
    corners = vertices[faces]  # (F, 3, 3)
    longest = (corners - corners.roll(1, dims=1)).norm(dim=-1).max(dim=1).values  # (F,)
    steps = torch.ceil(longest / spacing).clamp_min(1).long()  # (F,)
    samples = []
    for step in torch.unique(steps).tolist():
        i, j = torch.meshgrid(
            torch.arange(step + 1, device=vertices.device),
            torch.arange(step + 1, device=vertices.device),
            indexing="ij",
        )
        keep = i + j <= step
        weights = (
            torch.stack([i[keep], j[keep], step - i[keep] - j[keep]], dim=1).to(vertices) / step
        )  # (S, 3)
        samples.append(torch.einsum("sk,fkd->fsd", weights, corners[steps == step]).reshape(-1, 3))
    return torch.cat(samples)


def voxelize_mesh(vertices: Tensor, faces: Tensor, resolution: int = 32, fill_surface: bool = True) -> Tensor:
    """Solid voxelisation (R, R, R) bool, index order [x, y, z], of a mesh inside [-0.5, 0.5]^3.

    Args:
        vertices: (V, 3) positions; parts outside the cube are cut off.
        faces: (F, 3) triangles of a closed mesh.
        resolution: R, voxels per side (voxel size 1 / R).
        fill_surface: also fill every voxel a triangle passes through (SoftRas's protocol).

    >>> cube = torch.tensor([[x, y, z] for x in (-0.2, 0.2) for y in (-0.2, 0.2) for z in (-0.2, 0.2)])
    >>> faces = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
    ...                       [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    >>> int(voxelize_mesh(cube, faces, fill_surface=False).sum()), int(voxelize_mesh(cube, faces).sum())
    (1728, 2744)
    """
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {tuple(vertices.shape)}")
    check_faces(faces, vertices.shape[0])
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    vertices = vertices.detach()
    size = 1.0 / resolution
    centres_1d = -0.5 + (torch.arange(resolution, dtype=vertices.dtype, device=vertices.device) + 0.5) * size
    occupied = _inside_by_ray_parity(vertices, faces, centres_1d)
    if fill_surface:
        cells = torch.floor((_surface_samples(vertices, faces, size / 2) + 0.5) * resolution).long()  # (N, 3)
        cells = cells[((cells >= 0) & (cells < resolution)).all(dim=1)]
        occupied[cells[:, 0], cells[:, 1], cells[:, 2]] = True
    return occupied


def voxel_iou(pred: Tensor, target: Tensor) -> Tensor:
    """IoU of boolean voxel grids (R, R, R) or (B, R, R, R) -> scalar or (B,); both empty gives 1.0.

    >>> grid = torch.zeros(4, 4, 4, dtype=torch.bool)
    >>> other = grid.clone()
    >>> grid[:2] = True
    >>> other[1:3] = True
    >>> voxel_iou(grid, other)
    tensor(0.3333)
    """
    if pred.shape != target.shape or pred.dim() not in (3, 4):
        raise ValueError(
            f"pred and target must have the same shape (R, R, R) or (B, R, R, R), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    pred, target = pred.bool(), target.bool()
    dims = (-3, -2, -1)
    intersection = (pred & target).sum(dim=dims).float()
    union = (pred | target).sum(dim=dims).float()
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))
