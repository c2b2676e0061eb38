"""The Triton kernel of ``backend.render.triton_search`` (imported only by it, and only when it runs).

This module imports ``triton`` at import time, and ``triton.jit`` decides when it decorates the kernel
whether it runs compiled (CUDA) or in Triton's NumPy interpreter (``TRITON_INTERPRET=1``), so the
variable must be set before this module is first imported.

``search_kernel`` runs one program per tile of TILE_H x TILE_W pixels of one image (grid: tiles,
images) and loops over all faces of that image in blocks of BLOCK_F, evaluating (pixel, face) pairs
as [BLOCK_P, BLOCK_F] tensors; face blocks whose pixel boxes (enlarged by the band) miss the tile are
skipped. Everything it computes is a fixed-shape output; see ``triton_search.search_dense`` for their
meaning. Geometry conventions are those of ``backend.render.search``: pixel-centre units (col right,
row down), line k opposite corner k, edge k from corner k to corner k + 1, the depth key is depth for
orthographic cameras and minus the perspective-correct inverse depth for look-at cameras.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _sigmoid(logit):
    """``1 / (1 + exp(-logit))`` with logits clamped at -80, as ``backend.render.search.sigmoid``."""
    return 1.0 / (1.0 + tl.exp(-tl.maximum(logit, -80.0)))


@triton.jit
def _seg_sq(px, py, sx, sy, ex, ey):
    """Squared distance [P, F] from points px, py [P, 1] to segments (sx, sy) -> (ex, ey) [1, F]."""
    edge_x = ex - sx
    edge_y = ey - sy
    to_x = px - sx
    to_y = py - sy
    length_sq = tl.maximum(edge_x * edge_x + edge_y * edge_y, 1e-20)
    t = tl.minimum(tl.maximum((to_x * edge_x + to_y * edge_y) / length_sq, 0.0), 1.0)
    off_x = to_x - t * edge_x
    off_y = to_y - t * edge_y
    return off_x * off_x + off_y * off_y


@triton.jit
def search_kernel(
    vertices_ptr,  # (B, V, 3) float NDC vertices, contiguous
    faces_ptr,  # (F, 3) int64, contiguous
    visible_rows_ptr,  # out (B*S*S, 3) int64: rows b*V + faces[f] of the visible face, 0 where none
    visible_face_ptr,  # out (B*S*S,) int64: visible face f, -1 where none
    band_face_ptr,  # out (B*S*S, K) int32: band face f per slot (slots >= count unwritten)
    band_start_ptr,  # out (B*S*S, K) int32: row b*V + faces[f, edge] of the nearest edge's start
    band_end_ptr,  # out (B*S*S, K) int32: row of its end corner faces[f, (edge + 1) % 3]
    band_inside_ptr,  # out (B*S*S, K) int8: 1 when the pixel centre is inside the face
    band_count_ptr,  # out (B*S*S,) int32: band pairs found (may exceed K: overflow)
    saturated_ptr,  # out (B*S*S,) int8: coverage within dist_eps of 1
    dropped_ptr,  # out (B*S*S,) float: sum of log(1 - coverage) of the pairs beyond K
    num_vertices,
    num_faces,
    size,
    band_px,  # band half-width in pixels
    to_logit,  # squared pixel distance -> d^2 / sigma
    log_eps,  # log(dist_eps)
    near,
    PERSPECTIVE: tl.constexpr,
    SOFT: tl.constexpr,
    K: tl.constexpr,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    BLOCK_P: tl.constexpr = TILE_H * TILE_W
    tile = tl.program_id(0)
    image = tl.program_id(1)
    tiles_per_row = tl.cdiv(size, TILE_W)
    tile_row0 = (tile // tiles_per_row) * TILE_H
    tile_col0 = (tile % tiles_per_row) * TILE_W
    p = tl.arange(0, BLOCK_P)
    prow = tile_row0 + p // TILE_W  # [P]
    pcol = tile_col0 + p % TILE_W
    in_image = (prow < size) & (pcol < size)
    pixel = image.to(tl.int64) * size * size + prow * size + pcol  # [P] global pixel id
    colf = pcol.to(tl.float32)[:, None]  # [P, 1]
    rowf = prow.to(tl.float32)[:, None]
    # the tile's pixel box, for culling faces
    box_col_lo = tile_col0.to(tl.float32)
    box_col_hi = (tile_col0 + TILE_W - 1).to(tl.float32)
    box_row_lo = tile_row0.to(tl.float32)
    box_row_hi = (tile_row0 + TILE_H - 1).to(tl.float32)
    half = size * 0.5

    best = tl.full([BLOCK_P], float("inf"), tl.float32)
    best_face = tl.full([BLOCK_P], -1, tl.int32)
    deep = tl.zeros([BLOCK_P], tl.int32)
    total = tl.zeros([BLOCK_P], tl.float32)
    dropped = tl.zeros([BLOCK_P], tl.float32)
    count = tl.zeros([BLOCK_P], tl.int32)
    vbase = image.to(tl.int64) * num_vertices
    for f0 in range(0, num_faces, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)  # [F]
        fmask = f < num_faces
        i0 = tl.load(faces_ptr + f * 3 + 0, mask=fmask, other=0)
        i1 = tl.load(faces_ptr + f * 3 + 1, mask=fmask, other=0)
        i2 = tl.load(faces_ptr + f * 3 + 2, mask=fmask, other=0)
        x0 = tl.load(vertices_ptr + (vbase + i0) * 3 + 0, mask=fmask, other=0.0).to(tl.float32)
        y0 = tl.load(vertices_ptr + (vbase + i0) * 3 + 1, mask=fmask, other=0.0).to(tl.float32)
        z0 = tl.load(vertices_ptr + (vbase + i0) * 3 + 2, mask=fmask, other=1.0).to(tl.float32)
        x1 = tl.load(vertices_ptr + (vbase + i1) * 3 + 0, mask=fmask, other=0.0).to(tl.float32)
        y1 = tl.load(vertices_ptr + (vbase + i1) * 3 + 1, mask=fmask, other=0.0).to(tl.float32)
        z1 = tl.load(vertices_ptr + (vbase + i1) * 3 + 2, mask=fmask, other=1.0).to(tl.float32)
        x2 = tl.load(vertices_ptr + (vbase + i2) * 3 + 0, mask=fmask, other=0.0).to(tl.float32)
        y2 = tl.load(vertices_ptr + (vbase + i2) * 3 + 1, mask=fmask, other=0.0).to(tl.float32)
        z2 = tl.load(vertices_ptr + (vbase + i2) * 3 + 2, mask=fmask, other=1.0).to(tl.float32)
        # corners in pixel-centre units
        c0 = (x0 + 1.0) * half - 0.5
        c1 = (x1 + 1.0) * half - 0.5
        c2 = (x2 + 1.0) * half - 0.5
        r0 = (1.0 - y0) * half - 0.5
        r1 = (1.0 - y1) * half - 0.5
        r2 = (1.0 - y2) * half - 0.5
        # line k (opposite corner k) runs corner k+1 -> k+2:
        # E_k = -er col + ec row + (er c_{k+1} - ec r_{k+1}) with (ec, er) = corner k+2 - corner k+1
        a0 = -(r2 - r1)
        b0 = c2 - c1
        e0 = (r2 - r1) * c1 - (c2 - c1) * r1
        a1 = -(r0 - r2)
        b1 = c0 - c2
        e1 = (r0 - r2) * c2 - (c0 - c2) * r2
        a2 = -(r1 - r0)
        b2 = c1 - c0
        e2 = (r1 - r0) * c0 - (c1 - c0) * r0
        area2 = a0 * c0 + b0 * r0 + e0
        valid = fmask & (tl.abs(area2) >= 1e-9) & (z0 > near) & (z1 > near) & (z2 > near)
        # cull faces whose box, enlarged by the band, misses the tile
        lo_c = tl.minimum(tl.minimum(c0, c1), c2) - band_px
        hi_c = tl.maximum(tl.maximum(c0, c1), c2) + band_px
        lo_r = tl.minimum(tl.minimum(r0, r1), r2) - band_px
        hi_r = tl.maximum(tl.maximum(r0, r1), r2) + band_px
        hit = valid & (lo_c <= box_col_hi) & (hi_c >= box_col_lo)
        hit = hit & (lo_r <= box_row_hi) & (hi_r >= box_row_lo)
        if tl.max(hit.to(tl.int32), axis=0) > 0:
            safe_area = tl.where(tl.abs(area2) >= 1e-9, area2, 1.0)
            sgn = tl.where(safe_area > 0, 1.0, -1.0)
            s0 = sgn / tl.maximum(tl.sqrt(a0 * a0 + b0 * b0), 1e-12)
            s1 = sgn / tl.maximum(tl.sqrt(a1 * a1 + b1 * b1), 1e-12)
            s2 = sgn / tl.maximum(tl.sqrt(a2 * a2 + b2 * b2), 1e-12)
            d0 = (a0 * s0)[None, :] * colf + (b0 * s0)[None, :] * rowf + (e0 * s0)[None, :]  # [P, F]
            d1 = (a1 * s1)[None, :] * colf + (b1 * s1)[None, :] * rowf + (e1 * s1)[None, :]
            d2 = (a2 * s2)[None, :] * colf + (b2 * s2)[None, :] * rowf + (e2 * s2)[None, :]
            inner = tl.minimum(tl.minimum(d0, d1), d2)
            ok = hit[None, :] & in_image[:, None]
            # z-buffer: depth (or minus inverse depth) is affine in the pixel position
            if PERSPECTIVE:
                w0 = (1.0 / z0) / safe_area
                w1 = (1.0 / z1) / safe_area
                w2 = (1.0 / z2) / safe_area
            else:
                w0 = z0 / safe_area
                w1 = z1 / safe_area
                w2 = z2 / safe_area
            da = a0 * w0 + a1 * w1 + a2 * w2
            db = b0 * w0 + b1 * w1 + b2 * w2
            dc = e0 * w0 + e1 * w1 + e2 * w2
            key = da[None, :] * colf + db[None, :] * rowf + dc[None, :]
            if PERSPECTIVE:
                key = -key
            key = tl.where(ok & (inner >= 0.0), key, float("inf"))
            tile_best = tl.min(key, axis=1)
            tile_arg = tl.argmin(key, axis=1)
            better = tile_best < best
            best = tl.where(better, tile_best, best)
            best_face = tl.where(better, f0 + tile_arg, best_face)
            if SOFT:
                deep = tl.maximum(deep, tl.max((ok & (inner > band_px)).to(tl.int32), axis=1))
                inside_band = ok & (inner >= 0.0) & (inner <= band_px)
                maybe = ok & (inner < 0.0) & (inner >= -band_px)
                # exact distance to the three edges (edge k: corner k -> k + 1) for pairs outside
                q0 = _seg_sq(colf, rowf, c0[None, :], r0[None, :], c1[None, :], r1[None, :])
                q1 = _seg_sq(colf, rowf, c1[None, :], r1[None, :], c2[None, :], r2[None, :])
                q2 = _seg_sq(colf, rowf, c2[None, :], r2[None, :], c0[None, :], r0[None, :])
                outside_sq = tl.minimum(tl.minimum(q0, q1), q2)
                outside_edge = tl.where((q0 <= q1) & (q0 <= q2), 0, tl.where(q1 <= q2, 1, 2))
                # inside, the nearest edge is the nearest line: line k is edge k + 1
                nearest_line = tl.where((d0 <= d1) & (d0 <= d2), 0, tl.where(d1 <= d2, 1, 2))
                inside_edge = tl.where(nearest_line == 2, 0, nearest_line + 1)
                band = inside_band | (maybe & (outside_sq <= band_px * band_px))
                edge = tl.where(inside_band, inside_edge, outside_edge)
                inside_cov = tl.minimum(_sigmoid(inner * inner * to_logit), 1.0 - 1e-7)
                outside_cov = _sigmoid(-outside_sq * to_logit)
                log_uncovered = tl.where(
                    band, tl.log(1.0 - tl.where(inside_band, inside_cov, outside_cov)), 0.0
                )
                total += tl.sum(log_uncovered, axis=1)
                hits = band.to(tl.int32)
                slot = count[:, None] + tl.cumsum(hits, axis=1) - 1  # [P, F]
                store = band & (slot < K)
                dropped += tl.sum(tl.where(band & (slot >= K), log_uncovered, 0.0), axis=1)
                count += tl.sum(hits, axis=1)
                out = pixel[:, None] * K + slot
                fi = f[None, :] + tl.zeros([BLOCK_P, BLOCK_F], tl.int32)
                start_index = tl.where(edge == 0, i0[None, :], tl.where(edge == 1, i1[None, :], i2[None, :]))
                end_index = tl.where(edge == 0, i1[None, :], tl.where(edge == 1, i2[None, :], i0[None, :]))
                tl.store(band_face_ptr + out, fi, mask=store)
                tl.store(band_start_ptr + out, (vbase + start_index).to(tl.int32), mask=store)
                tl.store(band_end_ptr + out, (vbase + end_index).to(tl.int32), mask=store)
                tl.store(band_inside_ptr + out, inside_band.to(tl.int8), mask=store)

    covered = best_face >= 0
    safe_face = tl.where(covered, best_face, 0)
    for k in tl.static_range(3):
        corner = tl.load(faces_ptr + safe_face * 3 + k, mask=in_image & covered, other=0)
        tl.store(visible_rows_ptr + pixel * 3 + k, tl.where(covered, vbase + corner, 0), mask=in_image)
    tl.store(visible_face_ptr + pixel, best_face.to(tl.int64), mask=in_image)
    saturated = (deep > 0) | (total < log_eps)
    tl.store(saturated_ptr + pixel, saturated.to(tl.int8), mask=in_image)
    tl.store(band_count_ptr + pixel, count, mask=in_image)
    tl.store(dropped_ptr + pixel, dropped, mask=in_image)


@triton.jit
def _pixel_centre(pixel, size, vertices_ptr):
    """NDC centre (x, y) of pixel ids ``b * S * S + row * S + col`` (y up, row 0 at the top), in the
    vertices' float type."""
    in_image = pixel % (size * size)
    col = (in_image % size).to(vertices_ptr.dtype.element_ty)
    row = (in_image // size).to(vertices_ptr.dtype.element_ty)
    return (2.0 * col + 1.0) / size - 1.0, 1.0 - (2.0 * row + 1.0) / size


@triton.jit
def _visible_corners(visible_rows_ptr, vertices_ptr, pixel, covered):
    """Vertex rows r0..r2 and corners (x, y, z) of the visible face at each pixel of a block.

    Pixels no face covers get the rows 0 and the unit triangle (0, 0), (1, 0), (0, 1) at depth 1, so
    their (unused) barycentrics stay finite.
    """
    r0 = tl.load(visible_rows_ptr + pixel * 3 + 0, mask=covered, other=0)
    r1 = tl.load(visible_rows_ptr + pixel * 3 + 1, mask=covered, other=0)
    r2 = tl.load(visible_rows_ptr + pixel * 3 + 2, mask=covered, other=0)
    x0 = tl.load(vertices_ptr + r0 * 3 + 0, mask=covered, other=0.0)
    y0 = tl.load(vertices_ptr + r0 * 3 + 1, mask=covered, other=0.0)
    z0 = tl.load(vertices_ptr + r0 * 3 + 2, mask=covered, other=1.0)
    x1 = tl.load(vertices_ptr + r1 * 3 + 0, mask=covered, other=1.0)
    y1 = tl.load(vertices_ptr + r1 * 3 + 1, mask=covered, other=0.0)
    z1 = tl.load(vertices_ptr + r1 * 3 + 2, mask=covered, other=1.0)
    x2 = tl.load(vertices_ptr + r2 * 3 + 0, mask=covered, other=0.0)
    y2 = tl.load(vertices_ptr + r2 * 3 + 1, mask=covered, other=1.0)
    z2 = tl.load(vertices_ptr + r2 * 3 + 2, mask=covered, other=1.0)
    return r0, r1, r2, x0, y0, z0, x1, y1, z1, x2, y2, z2


@triton.jit
def geometry_forward_kernel(
    vertices_ptr,  # (B*V, 3) float vertex rows (NDC x, y, depth), contiguous
    visible_rows_ptr,  # (P, 3) int64 corner rows of the visible face
    visible_face_ptr,  # (P,) int64, -1 where no face covers the pixel
    band_start_ptr,  # (P, K) int32 start row of each slot's nearest edge
    band_end_ptr,  # (P, K) int32 end row
    band_inside_ptr,  # (P, K) int8
    band_count_ptr,  # (P,) int32
    saturated_ptr,  # (P,) int8
    bary_ptr,  # out (P, 3): barycentrics (perspective-correct if PERSPECTIVE), 0 where uncovered
    depth_ptr,  # out (P,): depth, 0 where uncovered
    signed_ptr,  # out (P, K): +-squared NDC distance to the nearest edge (+ inside), 0 in empty slots
    valid_ptr,  # out (P, K) bool: the slot holds a band face (and the pixel is not saturated)
    num_pixels,
    size,
    PERSPECTIVE: tl.constexpr,
    K: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pixel = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = pixel < num_pixels
    px, py = _pixel_centre(pixel, size, vertices_ptr)
    covered = live & (tl.load(visible_face_ptr + pixel, mask=live, other=-1) >= 0)
    _r0, _r1, _r2, x0, y0, z0, x1, y1, z1, x2, y2, z2 = _visible_corners(
        visible_rows_ptr, vertices_ptr, pixel, covered
    )
    area2 = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    area2 = tl.where(tl.abs(area2) < 1e-12, 1e-12, area2)
    l0 = ((x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)) / area2
    l1 = ((x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)) / area2
    l2 = ((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)) / area2
    if PERSPECTIVE:
        w0 = l0 / z0
        w1 = l1 / z1
        w2 = l2 / z2
        inverse = w0 + w1 + w2
        b0 = w0 / inverse
        b1 = w1 / inverse
        b2 = w2 / inverse
        depth = 1.0 / inverse
    else:
        b0 = l0
        b1 = l1
        b2 = l2
        depth = l0 * z0 + l1 * z1 + l2 * z2
    tl.store(bary_ptr + pixel * 3 + 0, tl.where(covered, b0, 0.0), mask=live)
    tl.store(bary_ptr + pixel * 3 + 1, tl.where(covered, b1, 0.0), mask=live)
    tl.store(bary_ptr + pixel * 3 + 2, tl.where(covered, b2, 0.0), mask=live)
    tl.store(depth_ptr + pixel, tl.where(covered, depth, 0.0), mask=live)

    count = tl.load(band_count_ptr + pixel, mask=live, other=0)
    unsaturated = tl.load(saturated_ptr + pixel, mask=live, other=1) == 0
    for slot in tl.static_range(K):
        valid = live & unsaturated & (slot < count)
        at = pixel * K + slot
        s = tl.load(band_start_ptr + at, mask=valid, other=0).to(tl.int64)
        e = tl.load(band_end_ptr + at, mask=valid, other=0).to(tl.int64)
        sx = tl.load(vertices_ptr + s * 3 + 0, mask=valid, other=0.0)
        sy = tl.load(vertices_ptr + s * 3 + 1, mask=valid, other=0.0)
        ex = tl.load(vertices_ptr + e * 3 + 0, mask=valid, other=1.0) - sx
        ey = tl.load(vertices_ptr + e * 3 + 1, mask=valid, other=0.0) - sy
        tx = px - sx
        ty = py - sy
        length_sq = tl.maximum(ex * ex + ey * ey, 1e-20)
        t = tl.minimum(tl.maximum((tx * ex + ty * ey) / length_sq, 0.0), 1.0)
        ox = tx - t * ex
        oy = ty - t * ey
        sq = ox * ox + oy * oy
        inside = tl.load(band_inside_ptr + at, mask=valid, other=0) != 0
        tl.store(signed_ptr + at, tl.where(valid, tl.where(inside, sq, -sq), 0.0), mask=live)
        tl.store(valid_ptr + at, valid, mask=live)


@triton.jit
def geometry_backward_kernel(
    vertices_ptr,
    visible_rows_ptr,
    visible_face_ptr,
    band_start_ptr,
    band_end_ptr,
    band_inside_ptr,
    band_count_ptr,
    saturated_ptr,
    grad_bary_ptr,  # (P, 3) contiguous
    grad_depth_ptr,  # (P,)
    grad_signed_ptr,  # (P, K) contiguous
    grad_vertices_ptr,  # out (B*V, 3), zero-initialised: gradients are added atomically
    num_pixels,
    size,
    PERSPECTIVE: tl.constexpr,
    K: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The gradient of ``geometry_forward_kernel``'s bary, depth and signed outputs to the vertex rows.

    Each term is the chain rule of the forward formulas, as autograd would take it (clamps pass the
    gradient where their bound is not active), added to the rows with atomics.
    """
    pixel = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = pixel < num_pixels
    px, py = _pixel_centre(pixel, size, vertices_ptr)
    covered = live & (tl.load(visible_face_ptr + pixel, mask=live, other=-1) >= 0)
    r0, r1, r2, x0, y0, z0, x1, y1, z1, x2, y2, z2 = _visible_corners(
        visible_rows_ptr, vertices_ptr, pixel, covered
    )
    raw_area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    area_active = tl.abs(raw_area) >= 1e-12
    area2 = tl.where(area_active, raw_area, 1e-12)
    e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    l0 = e0 / area2
    l1 = e1 / area2
    l2 = e2 / area2
    gb0 = tl.load(grad_bary_ptr + pixel * 3 + 0, mask=covered, other=0.0)
    gb1 = tl.load(grad_bary_ptr + pixel * 3 + 1, mask=covered, other=0.0)
    gb2 = tl.load(grad_bary_ptr + pixel * 3 + 2, mask=covered, other=0.0)
    gd = tl.load(grad_depth_ptr + pixel, mask=covered, other=0.0)
    if PERSPECTIVE:
        w0 = l0 / z0
        w1 = l1 / z1
        w2 = l2 / z2
        inverse = w0 + w1 + w2
        g_inverse = -(gd + gb0 * w0 + gb1 * w1 + gb2 * w2) / (inverse * inverse)
        gw0 = gb0 / inverse + g_inverse
        gw1 = gb1 / inverse + g_inverse
        gw2 = gb2 / inverse + g_inverse
        gl0 = gw0 / z0
        gl1 = gw1 / z1
        gl2 = gw2 / z2
        gz0 = -gw0 * w0 / z0
        gz1 = -gw1 * w1 / z1
        gz2 = -gw2 * w2 / z2
    else:
        gl0 = gb0 + gd * z0
        gl1 = gb1 + gd * z1
        gl2 = gb2 + gd * z2
        gz0 = gd * l0
        gz1 = gd * l1
        gz2 = gd * l2
    # l_k = E_k / A: dL/dE_k = gl_k / A, dL/dA = -sum_k gl_k l_k / A (when A is not clamped)
    ge0 = gl0 / area2
    ge1 = gl1 / area2
    ge2 = gl2 / area2
    ga = tl.where(area_active, -(gl0 * l0 + gl1 * l1 + gl2 * l2) / area2, 0.0)
    # E_k = (xb - xa)(py - ya) - (yb - ya)(px - xa) with a = corner k+1, b = corner k+2:
    # dE/dxa = yb - py, dE/dya = px - xb, dE/dxb = py - ya, dE/dyb = xa - px;
    # A: dA/dx_k = y_{k+1} - y_{k+2}, dA/dy_k = x_{k+2} - x_{k+1}
    gx0 = ge1 * (py - y2) + ge2 * (y1 - py) + ga * (y1 - y2)
    gy0 = ge1 * (x2 - px) + ge2 * (px - x1) + ga * (x2 - x1)
    gx1 = ge0 * (y2 - py) + ge2 * (py - y0) + ga * (y2 - y0)
    gy1 = ge0 * (px - x2) + ge2 * (x0 - px) + ga * (x0 - x2)
    gx2 = ge0 * (py - y1) + ge1 * (y0 - py) + ga * (y0 - y1)
    gy2 = ge0 * (x1 - px) + ge1 * (px - x0) + ga * (x1 - x0)
    tl.atomic_add(grad_vertices_ptr + r0 * 3 + 0, gx0, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r0 * 3 + 1, gy0, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r0 * 3 + 2, gz0, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r1 * 3 + 0, gx1, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r1 * 3 + 1, gy1, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r1 * 3 + 2, gz1, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r2 * 3 + 0, gx2, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r2 * 3 + 1, gy2, mask=covered)
    tl.atomic_add(grad_vertices_ptr + r2 * 3 + 2, gz2, mask=covered)

    count = tl.load(band_count_ptr + pixel, mask=live, other=0)
    unsaturated = tl.load(saturated_ptr + pixel, mask=live, other=1) == 0
    for slot in tl.static_range(K):
        valid = live & unsaturated & (slot < count)
        at = pixel * K + slot
        s = tl.load(band_start_ptr + at, mask=valid, other=0).to(tl.int64)
        e = tl.load(band_end_ptr + at, mask=valid, other=0).to(tl.int64)
        sx = tl.load(vertices_ptr + s * 3 + 0, mask=valid, other=0.0)
        sy = tl.load(vertices_ptr + s * 3 + 1, mask=valid, other=0.0)
        ex = tl.load(vertices_ptr + e * 3 + 0, mask=valid, other=1.0) - sx
        ey = tl.load(vertices_ptr + e * 3 + 1, mask=valid, other=0.0) - sy
        tx = px - sx
        ty = py - sy
        raw_length_sq = ex * ex + ey * ey
        length_active = raw_length_sq >= 1e-20
        length_sq = tl.maximum(raw_length_sq, 1e-20)
        dot = tx * ex + ty * ey
        raw_t = dot / length_sq
        t_active = (raw_t >= 0.0) & (raw_t <= 1.0)
        t = tl.minimum(tl.maximum(raw_t, 0.0), 1.0)
        ox = tx - t * ex
        oy = ty - t * ey
        inside = tl.load(band_inside_ptr + at, mask=valid, other=0) != 0
        g_signed = tl.load(grad_signed_ptr + at, mask=valid, other=0.0)
        g_sq = tl.where(inside, g_signed, -g_signed)
        gox = 2.0 * g_sq * ox
        goy = 2.0 * g_sq * oy
        g_t = tl.where(t_active, -(gox * ex + goy * ey), 0.0)
        g_dot = g_t / length_sq
        g_length_sq = tl.where(length_active, -g_t * raw_t / length_sq, 0.0)
        gtx = gox + g_dot * ex
        gty = goy + g_dot * ey
        gex = -t * gox + g_dot * tx + 2.0 * g_length_sq * ex
        gey = -t * goy + g_dot * ty + 2.0 * g_length_sq * ey
        tl.atomic_add(grad_vertices_ptr + s * 3 + 0, -gtx - gex, mask=valid)
        tl.atomic_add(grad_vertices_ptr + s * 3 + 1, -gty - gey, mask=valid)
        tl.atomic_add(grad_vertices_ptr + e * 3 + 0, gex, mask=valid)
        tl.atomic_add(grad_vertices_ptr + e * 3 + 1, gey, mask=valid)
