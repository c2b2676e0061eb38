"""The numba loops of ``cpu_raster`` (imported only there, on first use: numba is optional):
``forward``/``backward`` (soft silhouette), ``visible`` (z-buffer), ``bary_forward``/``bary_backward``
(barycentrics and depth), ``texture_forward``/``texture_backward`` (texture lookup).

Pixel-centre units in the search loops: corner k of a face at (col, row) = ((x + 1) S / 2 - 0.5, (1 -
y) S / 2 - 0.5); edge k runs from corner k to corner k + 1 (the barycentric loops work in NDC, as
``geometry.ops.barycentric_depth``). A (face, pixel) pair is classified by
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
    area2 = triangle_area2(corner)
    # clamped on both sides before the conversion to int (a float beyond the int range has no defined
    # conversion): lo in [0, S], hi in [-1, S - 1], as the packed search clamps them
    col_lo = min(max(math.ceil(min(corner[0, 0], corner[1, 0], corner[2, 0]) - band_px), 0.0), float(size))
    col_hi = max(min(math.floor(max(corner[0, 0], corner[1, 0], corner[2, 0]) + band_px), size - 1.0), -1.0)
    row_lo = min(max(math.ceil(min(corner[0, 1], corner[1, 1], corner[2, 1]) - band_px), 0.0), float(size))
    row_hi = max(min(math.floor(max(corner[0, 1], corner[1, 1], corner[2, 1]) + band_px), size - 1.0), -1.0)
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
def prepare_face(verts: Any, faces: Any, f: int, size: int, band_px: float, near: float, corner: Any,
                 lines: Any, edges: Any) -> tuple[bool, int, int, int, int, float]:  # fmt: skip
    """Face f of one image (verts (V, 3)) for a raster loop: False for a face to skip (a corner nearer
    than ``near``, or (almost) zero area in pixels); else its corners, line and edge tables filled in,
    its pixel box enlarged by ``band_px`` (``face_box``) and twice its signed area."""
    if not usable(verts, faces, f, near):
        return False, 0, -1, 0, -1, 0.0
    corners_px(verts, faces, f, size, corner)
    col_lo, col_hi, row_lo, row_hi, area2 = face_box(corner, band_px, size)
    if abs(area2) < 1e-9:
        return False, 0, -1, 0, -1, 0.0
    face_tables(corner, area2, lines, edges)
    return True, col_lo, col_hi, row_lo, row_hi, area2


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
    if not lo <= hi:  # empty (or NaN): nothing to convert
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
            log_saturation: float, total: Any, saturated: Any) -> tuple[Any, Any, Any]:  # fmt: skip
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
            drawn, col_lo, col_hi, row_lo, row_hi, _ = prepare_face(
                verts, faces, f, size, band_px, near, corner, lines, edges
            )
            if not drawn:
                continue
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
    return pair_pixel[:count], pair_rows[:count], pair_terms[:count]


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


@_jit
def visible(vertices: Any, faces: Any, size: int, near: float, perspective: bool, winner: Any) -> None:
    """winner (B, S * S) int64: the nearest face covering each pixel centre (-1: none), by the rules of
    ``search._z_buffer``: a pixel centre is covered where every line distance is >= 0 (pixel units),
    the depth (inverse depth when ``perspective``) is interpolated linearly in screen space, and of faces
    at exactly the same depth the later one (in index order) wins."""
    corner = np.empty((3, 2))
    lines = np.empty((3, 3))
    edges = np.empty((3, 5))
    depth_at = np.empty(size * size)
    for b in range(vertices.shape[0]):
        verts = vertices[b]
        depth_at[:] = np.inf
        for f in range(faces.shape[0]):
            drawn, col_lo, col_hi, row_lo, row_hi, area2 = prepare_face(
                verts, faces, f, size, 0.0, near, corner, lines, edges
            )
            if not drawn:
                continue
            # depth (or inverse depth) as an affine function of (col, row): sum_k l_k value_k, with the
            # screen barycentric l_k = E_k / area2 and E_k the unnormalised edge function of line k
            value0 = verts[faces[f, 0], 2]
            value1 = verts[faces[f, 1], 2]
            value2 = verts[faces[f, 2], 2]
            if perspective:
                value0, value1, value2 = 1.0 / value0, 1.0 / value1, 1.0 / value2
            for row in range(row_lo, row_hi + 1):
                first, last = row_span(lines, float(row), 0.0, col_lo, col_hi)
                for col in range(first, last + 1):
                    c = float(col)
                    r = float(row)
                    line0 = lines[0, 0] * c + lines[0, 1] * r + lines[0, 2]
                    line1 = lines[1, 0] * c + lines[1, 1] * r + lines[1, 2]
                    line2 = lines[2, 0] * c + lines[2, 1] * r + lines[2, 2]
                    if line0 < 0.0 or line1 < 0.0 or line2 < 0.0:
                        continue
                    weight0 = edge_function(corner, 0, c, r) / area2
                    weight1 = edge_function(corner, 1, c, r) / area2
                    weight2 = 1.0 - weight0 - weight1
                    key = weight0 * value0 + weight1 * value1 + weight2 * value2
                    if perspective:
                        key = -key  # the nearest surface has the largest inverse depth
                    pixel = row * size + col
                    if key <= depth_at[pixel]:
                        depth_at[pixel] = key
                        winner[b, pixel] = f


@_jit
def edge_function(corner: Any, k: int, col: float, row: float) -> float:
    """E_k at (col, row): twice the signed area of the triangle (corner k + 1, corner k + 2, point), so
    that E_k / (twice the face's signed area) is the screen barycentric of corner k."""
    a_col, a_row = corner[(k + 1) % 3, 0], corner[(k + 1) % 3, 1]
    b_col, b_row = corner[(k + 2) % 3, 0], corner[(k + 2) % 3, 1]
    return (b_col - a_col) * (row - a_row) - (b_row - a_row) * (col - a_col)


@_jit
def texture_forward(
    bary: Any, face: Any, image: Any, uvs: Any, face_uvs: Any, texture: Any, out: Any
) -> None:
    """out (P, C): the texture (Bt, H, W, C) sampled bilinearly (texel centres, clamped to the edge) at
    uv = sum_k bary[p, k] uvs[face_uvs[face[p], k]] ((0, 0) at the bottom-left), from texture
    ``image[p]`` (0 when Bt is 1); ``shade.sample_texture``'s rules."""
    height, width = texture.shape[1], texture.shape[2]
    for p in range(bary.shape[0]):
        t, x0, y0, x1, y1, fx, fy = _texel_corners(bary, face, image, uvs, face_uvs, height, width, p)
        for c in range(texture.shape[3]):
            top = texture[t, y0, x0, c] * (1.0 - fx) + texture[t, y0, x1, c] * fx
            bottom = texture[t, y1, x0, c] * (1.0 - fx) + texture[t, y1, x1, c] * fx
            out[p, c] = top * (1.0 - fy) + bottom * fy


@_jit
def texture_backward(bary: Any, face: Any, image: Any, uvs: Any, face_uvs: Any, texture: Any, grad_out: Any,
                     grad_bary: Any, grad_texture: Any) -> None:  # fmt: skip
    """grad_bary (P, 3) and grad_texture (Bt, H, W, C) += the gradients of sum(grad_out * out) of
    ``texture_forward`` (the texel indices are constants, as in the PyTorch path), pixel by pixel."""
    height, width = texture.shape[1], texture.shape[2]
    for p in range(bary.shape[0]):
        t, x0, y0, x1, y1, fx, fy = _texel_corners(bary, face, image, uvs, face_uvs, height, width, p)
        d_fx = 0.0
        d_fy = 0.0
        for c in range(texture.shape[3]):
            g = grad_out[p, c]
            t00, t01 = texture[t, y0, x0, c], texture[t, y0, x1, c]
            t10, t11 = texture[t, y1, x0, c], texture[t, y1, x1, c]
            d_fx += g * ((1.0 - fy) * (t01 - t00) + fy * (t11 - t10))
            d_fy += g * ((t10 * (1.0 - fx) + t11 * fx) - (t00 * (1.0 - fx) + t01 * fx))
            grad_texture[t, y0, x0, c] += g * (1.0 - fx) * (1.0 - fy)
            grad_texture[t, y0, x1, c] += g * fx * (1.0 - fy)
            grad_texture[t, y1, x0, c] += g * (1.0 - fx) * fy
            grad_texture[t, y1, x1, c] += g * fx * fy
        # x = u W - 0.5 and y = (1 - v) H - 0.5 with (u, v) = sum_k bary_k uv_k
        d_u = d_fx * width
        d_v = -d_fy * height
        for k in range(3):
            corner = face_uvs[face[p], k]
            grad_bary[p, k] += d_u * uvs[corner, 0] + d_v * uvs[corner, 1]


@_jit
def _texel_corners(bary: Any, face: Any, image: Any, uvs: Any, face_uvs: Any, height: int, width: int,
                   p: int) -> tuple[int, int, int, int, int, float, float]:  # fmt: skip
    """The texture index, the four clamped texel corners (x0, y0, x1, y1) and the fractions (fx, fy)
    of pixel row p."""
    u = 0.0
    v = 0.0
    for k in range(3):
        corner = face_uvs[face[p], k]
        u += bary[p, k] * uvs[corner, 0]
        v += bary[p, k] * uvs[corner, 1]
    x = u * width - 0.5
    y = (1.0 - v) * height - 0.5
    x_floor = math.floor(x)
    y_floor = math.floor(y)
    fx = x - x_floor
    fy = y - y_floor
    x0 = min(max(int(x_floor), 0), width - 1)
    x1 = min(max(int(x_floor) + 1, 0), width - 1)
    y0 = min(max(int(y_floor), 0), height - 1)
    y1 = min(max(int(y_floor) + 1, 0), height - 1)
    return image[p], x0, y0, x1, y1, fx, fy


@_jit
def bary_forward(vertices: Any, faces: Any, face: Any, image: Any, col: Any, row: Any, size: int,
                 perspective: bool, bary: Any, depth: Any) -> None:  # fmt: skip
    """bary (P, 3) and depth (P,) of each visible pixel: ``geometry.ops.barycentric_depth``'s formulas
    (NDC; perspective-correct when asked) for face ``face[p]`` of image ``image[p]`` at the centre of
    pixel (row[p], col[p])."""
    xy = np.empty((3, 2))
    z = np.empty(3)
    lam = np.empty(3)  # the screen barycentrics
    for p in range(face.shape[0]):
        px, py = pixel_face(vertices, faces, face, image, col, row, size, p, xy, z)
        screen_barycentrics(xy, px, py, lam)
        if perspective:
            w0, w1, w2 = lam[0] / z[0], lam[1] / z[1], lam[2] / z[2]
            inverse = w0 + w1 + w2
            bary[p, 0], bary[p, 1], bary[p, 2] = w0 / inverse, w1 / inverse, w2 / inverse
            depth[p] = 1.0 / inverse
        else:
            bary[p, 0], bary[p, 1], bary[p, 2] = lam[0], lam[1], lam[2]
            depth[p] = lam[0] * z[0] + lam[1] * z[1] + lam[2] * z[2]


@_jit
def bary_backward(vertices: Any, faces: Any, face: Any, image: Any, col: Any, row: Any, size: int,
                  perspective: bool, grad_bary: Any, grad_depth: Any, grad: Any) -> None:  # fmt: skip
    """grad (B * V, 3) += the gradients of sum(grad_bary * bary) + sum(grad_depth * depth) of
    ``bary_forward`` with respect to the vertices (x, y and z), pixel by pixel."""
    num_vertices = vertices.shape[1]
    g_l = np.empty(3)
    g_z = np.empty(3)
    lam = np.empty(3)  # the screen barycentrics
    xy = np.empty((3, 2))
    z = np.empty(3)
    for p in range(face.shape[0]):
        px, py = pixel_face(vertices, faces, face, image, col, row, size, p, xy, z)
        area = screen_barycentrics(xy, px, py, lam)
        if perspective:
            w0, w1, w2 = lam[0] / z[0], lam[1] / z[1], lam[2] / z[2]
            inverse = w0 + w1 + w2
            weighted = (grad_bary[p, 0] * w0 + grad_bary[p, 1] * w1 + grad_bary[p, 2] * w2) / inverse
            for k in range(3):
                # b_k = w_k / W, depth = 1 / W, W = sum w: d/dw_k = (g_b_k - sum_j g_b_j b_j) / W - g_d / W^2
                g_w = (grad_bary[p, k] - weighted) / inverse - grad_depth[p] / (inverse * inverse)
                g_l[k] = g_w / z[k]  # w_k = l_k / z_k
                g_z[k] = -g_w * lam[k] / (z[k] * z[k])
        else:
            for k in range(3):
                g_l[k] = grad_bary[p, k] + grad_depth[p] * z[k]
                g_z[k] = grad_depth[p] * lam[k]
        # l_k = E_k / A: d l_k = dE_k / A - l_k dA / A
        g_area = -(g_l[0] * lam[0] + g_l[1] * lam[1] + g_l[2] * lam[2]) / area
        base = image[p] * num_vertices
        for k in range(3):
            a, b = (k + 1) % 3, (k + 2) % 3
            g_e = g_l[k] / area
            # E_k = (x_b - x_a)(py - y_a) - (y_b - y_a)(px - x_a)
            row_a = base + faces[face[p], a]
            row_b = base + faces[face[p], b]
            grad[row_a, 0] += g_e * (xy[b, 1] - py)
            grad[row_a, 1] += g_e * (px - xy[b, 0])
            grad[row_b, 0] += g_e * (py - xy[a, 1])
            grad[row_b, 1] += g_e * (xy[a, 0] - px)
        # A = (x1 - x0)(y2 - y0) - (y1 - y0)(x2 - x0), unless the face is degenerate (a constant there)
        if abs(triangle_area2(xy)) >= 1e-12:
            for k in range(3):
                a, b = (k + 1) % 3, (k + 2) % 3  # dA/dx_k = y_a - y_b, dA/dy_k = x_b - x_a
                row_k = base + faces[face[p], k]
                grad[row_k, 0] += g_area * (xy[a, 1] - xy[b, 1])
                grad[row_k, 1] += g_area * (xy[b, 0] - xy[a, 0])
        for k in range(3):
            grad[base + faces[face[p], k], 2] += g_z[k]


@_jit
def pixel_face(vertices: Any, faces: Any, face: Any, image: Any, col: Any, row: Any, size: int, p: int,
               xy: Any, z: Any) -> tuple[float, float]:  # fmt: skip
    """xy (3, 2) and z (3,) := the NDC corners of visible pixel p's face; returns the pixel centre
    (px, py) in NDC."""
    verts = vertices[image[p]]
    for k in range(3):
        v = faces[face[p], k]
        xy[k, 0] = verts[v, 0]
        xy[k, 1] = verts[v, 1]
        z[k] = verts[v, 2]
    return (2.0 * col[p] + 1.0) / size - 1.0, 1.0 - (2.0 * row[p] + 1.0) / size


@_jit
def triangle_area2(corner: Any) -> float:
    """Twice the signed area of the triangle of the (3, 2) ``corner`` rows."""
    return (corner[1, 0] - corner[0, 0]) * (corner[2, 1] - corner[0, 1]) - (corner[1, 1] - corner[0, 1]) * (
        corner[2, 0] - corner[0, 0]
    )


@_jit
def screen_barycentrics(xy: Any, px: float, py: float, lam: Any) -> float:
    """lam (3,) := the screen barycentrics of (px, py) in the triangle xy (3, 2), ``edge_function`` over
    twice the signed area, or over 1e-12 where its magnitude is below that (``barycentric_depth``);
    returns that divisor."""
    area = triangle_area2(xy)
    if abs(area) < 1e-12:
        area = 1e-12
    for k in range(3):
        lam[k] = edge_function(xy, k, px, py) / area
    return area
