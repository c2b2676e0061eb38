"""Rasterization: a non-differentiable candidate search, then differentiable geometry on the survivors.

``rasterize(vertices_ndc, faces, settings) -> Fragments`` works in two steps, like PyTorch3D's
coarse-to-fine rasterizer but in plain PyTorch so it runs unchanged on CPU, CUDA and MPS:

1. **Search (no autograd, ``backend.render.search``).** Each face's pixel box, enlarged by the soft
   band, is evaluated on a dense window; (face, pixel) pairs are classified as inside the face,
   within the band of its boundary, or too far to matter. A z-buffer picks the nearest face per
   covered pixel, and pixels whose coverage is 1 within ``dist_eps`` are marked saturated.
2. **Geometry (autograd).** Only the surviving pairs are recomputed from the vertex tensor: the
   barycentric coordinates and depth of the visible face at each covered pixel, and the squared
   distance from each band pixel to the nearest edge (chosen by the search) of each nearby face.
   Gradients therefore reach vertex positions (and through them camera parameters) exactly as in the
   all-pairs formulation, at the cost of the pairs that carry signal.

The result is a frozen ``Fragments`` in packed form (one row per covered pixel, one row per band
pair); ``backend.render.shade`` turns it into images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.geometry.mesh import check_faces
from backend.geometry.ops import barycentric_depth, gather_values, segment_sq_dist_rows
from backend.render.cpu_raster import cpu_barycentric_depth, cpu_visible_search
from backend.render.search import search
from backend.render.settings import RasterSettings


@dataclass(frozen=True)
class Fragments:
    """Rasterization result for B images of S x S pixels (pixel ids are ``b * S * S + row * S + col``).

    Packed form (``rasterize``): one row per covered pixel and per band pair. Dense form
    (``backend.render.dense.rasterize_dense``): one row per pixel and K rows per pixel for the band,
    with the masks ``covered`` and ``band_valid`` (below).

    Attributes:
        batch_size: B.
        image_size: S.
        pixel: (P,) int64 ids of the pixels a face covers (at the pixel centre).
        face: (P,) int64 index of the nearest covering face, into the shared (F, 3) face list.
        bary: (P, 3) barycentric coordinates of the pixel centre in that face (perspective-correct
            when the settings say so); differentiable in the vertices.
        depth: (P,) depth of the surface at the pixel; differentiable.
        band_pixel: (E,) int64 pixel ids of (pixel, face) pairs inside a face's soft band.
        band_face: (E,) int64 face of each band pair.
        band_signed_sq_dist: (E,) squared NDC distance from the pixel centre to the face boundary,
            positive inside the face and negative outside (SoftRas's ``sign * d^2``); differentiable.
        saturated: (B * S * S,) bool, pixels lying deeper than the band inside some face; their soft
            coverage is 1 (within ``dist_eps``) and carries no gradient.
        covered: None in packed form. In the dense form of ``backend.render.dense`` (fixed shapes, no
            host synchronisation): (P,) bool with P = B * S * S and ``pixel`` = 0..P-1, True where a
            face covers the pixel; rows where it is False hold finite placeholder values (face 0) that
            images must not show (``shade`` handles this).
        band_valid: None in packed form; dense: (E,) bool with E = P * K band slots (K per pixel, slot
            rows ``pixel * K + slot``), False for empty slots, which contribute nothing.
        band_dropped: None in packed form; dense: (P,) summed ``log(1 - coverage)`` of band faces
            beyond K (no gradient; 0 where none were dropped), added to the soft silhouette.
        band_count: None in packed form; dense: (P,) int32 band faces found per pixel (over K: overflow).
        has_visible: False when the visible surface was not searched (``rasterize(..., visible=False)``,
            for a soft silhouette alone): ``pixel``, ``face``, ``bary`` and ``depth`` are then empty (P = 0)
            and say nothing about coverage; the band fields and ``saturated`` are complete.
        In dense form ``band_face`` is int32 (0 in empty slots) and ``band_signed_sq_dist`` is 0 in empty
        slots.
    """

    batch_size: int
    image_size: int
    pixel: Tensor
    face: Tensor
    bary: Tensor
    depth: Tensor
    band_pixel: Tensor
    band_face: Tensor
    band_signed_sq_dist: Tensor
    saturated: Tensor
    covered: Tensor | None = None
    band_valid: Tensor | None = None
    band_dropped: Tensor | None = None
    band_count: Tensor | None = None
    has_visible: bool = True

    @property
    def num_pixels(self) -> int:
        """B * S * S."""
        return self.batch_size * self.image_size * self.image_size


def check_vertex_shape(vertices: Tensor) -> None:
    """Raise ``ValueError`` unless vertices are a non-empty floating-point (B, V, 3) tensor (no host read)."""
    if vertices.dim() != 3 or vertices.shape[2] != 3:
        raise ValueError(f"vertices must have shape (B, V, 3), got {tuple(vertices.shape)}")
    if vertices.shape[0] == 0 or vertices.shape[1] == 0:
        raise ValueError(f"vertices is empty (shape {tuple(vertices.shape)})")
    if not vertices.is_floating_point():
        raise ValueError(f"vertices must be floating point, got {vertices.dtype}")


def validate_vertices(vertices: Tensor, faces: Tensor) -> None:
    """Raise ``ValueError`` unless vertices (B, V, 3) are finite and faces (F, 3) index them."""
    check_vertex_shape(vertices)
    if not torch.isfinite(vertices).all():
        raise ValueError("vertices contain NaN or infinite values")
    check_faces(faces, vertices.shape[1])


def _pixel_centres_ndc(col: Tensor, row: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """NDC coordinates of the centres of pixels (row, col): y up, (0, 0) pixel at the top-left."""
    return (2.0 * col + 1.0) / size - 1.0, 1.0 - (2.0 * row + 1.0) / size


def rasterize(
    vertices_ndc: Tensor,
    faces: Tensor,
    settings: RasterSettings,
    *,
    visible: bool = True,
    compiled: bool = False,
) -> Fragments:
    """Rasterize B meshes that share ``faces``.

    Args:
        vertices_ndc: (B, V, 3) x_ndc, y_ndc (y up) and depth (> 0 in front of the camera).
        faces: (F, 3) int64 vertex indices shared by the batch.
        settings: image size and soft-silhouette parameters.
        visible: find the visible face of each covered pixel (its barycentrics and depth). False skips
            the z-buffer and that geometry, for callers that read only the soft silhouette: the
            fragments then have ``has_visible`` False and empty visible-surface fields.
        compiled: find the visible surface with the CPU's numba loop (``cpu_raster.cpu_visible_search``)
            and no soft-band pairs: the band fields are empty and nothing is saturated (the numba
            backend's full render, which makes the soft silhouette with ``cpu_soft_silhouette``).
    Returns:
        Fragments with the visible face per covered pixel and the soft-band pairs. Faces with a
        corner nearer than ``settings.near`` and faces of zero projected area are skipped.
    """
    validate_vertices(vertices_ndc, faces)
    batch = vertices_ndc.shape[0]
    num_faces = faces.shape[0]
    size = settings.image_size
    faces = faces.to(vertices_ndc.device)

    with torch.no_grad():
        if compiled:
            found = cpu_visible_search(vertices_ndc, faces, settings)
        else:
            found = search(vertices_ndc.detach()[:, faces], settings, visible=visible)

    # Differentiable geometry of the surviving pairs, gathered straight from the (B * V, 3) vertex rows
    # by ``gather_values`` and ``segment_sq_dist_rows``, whose gradients do not depend on the thread
    # count or the run (that of ``vertices_ndc[:, faces]``, ``index_put_(accumulate=True)``, races on a
    # CPU with 3+ threads; ``index_add_`` races on CUDA).
    num_vertices = vertices_ndc.shape[1]
    flat_vertices = vertices_ndc.reshape(batch * num_vertices, 3)
    image_offset = torch.arange(batch, device=faces.device)[:, None, None] * num_vertices
    corner_row = (faces + image_offset).reshape(batch * num_faces, 3)  # (B * F, 3) rows of flat_vertices
    if visible and compiled:
        bary, depth = cpu_barycentric_depth(vertices_ndc, faces, found, settings)
    elif visible:
        # the visible face's corners as flat (P,) columns: arithmetic on them, and its backward, runs at
        # full vector speed, where the columns of a (P, 3, 3) gather are strided
        visible_rows = [corner_row[:, k].index_select(0, found.visible_face) for k in range(3)]  # 3 x (P,)
        x, y, z = ([gather_values(flat_vertices[:, c], rows) for rows in visible_rows] for c in range(3))
        vx, vy = _pixel_centres_ndc(found.visible_col, found.visible_row, size)
        bary, depth = barycentric_depth(x, y, z, vx, vy, settings.perspective_correct)
    else:  # no visible surface: empty (0, 3) and (0,)
        bary = vertices_ndc.new_zeros((0, 3))
        depth = vertices_ndc.new_zeros((0,))

    # distance to the nearest edge of each band pair (chosen by the search): edge k runs corner k -> k + 1
    face_in_mesh = torch.arange(num_faces, device=faces.device).repeat(batch)  # (B * F,) flat id -> f
    band_face_id = found.band_face
    corner_of = corner_row.flatten()  # (B * F * 3,) rows of flat_vertices
    first = band_face_id * 3  # (E,)
    next_corner = torch.tensor([1, 2, 0], device=first.device).index_select(0, found.band_edge)
    bx, by = _pixel_centres_ndc(found.band_col, found.band_row, size)
    band_signed_sq_dist = segment_sq_dist_rows(
        flat_vertices[:, 0],
        flat_vertices[:, 1],
        corner_of.index_select(0, first + found.band_edge),
        corner_of.index_select(0, first.add_(next_corner)),
        bx,
        by,
        ~found.band_inside,
    )

    return Fragments(
        batch_size=batch,
        image_size=size,
        pixel=found.visible_pixel,
        face=face_in_mesh.index_select(0, found.visible_face),
        bary=bary,
        depth=depth,
        band_pixel=found.band_pixel,
        band_face=face_in_mesh.index_select(0, band_face_id),
        band_signed_sq_dist=band_signed_sq_dist,
        saturated=found.saturated,
        has_visible=visible,
    )
