"""The candidate search of the rasterizer: which (face, pixel) pairs matter, without autograd.

``search(faces_ndc, settings) -> SearchResult`` finds, for B images of S x S pixels:

- the visible face at each covered pixel centre (a z-buffer by ``scatter_reduce``; skipped with
  ``visible=False``, for a soft silhouette alone);
- the pairs in the soft band of a face's boundary that carry gradient, with each pair's nearest edge;
- the pixels whose SoftRas coverage is within ``dist_eps`` of 1 ("saturated": no signal, no pairs).

Each face is an affine "face table" row (signed line distances and depth as functions of the pixel
position); faces are grouped by the side of their pixel box enlarged by the band, and each group is
evaluated on dense windows by broadcasting, then compacted into two lists: the pairs whose pixel centre
lies inside the face and those within the band outside it. A pair is named by its flat face id
``b * F + f`` and its pixel id ``b * S * S + row * S + col`` (with the row and column as floats).

Speed (CPU): every per-pair quantity is a contiguous 1-D tensor (strided columns of (N, 3) tensors and
reductions along a length-3 dimension run several times slower than flat arithmetic), the nearest line
and edge are picked by comparisons instead of ``argmin``, no integer division touches a pair, and the
saturation test sums ``log(1 + exp(.))`` (``log1p`` runs unvectorised, several times slower).

The search issues host synchronisations (``nonzero``, ``unique``): it is the packed path.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from backend.geometry.ops import chunks
from backend.render.settings import RasterSettings

_WINDOW_CELLS = 1 << 22
"""Window cells evaluated at once."""


class SearchResult(NamedTuple):
    """What the search found (flat face ids ``b * F + f``, pixel ids ``b * S * S + row * S + col``).

    Attributes:
        visible_face: (P,) int64 flat face id of the nearest face covering each covered pixel centre.
        visible_pixel: (P,) int64 pixel ids, ascending.
        visible_row, visible_col: (P,) the pixels' row and column as floats of the vertices' dtype.
        band_face: (E,) int64 flat face id of each soft-band pair that carries signal.
        band_pixel: (E,) int64 its pixel id.
        band_row, band_col: (E,) its pixel's row and column (floats).
        band_edge: (E,) int64 the nearest edge k (from corner k to corner k + 1) of the face.
        band_inside: (E,) bool, whether the pixel centre lies inside the face.
        saturated: (B * S * S,) bool pixels whose coverage is 1 within ``dist_eps``.
    """

    visible_face: Tensor
    visible_pixel: Tensor
    visible_row: Tensor
    visible_col: Tensor
    band_face: Tensor
    band_pixel: Tensor
    band_row: Tensor
    band_col: Tensor
    band_edge: Tensor
    band_inside: Tensor
    saturated: Tensor


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


class _Pairs(NamedTuple):
    """One class of candidate pairs, each field (N,): flat face id and pixel id (int64), the pixel's
    row and column (floats), and (for the pairs inside their face, else an empty list) the three signed
    line distances in pixels (positive inside; line k is the edge opposite corner k)."""

    face: Tensor
    pixel: Tensor
    row: Tensor
    col: Tensor
    lines: list[Tensor]


def _cat_pairs(parts: list[_Pairs], dtype: torch.dtype, device: torch.device) -> _Pairs:
    """Concatenate pair lists field by field (an empty list gives empty fields)."""
    empty_long = torch.zeros(0, dtype=torch.long, device=device)
    empty = torch.zeros(0, dtype=dtype, device=device)
    if not parts:
        return _Pairs(empty_long, empty_long, empty, empty, [empty, empty, empty])
    if len(parts) == 1:
        return parts[0]
    lines = [torch.cat([part.lines[e] for part in parts]) for e in range(3)] if parts[0].lines else []
    return _Pairs(
        face=torch.cat([part.face for part in parts]),
        pixel=torch.cat([part.pixel for part in parts]),
        row=torch.cat([part.row for part in parts]),
        col=torch.cat([part.col for part in parts]),
        lines=lines,
    )


def _candidate_pairs(
    table: Tensor, col: Tensor, row: Tensor, valid: Tensor, size: int, num_faces: int, band_px: float
) -> tuple[_Pairs, _Pairs]:
    """The (face, pixel) pairs whose pixel centre lies inside a face or within ``band_px`` of its lines.

    Faces are grouped by the size k of their pixel bounding box enlarged by the band (rounded up to one
    of a few window sides), and each group evaluates the affine line distances on dense (k, k, faces)
    windows by broadcasting (faces innermost, so the sums are contiguous), which needs no per-pair
    gathers; the surviving cells are then compacted by one 2-D ``nonzero`` per class.

    Args:
        table: (B * F, 12) the face table of ``_face_table``.
        col, row: (B * F, 3) corner positions in pixel-centre units.
        valid: (B * F,) faces to consider.
    Returns:
        The pairs inside their face (smallest line distance >= 0) and those outside it but within
        ``band_px`` of every line (smallest line distance in [-band_px, 0)), each in window order
        (group by group, then window cell by cell in row-major order, then face by face): a fixed
        order, so the sums over pairs downstream are the same bits on every run and thread count.
    """
    device, dtype = table.device, table.dtype
    col_lo = torch.ceil(col.amin(-1) - band_px).clamp(0, size)
    col_hi = torch.floor(col.amax(-1) + band_px).clamp(-1, size - 1)
    row_lo = torch.ceil(row.amin(-1) - band_px).clamp(0, size)
    row_hi = torch.floor(row.amax(-1) + band_px).clamp(-1, size - 1)
    extent = torch.maximum(col_hi - col_lo, row_hi - row_lo) + 1  # (B * F,) window side needed
    keep = valid & (col_hi >= col_lo) & (row_hi >= row_lo) & ~torch.isnan(table[:, 0])
    # window sides grow by about 1/8 per step, so a window wastes little more than a square's corners
    sides = _window_sides(size, device, dtype)
    side_of = sides[torch.searchsorted(sides, extent.clamp(1, size))]
    window = torch.where(keep, side_of, torch.zeros_like(extent))
    face_ids = torch.arange(table.shape[0], device=device)  # (B * F,)
    image_start = torch.div(face_ids, num_faces, rounding_mode="floor") * (size * size)
    start = image_start + row_lo.long() * size + col_lo.long()  # (B * F,) pixel id of window cell (0, 0)
    inside: list[_Pairs] = []
    outside: list[_Pairs] = []
    for side in torch.unique(window[keep]).tolist():
        k = int(side)
        members = (window == side).nonzero().squeeze(1)
        chunk = max(1, _WINDOW_CELLS // (k * k))  # bound the dense window memory
        offsets = torch.arange(k, device=device, dtype=dtype)
        cell = torch.arange(k * k, device=device)
        cell_dy = torch.div(cell, k, rounding_mode="floor")  # (k * k,)
        cell_dx = cell - cell_dy * k
        cell_offset = cell_dy * size + cell_dx  # pixel id offset of each window cell
        cell_row, cell_col = cell_dy.to(dtype), cell_dx.to(dtype)
        for part in members.split(chunk):
            n = part.shape[0]
            t = table.index_select(0, part).T.contiguous()  # (12, n)
            part_row_lo, part_col_lo = row_lo.index_select(0, part), col_lo.index_select(0, part)  # (n,)
            part_start = start.index_select(0, part)
            rows = offsets[:, None] + part_row_lo  # (k, n): window row dy of face i
            cols = offsets[:, None] + part_col_lo
            past_rows = rows > row_hi.index_select(0, part)  # (k, n) rows outside the face's box
            past_cols = cols > col_hi.index_select(0, part)
            # a col + b row + c, summed from its separable parts (k, 1, n) + (1, k, n) with the faces
            # innermost (contiguous, so the sums run at full vector speed); rows and columns outside the
            # face's box get -inf, so one comparison keeps the cells that matter
            lines = []  # 3 x (k, k, n): [dy, dx, face]
            for e in range(3):
                row_part = (t[3 + e] * rows + t[6 + e]).masked_fill_(past_rows, float("-inf"))
                col_part = (t[e] * cols).masked_fill_(past_cols, float("-inf"))
                lines.append((row_part[:, None, :] + col_part[None, :, :]).flatten())
            inner = torch.minimum(torch.minimum(lines[0], lines[1]), lines[2])  # (k k n,)
            is_inside = inner >= 0
            is_near = (inner >= -band_px) & ~is_inside
            for mask, into in ((is_inside, inside), (is_near, outside)):
                found = mask.view(k * k, n).nonzero()  # (N, 2) window cells, cell-major
                at, face = found[:, 0], found[:, 1]  # (N,) window cell dy * k + dx, (N,) index into part
                into.append(
                    _Pairs(
                        face=part.index_select(0, face),
                        pixel=part_start.index_select(0, face) + cell_offset.index_select(0, at),
                        row=part_row_lo.index_select(0, face) + cell_row.index_select(0, at),
                        col=part_col_lo.index_select(0, face) + cell_col.index_select(0, at),
                        lines=_gather_lines(lines, at * n + face) if into is inside else [],
                    )
                )
    return _cat_pairs(inside, dtype, device), _cat_pairs(outside, dtype, device)


def _gather_lines(lines: list[Tensor], flat: Tensor) -> list[Tensor]:
    """The three line distances (each (W,) over window cells) at the cells ``flat`` (N,)."""
    return [line.index_select(0, flat) for line in lines]


def _window_sides(size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Window sides 1..8, then steps of about 1/8 up to ``size``: (K,) ascending."""
    sides = list(range(1, 9))
    while sides[-1] < size:
        sides.append(min(size, sides[-1] + max(1, sides[-1] // 8)))
    return torch.tensor(sides, device=device, dtype=dtype)


def _boundary_sq_dist(corner_col: Tensor, corner_row: Tensor, pairs: _Pairs) -> tuple[Tensor, Tensor]:
    """Squared distance (N,) in pixels from each pair's pixel centre to its face's boundary, and the
    nearest edge (N,) int64 (edge k runs from corner k to corner k + 1; the first one on ties).

    Args:
        corner_col, corner_row: (B * F, 3) corner positions in pixel-centre units.
        pairs: N pairs outside their face.

    The arithmetic of ``backend.geometry.ops.segment_sq_dist_rows`` for each edge, on flat tensors,
    ``ops.CHUNK`` pairs at a time (cache-sized steps).
    """
    corners = [corner[:, c].contiguous() for corner in (corner_col, corner_row) for c in range(3)]
    count = pairs.face.shape[0]
    best = torch.empty(count, dtype=corner_col.dtype, device=corner_col.device)
    edge = torch.zeros_like(pairs.face)
    for part in chunks(count):
        face, col, row = pairs.face[part], pairs.col[part], pairs.row[part]
        gathered = [corner.index_select(0, face) for corner in corners]  # 6 x (n,)
        x, y = gathered[:3], gathered[3:]
        nearest = best[part]
        for k in range(3):  # in place where it can, to keep few (n,) buffers alive
            edge_x, edge_y = x[(k + 1) % 3] - x[k], y[(k + 1) % 3] - y[k]
            to_x, to_y = col - x[k], row - y[k]
            length_sq = (edge_x * edge_x).add_(edge_y * edge_y).clamp_min_(1e-20)
            t = (
                (to_x * edge_x).add_(to_y * edge_y).div_(length_sq).clamp_(0.0, 1.0)
            )  # foot of the perpendicular
            off_x, off_y = to_x.sub_(edge_x.mul_(t)), to_y.sub_(edge_y.mul_(t))
            squared = off_x.mul_(off_x).add_(off_y.mul_(off_y))  # (n,)
            if k == 0:
                nearest.copy_(squared)
            else:
                closer = squared < nearest
                torch.where(closer, squared, nearest, out=nearest)
                edge[part].masked_fill_(closer, k)
    return best, edge


def _nearest_line_edge(pairs: _Pairs) -> tuple[Tensor, Tensor]:
    """For pairs inside their face: the distance (N,) to the nearest line and that line's edge (N,)
    int64 in the convention of ``_boundary_sq_dist`` (line k is edge k + 1; the first line on ties)."""
    line0, line1, line2 = pairs.lines
    best = torch.minimum(line0, line1)
    edge = torch.ones_like(pairs.face).masked_fill_(line1 < line0, 2)
    closer = line2 < best
    return torch.where(closer, line2, best), edge.masked_fill_(closer, 0)


def search(tri: Tensor, settings: RasterSettings, *, visible: bool = True) -> SearchResult:
    """The non-differentiable candidate search over faces (B, F, 3, 3) of NDC corners and depths.

    The visible face of a pixel is the nearest covering face; of several at exactly the same depth, the
    last in window order. Band pairs come inside pairs first, then outside pairs, each in window order.
    ``visible=False`` skips the z-buffer (for a soft silhouette alone): the ``visible_*`` fields are then
    empty (P = 0) and the band pairs and ``saturated`` are the same as with it.
    """
    batch, num_faces = tri.shape[:2]
    size = settings.image_size
    num_pixels = batch * size * size
    device = tri.device
    valid = (tri[..., 2] > settings.near).all(-1).flatten()  # (B * F,)
    table, corner_col, corner_row = _face_table(tri, size, settings.perspective_correct)
    band_px = (settings.band_sq_ndc**0.5) * size / 2.0
    inside, outside = _candidate_pairs(table, corner_col, corner_row, valid, size, num_faces, band_px)

    if visible:
        visible_face, visible_pixel, visible_row, visible_col = _z_buffer(table, inside, num_pixels, settings)
    else:
        no_pixel = torch.zeros(0, dtype=torch.long, device=device)
        no_position = torch.zeros(0, dtype=table.dtype, device=device)
        visible_face, visible_pixel, visible_row, visible_col = no_pixel, no_pixel, no_position, no_position

    saturated = torch.zeros(num_pixels, dtype=torch.bool, device=device)
    if not settings.soft:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        none = torch.zeros(0, dtype=table.dtype, device=device)
        return SearchResult(
            visible_face, visible_pixel, visible_row, visible_col, empty, empty, none, none, empty,
            empty.bool(), saturated,
        )  # fmt: skip
    inner, inside_edge = _nearest_line_edge(inside)  # (C,)
    saturated.index_fill_(0, inside.pixel[inner > band_px], True)
    outside_sq, outside_edge = _boundary_sq_dist(corner_col, corner_row, outside)  # (M,)
    # Outside a face the distance to its boundary is at least the largest violated line distance, so
    # only pairs within the band of every line were kept; the exact distance decides the rest.
    near = outside_sq <= band_px * band_px
    # A pixel whose exact coverage is within dist_eps of 1 carries no signal: saturate it. Each band
    # pair removes softplus(+-d^2 / sigma) = -log(1 - coverage) from the pixel's log-uncovered total
    # (log and exp give the same bits for any thread count, unlike log1p's speed or sigmoid's bits).
    to_logit = (2.0 / size) ** 2 / settings.sigma  # squared pixel distance -> d^2 / sigma in NDC units
    # exp(-80) leaves 1 + exp(-80) == 1 in float32 and float64: pairs outside the band add exactly 0
    logit_in = (inner * inner).mul_(to_logit).masked_fill_(inner > band_px, -80.0)  # (C,)
    logit_out = (outside_sq * -to_logit).masked_fill_(~near, -80.0)  # (M,)
    total = torch.zeros(num_pixels, dtype=table.dtype, device=device)
    for pixel, logit in ((inside.pixel, logit_in), (outside.pixel, logit_out)):
        total.index_add_(0, pixel, logit.exp_().add_(1.0).log_())  # softplus(logit)
    saturated |= total > -math.log(settings.dist_eps)
    band_in = (~saturated.index_select(0, inside.pixel)).nonzero().squeeze(1)  # deep pairs saturate
    band_out = (near & ~saturated.index_select(0, outside.pixel)).nonzero().squeeze(1)

    count_in = band_in.shape[0]

    def pick(field_in: Tensor, field_out: Tensor) -> Tensor:  # (E,) = field_in[band_in], field_out[band_out]
        picked = torch.empty(count_in + band_out.shape[0], dtype=field_in.dtype, device=device)
        torch.index_select(field_in, 0, band_in, out=picked[:count_in])
        torch.index_select(field_out, 0, band_out, out=picked[count_in:])
        return picked

    return SearchResult(
        visible_face=visible_face,
        visible_pixel=visible_pixel,
        visible_row=visible_row,
        visible_col=visible_col,
        band_face=pick(inside.face, outside.face),
        band_pixel=pick(inside.pixel, outside.pixel),
        band_row=pick(inside.row, outside.row),
        band_col=pick(inside.col, outside.col),
        band_edge=pick(inside_edge, outside_edge),
        band_inside=torch.arange(count_in + band_out.shape[0], device=device) < count_in,
        saturated=saturated,
    )


def _z_buffer(
    table: Tensor, inside: _Pairs, num_pixels: int, settings: RasterSettings
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The nearest covering face of each covered pixel over the C ``inside`` pairs (NaN rows of
    degenerate faces never cover): its flat face id, pixel id (ascending), row and column, each (P,);
    of faces at exactly the same depth, the last pair in window order wins."""
    device = table.device
    plane = [table[:, 9 + c].contiguous().index_select(0, inside.face) for c in range(3)]  # (C,) each
    depth_key = plane[0] * inside.col + plane[1] * inside.row + plane[2]
    if settings.perspective_correct:
        depth_key = -depth_key  # the table holds inverse depth: the nearest surface has the largest
    nearest = torch.full((num_pixels,), float("inf"), dtype=depth_key.dtype, device=device)
    nearest.scatter_reduce_(0, inside.pixel, depth_key, reduce="amin")
    at_front = depth_key <= nearest.index_select(0, inside.pixel)
    order = torch.arange(inside.face.shape[0], device=device)  # (C,) the last pair at the front wins
    winner = torch.full((num_pixels,), -1, dtype=torch.long, device=device)
    winner.scatter_reduce_(0, inside.pixel, order.masked_fill(~at_front, -1), "amax")
    won = winner[winner >= 0]  # (P,) ascending pixel id
    face, pixel, row, col = (
        field.index_select(0, won) for field in (inside.face, inside.pixel, inside.row, inside.col)
    )
    return face, pixel, row, col
