"""The candidate search of the rasterizer: which (face, pixel) pairs matter, without autograd.

``search(faces_ndc, settings)`` finds, for B images of S x S pixels:

- the visible face at each covered pixel centre (a z-buffer by ``scatter_reduce``);
- the pairs in the soft band of a face's boundary that carry gradient, with each pair's nearest edge;
- the pixels whose SoftRas coverage is within ``dist_eps`` of 1 ("saturated": no signal, no pairs).

Each face is an affine "face table" row (signed line distances and depth as functions of the pixel
position); faces are grouped by the side of their pixel box enlarged by the band, and each group is
evaluated on dense windows by broadcasting, then compacted. Pairs are returned as int64 keys
``pixel * F + f`` with pixel ids ``b * S * S + row * S + col``; ``decode`` unpacks them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from backend.render.settings import RasterSettings


def sigmoid(logit: Tensor) -> Tensor:
    """``1 / (1 + exp(-logit))``: ``torch.sigmoid``'s value, the same bits for any CPU thread count.

    A CPU evaluates ``torch.sigmoid`` with vector code except for the last few elements of each
    thread's chunk, whose scalar code can differ in the last bit, so its result (and a fit's) would
    depend on the thread count; ``torch.exp`` and arithmetic give the same bits either way. Logits
    below -80 are clamped there (coverage under 1e-34), so ``exp`` cannot overflow into a NaN gradient.
    """
    return 1.0 / (1.0 + torch.exp(-logit.clamp_min(-80.0)))


def _face_table(tri: Tensor, size: int, perspective: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Per-face affine functions of the pixel position (col, row), for the candidate search.

    Args:
        tri: (B, F, 3, 3) NDC corner positions and depths.
        size: S.
        perspective: interpolate inverse depth (perspective) instead of depth (orthographic).
    Returns:
        table (B * F, 12): columns 0-8 hold (a_k, b_k, c_k) for k = 0..2 such that ``a_k col + b_k row
        + c_k`` is the signed distance in pixels from the pixel centre to the line of the edge opposite
        corner k (positive inside); columns 9-11 give depth (or inverse depth) the same way.
        col (B * F, 3) and row (B * F, 3): corner positions in pixel-centre units.
    """
    col = ((tri[..., 0] + 1.0) * (size / 2.0) - 0.5).flatten(0, 1)  # (B * F, 3)
    row = ((1.0 - tri[..., 1]) * (size / 2.0) - 0.5).flatten(0, 1)
    depth = tri[..., 2].flatten(0, 1)
    col1, row1 = col.roll(-1, dims=1), row.roll(-1, dims=1)  # corner k + 1
    col2, row2 = col.roll(-2, dims=1), row.roll(-2, dims=1)  # corner k + 2: edge k runs k+1 -> k+2
    edge_col, edge_row = col2 - col1, row2 - row1
    # E_k(p) = edge x (p - corner k+1) = -edge_row col + edge_col row + (edge_row col1 - edge_col row1)
    a, b, c = -edge_row, edge_col, edge_row * col1 - edge_col * row1  # (B * F, 3) each
    area2 = a[:, 0] * col[:, 0] + b[:, 0] * row[:, 0] + c[:, 0]  # E_0 at corner 0: twice the signed area
    degenerate = area2.abs() < 1e-9
    safe_area = torch.where(degenerate, torch.ones_like(area2), area2)
    length = torch.sqrt(edge_col * edge_col + edge_row * edge_row).clamp_min(1e-12)
    scale = torch.sign(safe_area)[:, None] / length  # (B * F, 3) orient inside as positive, unit distance
    value = 1.0 / depth if perspective else depth
    weight = value / safe_area[:, None]  # barycentric l_k = E_k / area2
    depth_terms = [(a * weight).sum(1), (b * weight).sum(1), (c * weight).sum(1)]
    table = torch.cat([a * scale, b * scale, c * scale, torch.stack(depth_terms, dim=1)], dim=1)
    table[degenerate] = float("nan")  # never inside, never near
    return table, col, row


def _candidate_pairs(
    table: Tensor, col: Tensor, row: Tensor, valid: Tensor, size: int, num_faces: int, band_px: float
) -> tuple[Tensor, Tensor]:
    """The (face, pixel) pairs whose pixel centre lies inside a face or within ``band_px`` of its lines.

    Faces are grouped by the size k of their pixel bounding box enlarged by the band (rounded up to one
    of a few window sides),
    and each group evaluates the affine line distances on dense (faces, k, k) windows by broadcasting,
    which needs no per-pair gathers; the surviving pairs are then compacted.

    Args:
        table: (B * F, 12) the face table of ``_face_table``.
        col, row: (B * F, 3) corner positions in pixel-centre units.
        valid: (B * F,) faces to consider.
    Returns:
        (N,) int64 keys ``pixel * F + f`` (pixel id ``b * S * S + row * S + col``) and (N,) ``inner``:
        the smallest signed line distance in pixels (the distance to the boundary when >= 0, i.e. inside).
    """
    device = table.device
    col_lo = torch.ceil(col.amin(-1) - band_px).clamp(0, size)
    col_hi = torch.floor(col.amax(-1) + band_px).clamp(-1, size - 1)
    row_lo = torch.ceil(row.amin(-1) - band_px).clamp(0, size)
    row_hi = torch.floor(row.amax(-1) + band_px).clamp(-1, size - 1)
    extent = torch.maximum(col_hi - col_lo, row_hi - row_lo) + 1  # (B * F,) window side needed
    keep = valid & (col_hi >= col_lo) & (row_hi >= row_lo) & ~torch.isnan(table[:, 0])
    # window sides grow by about 1/8 per step, so a window wastes little more than a square's corners
    sides = _window_sides(size, table.device, table.dtype)
    side_of = sides[torch.searchsorted(sides, extent.clamp(1, size))]
    window = torch.where(keep, side_of, torch.zeros_like(extent))
    keys: list[Tensor] = []
    inners: list[Tensor] = []
    for side in torch.unique(window[keep]).tolist():
        k = int(side)
        members = (window == side).nonzero().squeeze(1)
        chunk = max(1, (1 << 22) // (k * k))  # bound the dense window memory
        offsets = torch.arange(k, device=device, dtype=table.dtype)
        for part in members.split(chunk):
            t = table.index_select(0, part)  # (n, 12)
            cols = col_lo.index_select(0, part)[:, None] + offsets  # (n, k)
            rows = row_lo.index_select(0, part)[:, None] + offsets
            # a col + b row + c, summed from its separable parts (n, 3, k, 1) + (n, 3, 1, k); rows and
            # columns outside the face's box get -inf, so one comparison keeps the cells that matter
            outside = float("-inf")
            in_rows = (rows <= row_hi.index_select(0, part)[:, None])[:, None, :]  # (n, 1, k)
            in_cols = (cols <= col_hi.index_select(0, part)[:, None])[:, None, :]
            row_part = (t[:, 3:6, None] * rows[:, None, :] + t[:, 6:9, None]).masked_fill(~in_rows, outside)
            col_part = (t[:, 0:3, None] * cols[:, None, :]).masked_fill(~in_cols, outside)  # (n, 3, k)
            inner = row_part[:, 0, :, None] + col_part[:, 0, None, :]  # (n, k, k): [face, row, col]
            for edge in (1, 2):
                inner = torch.minimum(inner, row_part[:, edge, :, None] + col_part[:, edge, None, :])
            flat = (inner >= -band_px).flatten().nonzero().squeeze(1)
            # key of window cell (face i, dy, dx): (part[i] * S + row_lo[i] + dy) * S + col_lo[i] + dx
            # key of window cell (face i, dy, dx): pixel id * F + f, with pixel id b * S * S + row * S + col
            image, face_in_mesh = torch.div(part, num_faces, rounding_mode="floor"), part % num_faces
            start = (
                image * (size * size)
                + row_lo.index_select(0, part).long() * size
                + col_lo.index_select(0, part).long()
            )
            cell = torch.arange(k * k, device=device)
            cell_offset = torch.div(cell, k, rounding_mode="floor") * size + cell % k  # (k * k,)
            face = torch.div(flat, k * k, rounding_mode="floor")
            pixel = start.index_select(0, face) + cell_offset.index_select(0, flat - face * (k * k))
            keys.append(pixel * num_faces + face_in_mesh.index_select(0, face))
            inners.append(inner.flatten().index_select(0, flat))
    if not keys:
        return torch.zeros(0, dtype=torch.long, device=device), torch.zeros(
            0, dtype=table.dtype, device=device
        )
    return torch.cat(keys), torch.cat(inners)


def _window_sides(size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Window sides 1..8, then steps of about 1/8 up to ``size``: (K,) ascending."""
    sides = list(range(1, 9))
    while sides[-1] < size:
        sides.append(min(size, sides[-1] + max(1, sides[-1] // 8)))
    return torch.tensor(sides, device=device, dtype=dtype)


def _boundary_sq_dist(tri: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """Squared distance (N,) from points (N,) to the boundary of triangles (N, 3, 2), and the nearest edge.

    Edge k runs from corner k to corner k + 1; the second result (N,) int64 is the nearest edge's k.
    The arithmetic of ``rasterize._segment_sq_dist`` on all three edges at once (this runs on every
    candidate pair of the search, where a (3 N,) copy of the points costs more than the formula).
    """
    x, y = tri[..., 0], tri[..., 1]  # (N, 3)
    edge_x, edge_y = x.roll(-1, dims=1) - x, y.roll(-1, dims=1) - y
    to_x, to_y = px[:, None] - x, py[:, None] - y
    length_sq = (edge_x * edge_x + edge_y * edge_y).clamp_min(1e-20)
    t = ((to_x * edge_x + to_y * edge_y) / length_sq).clamp(0.0, 1.0)  # (N, 3) foot of the perpendicular
    off_x, off_y = to_x - t * edge_x, to_y - t * edge_y
    nearest = (off_x * off_x + off_y * off_y).min(dim=1)
    return nearest.values, nearest.indices


def decode(key: Tensor, num_faces: int, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pair keys (N,) -> flat face id ``b * F + f``, pixel id ``b * S * S + row * S + col``, row, col."""
    pixel = torch.div(key, num_faces, rounding_mode="floor")
    image = torch.div(pixel, size * size, rounding_mode="floor")
    in_image = pixel - image * (size * size)
    row = torch.div(in_image, size, rounding_mode="floor")
    return image * num_faces + (key - pixel * num_faces), pixel, row, in_image - row * size


def search(tri: Tensor, settings: RasterSettings) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The non-differentiable candidate search over faces (B, F, 3, 3) of NDC corners and depths.

    Returns the keys (see ``_candidate_pairs``) of the visible pairs (sorted by pixel) and of the
    soft-band pairs that carry gradient, each band pair's nearest edge (k: corner k -> k + 1) and
    whether its pixel is inside the face, and the (B * S * S,) saturated-pixel mask.
    """
    batch, num_faces = tri.shape[:2]
    size = settings.image_size
    num_pixels = batch * size * size
    valid = (tri[..., 2] > settings.near).all(-1).flatten()  # (B * F,)
    table, corner_col, corner_row = _face_table(tri, size, settings.perspective_correct)
    band_px = (settings.band_sq_ndc**0.5) * size / 2.0
    key, inner = _candidate_pairs(table, corner_col, corner_row, valid, size, num_faces, band_px)
    pixel = torch.div(key, num_faces, rounding_mode="floor")

    # z-buffer over the pairs whose face covers the pixel centre (NaN rows of degenerate faces never do)
    covering = (inner >= 0).nonzero().squeeze(1)
    cover_face_id, cover_pixel, cover_row, cover_col = decode(key.index_select(0, covering), num_faces, size)
    plane = table[:, 9:12].index_select(0, cover_face_id)  # (C, 3) depth (or inverse depth) plane
    depth_key = plane[:, 0] * cover_col + plane[:, 1] * cover_row + plane[:, 2]
    if settings.perspective_correct:
        depth_key = -depth_key  # the table holds inverse depth: the nearest surface has the largest
    nearest = torch.full((num_pixels,), float("inf"), dtype=depth_key.dtype, device=depth_key.device)
    nearest.scatter_reduce_(0, cover_pixel, depth_key, reduce="amin")
    at_front = (depth_key <= nearest.index_select(0, cover_pixel)).nonzero().squeeze(1)
    winner = torch.full((num_pixels,), -1, dtype=torch.long, device=depth_key.device)
    winner.scatter_reduce_(
        0, cover_pixel.index_select(0, at_front), covering.index_select(0, at_front), "amax"
    )
    visible_key = key.index_select(0, winner[winner >= 0])  # (P,) sorted by pixel id

    saturated = torch.zeros(num_pixels, dtype=torch.bool, device=key.device)
    if not settings.soft:
        empty = torch.zeros(0, dtype=torch.long, device=key.device)
        return visible_key, empty, empty, empty.bool(), saturated
    saturated.index_fill_(0, pixel[inner > band_px], True)
    inside_band = ((inner >= 0) & (inner <= band_px)).nonzero().squeeze(1)
    # Outside a face the distance to its boundary is at least the largest violated line distance, so
    # only pairs within the band of every line need the exact distance to the segments.
    maybe = ((inner < 0) & (inner >= -band_px)).nonzero().squeeze(1)
    maybe_face_id, _, maybe_row, maybe_col = decode(key.index_select(0, maybe), num_faces, size)
    corners = torch.stack([corner_col, corner_row], dim=2).index_select(0, maybe_face_id)  # (M, 3, 2)
    outside_sq, outside_edge = _boundary_sq_dist(
        corners, maybe_col.to(table.dtype), maybe_row.to(table.dtype)
    )
    near = outside_sq <= band_px * band_px
    # A pixel whose exact coverage is within dist_eps of 1 carries no signal: saturate it.
    to_logit = (2.0 / size) ** 2 / settings.sigma  # squared pixel distance -> d^2 / sigma in NDC units
    inside_logit = inner.index_select(0, inside_band) ** 2 * to_logit
    log_uncovered = torch.cat(
        [
            torch.log1p(-sigmoid(inside_logit).clamp(max=1 - 1e-7)),
            torch.log1p(-sigmoid(-outside_sq[near] * to_logit)),
        ]
    )
    band_all = torch.cat([inside_band, maybe[near]])
    # the nearest edge of an inside pair is the nearest line: line k is the edge opposite corner k
    inside_face_id, _, inside_row, inside_col = decode(key.index_select(0, inside_band), num_faces, size)
    inside_lines = table[:, :9].index_select(0, inside_face_id).reshape(-1, 3, 3)
    line_dist = (
        inside_lines[:, 0] * inside_col[:, None]
        + inside_lines[:, 1] * inside_row[:, None]
        + inside_lines[:, 2]
    )
    band_edge = torch.cat([(line_dist.argmin(1) + 1) % 3, outside_edge[near]])
    band_pixel = pixel.index_select(0, band_all)
    total = torch.zeros(num_pixels, dtype=table.dtype, device=key.device)
    total.index_add_(0, band_pixel, log_uncovered)
    saturated |= total < math.log(settings.dist_eps)
    carries_signal = ~saturated.index_select(0, band_pixel)
    band = band_all[carries_signal]
    return (
        visible_key,
        key.index_select(0, band),
        band_edge[carries_signal],
        inner.index_select(0, band) >= 0,
        saturated,
    )
