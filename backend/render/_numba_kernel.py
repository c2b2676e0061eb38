"""The numba loops of ``cpu_silhouette`` (imported only there, on first use: numba is optional).

Pixel-centre units throughout: corner k of a face at (col, row) = ((x + 1) S / 2 - 0.5, (1 - y) S / 2
- 0.5); edge k runs from corner k to corner k + 1. A (face, pixel) pair is classified by
``pair_value``: outside the band (nothing), inside within the band (+d^2 to the nearest line's edge),
outside within the band (-d^2 to the nearest edge), or deeper than the band inside (the pixel
saturates), the rules of ``search.search``. Everything is float64; faces in index order, pixels row by
row: a fixed order of additions.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")


@_jit
def corners_px(vertices: Any, faces: Any, f: int, size: int, out: Any) -> None:
    """out (3, 2): corner k of face f as (col, row) in pixel-centre units."""
    half = size / 2.0
    for k in range(3):
        v = faces[f, k]
        out[k, 0] = (vertices[v, 0] + 1.0) * half - 0.5
        out[k, 1] = (1.0 - vertices[v, 1]) * half - 0.5


@_jit
def usable(vertices: Any, faces: Any, f: int, near: float) -> bool:
    """Whether every corner of face f lies beyond ``near``."""
    return (
        vertices[faces[f, 0], 2] > near
        and vertices[faces[f, 1], 2] > near
        and vertices[faces[f, 2], 2] > near
    )


@_jit
def face_box(corner: Any, band_px: float, size: int) -> tuple[int, int, int, int, float]:
    """The face's pixel box enlarged by the band, clipped to the image (col_lo, col_hi, row_lo, row_hi;
    empty when lo > hi), and twice its signed area in pixels."""
    area2 = (corner[1, 0] - corner[0, 0]) * (corner[2, 1] - corner[0, 1]) - (corner[1, 1] - corner[0, 1]) * (
        corner[2, 0] - corner[0, 0]
    )
    col_lo = max(math.ceil(min(corner[0, 0], corner[1, 0], corner[2, 0]) - band_px), 0.0)
    col_hi = min(math.floor(max(corner[0, 0], corner[1, 0], corner[2, 0]) + band_px), size - 1.0)
    row_lo = max(math.ceil(min(corner[0, 1], corner[1, 1], corner[2, 1]) - band_px), 0.0)
    row_hi = min(math.floor(max(corner[0, 1], corner[1, 1], corner[2, 1]) + band_px), size - 1.0)
    return int(col_lo), int(col_hi), int(row_lo), int(row_hi), area2


@_jit
def face_tables(corner: Any, area2: float, lines: Any, edges: Any) -> None:
    """Per-face constants. lines (3, 3): row k holds (a, b, c) with ``a col + b row + c`` the signed
    distance in pixels to line k (the edge opposite corner k, from corner k + 1 to corner k + 2),
    positive inside. edges (3, 5): row k holds edge k's start (col, row), its direction (col, row) and
    the inverse of its squared length."""
    for k in range(3):
        a_col, a_row = corner[(k + 1) % 3, 0], corner[(k + 1) % 3, 1]
        edge_col = corner[(k + 2) % 3, 0] - a_col
        edge_row = corner[(k + 2) % 3, 1] - a_row
        length = max(math.sqrt(edge_col * edge_col + edge_row * edge_row), 1e-12)
        scale = 1.0 / length if area2 > 0 else -1.0 / length
        # cross(edge, p - a) = edge_col (row - a_row) - edge_row (col - a_col)
        lines[k, 0] = -edge_row * scale
        lines[k, 1] = edge_col * scale
        lines[k, 2] = (edge_row * a_col - edge_col * a_row) * scale
        start_col, start_row = corner[k, 0], corner[k, 1]
        direction_col = corner[(k + 1) % 3, 0] - start_col
        direction_row = corner[(k + 1) % 3, 1] - start_row
        edges[k, 0] = start_col
        edges[k, 1] = start_row
        edges[k, 2] = direction_col
        edges[k, 3] = direction_row
        edges[k, 4] = 1.0 / max(direction_col * direction_col + direction_row * direction_row, 1e-20)


@_jit
def segment_sq(edges: Any, k: int, col: float, row: float) -> tuple[float, float, float, float]:
    """Squared distance from (col, row) to edge k (``face_tables``' edges), the foot's parameter t in
    [0, 1] along the edge, and the offset (col, row) - foot."""
    to_col = col - edges[k, 0]
    to_row = row - edges[k, 1]
    t = min(max((to_col * edges[k, 2] + to_row * edges[k, 3]) * edges[k, 4], 0.0), 1.0)
    off_col = to_col - t * edges[k, 2]
    off_row = to_row - t * edges[k, 3]
    return off_col * off_col + off_row * off_row, t, off_col, off_row


@_jit
def pair_value(
    lines: Any, edges: Any, col: float, row: float, band_px: float
) -> tuple[int, int, float, float, float, float]:
    """(kind, edge, squared distance in pixels, t, offset col, offset row) of pixel centre (col, row)
    and a face (module docstring; t and the offset are ``segment_sq``'s for that edge).

    kind 0: nothing; 1: inside, within the band; 2: outside, within the band; 3: deeper than the band
    inside (saturates the pixel). Outside a face only the edges whose line the pixel violates are
    measured: the nearest point of a triangle lies on one of them.
    """
    line0 = lines[0, 0] * col + lines[0, 1] * row + lines[0, 2]  # line k is edge k + 1
    line1 = lines[1, 0] * col + lines[1, 1] * row + lines[1, 2]
    line2 = lines[2, 0] * col + lines[2, 1] * row + lines[2, 2]
    inner = min(line0, line1, line2)
    if inner >= 0.0:
        if inner > band_px:
            return 3, 0, 0.0, 0.0, 0.0, 0.0
        edge = 1 if line0 <= line1 and line0 <= line2 else (2 if line1 <= line2 else 0)  # first on ties
        squared, t, off_col, off_row = segment_sq(edges, edge, col, row)
        return 1, edge, squared, t, off_col, off_row
    if inner < -band_px:
        return 0, 0, 0.0, 0.0, 0.0, 0.0
    best = math.inf
    edge = 0
    t = off_col = off_row = 0.0
    for k in range(3):
        if lines[(k + 2) % 3, 0] * col + lines[(k + 2) % 3, 1] * row + lines[(k + 2) % 3, 2] >= 0.0:
            continue  # edge k's line is not violated
        squared, t_k, off_col_k, off_row_k = segment_sq(edges, k, col, row)
        if squared < best:  # the first edge on ties
            best, edge, t, off_col, off_row = squared, k, t_k, off_col_k, off_row_k
    if best > band_px * band_px:
        return 0, 0, 0.0, 0.0, 0.0, 0.0
    return 2, edge, best, t, off_col, off_row


@_jit
def row_span(lines: Any, row: float, band_px: float, col_lo: int, col_hi: int) -> tuple[int, int]:
    """The columns of ``row`` within [col_lo, col_hi] where every line distance may be >= -band_px,
    widened by a pixel on each side (``pair_value`` decides each pixel; this only skips the box's
    corners that lie beyond the band of a line)."""
    lo = float(col_lo)
    hi = float(col_hi)
    for k in range(3):
        a = lines[k, 0]
        rest = lines[k, 1] * row + lines[k, 2] + band_px  # a col + rest >= 0
        if a > 1e-12:
            lo = max(lo, math.floor(-rest / a) - 1.0)
        elif a < -1e-12:
            hi = min(hi, math.ceil(-rest / a) + 1.0)
        elif rest < -1.0:
            return 0, -1
    return int(lo), int(hi)


@_jit
def pair_capacity(vertices: Any, faces: Any, size: int, band_px: float, near: float) -> int:
    """An upper bound on the band pairs of all images: the summed pixel boxes of the usable faces."""
    corner = np.empty((3, 2))
    count = 0
    for b in range(vertices.shape[0]):
        for f in range(faces.shape[0]):
            if usable(vertices[b], faces, f, near):
                corners_px(vertices[b], faces, f, size, corner)
                col_lo, col_hi, row_lo, row_hi, _ = face_box(corner, band_px, size)
                count += max(col_hi - col_lo + 1, 0) * max(row_hi - row_lo + 1, 0)
    return count


@_jit
def forward(vertices: Any, faces: Any, size: int, band_px: float, to_logit: float, near: float,
            log_saturation: float, total: Any, saturated: Any) -> tuple[Any, Any, Any, Any]:  # fmt: skip
    """total (B, S * S) += softplus(+-d^2 / sigma) of each band pair; saturated (B, S * S) set where a
    pixel lies deeper than the band inside a face or its total exceeds ``log_saturation``.

    Returns the band pairs, for ``backward``: flat pixel ids (N,) ``b * S * S + pixel``, the flat rows
    (N, 2) ``b * V + v`` of the start and end vertex of the pair's edge, and (N, 3) the edge parameter t
    and d(softplus) / d(x, y) of a vertex at the foot (to be split (1 - t), t between the two ends).
    """
    corner = np.empty((3, 2))
    lines = np.empty((3, 3))
    edges = np.empty((3, 5))
    capacity = pair_capacity(vertices, faces, size, band_px, near)
    pair_pixel = np.empty(capacity, dtype=np.int64)
    pair_rows = np.empty((capacity, 2), dtype=np.int64)
    pair_terms = np.empty((capacity, 3))
    count = 0
    num_vertices = vertices.shape[1]
    scale_col = size / 2.0  # d col / d x
    scale_row = -size / 2.0  # d row / d y
    for b in range(vertices.shape[0]):
        verts = vertices[b]
        for f in range(faces.shape[0]):
            if not usable(verts, faces, f, near):
                continue
            corners_px(verts, faces, f, size, corner)
            col_lo, col_hi, row_lo, row_hi, area2 = face_box(corner, band_px, size)
            if abs(area2) < 1e-9:
                continue
            face_tables(corner, area2, lines, edges)
            for row in range(row_lo, row_hi + 1):
                first, last = row_span(lines, float(row), band_px, col_lo, col_hi)
                for col in range(first, last + 1):
                    kind, k, squared, t, off_col, off_row = pair_value(
                        lines, edges, float(col), float(row), band_px
                    )
                    pixel = row * size + col
                    if kind == 3:
                        saturated[b, pixel] = True
                    elif kind != 0:
                        sign = 1.0 if kind == 1 else -1.0
                        logit = sign * squared * to_logit
                        small = math.exp(-abs(logit))
                        total[b, pixel] += max(logit, 0.0) + math.log1p(small)  # softplus(logit)
                        coverage = 1.0 / (1.0 + small) if logit >= 0.0 else small / (1.0 + small)  # sigmoid
                        # d softplus / d squared = sigmoid(logit) sign to_logit; d squared / d foot = -2 off
                        common = -2.0 * sign * to_logit * coverage
                        pair_pixel[count] = b * size * size + pixel
                        pair_rows[count, 0] = b * num_vertices + faces[f, k]
                        pair_rows[count, 1] = b * num_vertices + faces[f, (k + 1) % 3]
                        pair_terms[count, 0] = t
                        pair_terms[count, 1] = common * off_col * scale_col
                        pair_terms[count, 2] = common * off_row * scale_row
                        count += 1
        for pixel in range(size * size):
            if total[b, pixel] > log_saturation:
                saturated[b, pixel] = True
    return pair_pixel[:count], pair_rows[:count], pair_terms[:count], count


@_jit
def backward(pair_pixel: Any, pair_rows: Any, pair_terms: Any, grad_total: Any, grad: Any) -> None:
    """grad (B * V, 2) += d(sum of grad_total * total) / d(x, y) of the vertices (NDC) over the pairs of
    ``forward``, in their order; grad_total (B * S * S,) is 0 at saturated pixels, whose pairs add
    nothing."""
    for i in range(pair_pixel.shape[0]):
        upstream = grad_total[pair_pixel[i]]
        if upstream == 0.0:
            continue
        t = pair_terms[i, 0]
        start = pair_rows[i, 0]
        end = pair_rows[i, 1]
        grad[start, 0] += upstream * (1.0 - t) * pair_terms[i, 1]
        grad[start, 1] += upstream * (1.0 - t) * pair_terms[i, 2]
        grad[end, 0] += upstream * t * pair_terms[i, 1]
        grad[end, 1] += upstream * t * pair_terms[i, 2]
