"""What a method's report says about a fitted mesh: its silhouette IoU and its topology id.

- ``reprojection_iou(vertices, faces, camera, mask, resolution)``: hard silhouette IoU of the mesh seen
  by its camera against the crop mask (the report's ``silhouette_iou``).
- ``topology_id(mesh)``: a short id of the mesh's UV layout (the report's ``template``): meshes with the
  same id share their texture layout, so textures move between them by copying.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import torch
from torch import Tensor

from backend.fitting.targets import resized_mask
from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.geometry.metrics import mask_iou
from backend.geometry.templates import icosphere_template, uv_sphere_template
from backend.render.renderer import render
from backend.render.settings import RasterSettings

UV_ID_GRID = 2.0**16
"""UV coordinates are rounded to 1 / ``UV_ID_GRID`` (about 1.5e-5) before ``topology_id`` hashes them."""


@torch.no_grad()
def reprojection_iou(
    vertices: Tensor, faces: Tensor, camera: Camera, mask: np.ndarray, resolution: int
) -> float:
    """Hard silhouette IoU of a mesh (V, 3), (F, 3) seen by a batch-of-one ``camera`` against the crop mask
    (S, S), both at ``resolution`` pixels (the mask area-resized, then thresholded at 0.5): the report's
    ``silhouette_iou``."""
    settings = RasterSettings(resolution, soft=False)
    hard = render(vertices, faces, camera.to(vertices.device), settings, outputs="alpha").alpha[0, ..., 0]
    target = resized_mask(mask, resolution) > 0.5
    return float(mask_iou(hard, torch.from_numpy(target).to(hard), soft=False))


def uv_layout_key(mesh: TexturedMesh) -> bytes:
    """The mesh's UV faces in a canonical form: (F, 6) int64 rows, as bytes.

    Each face is its three UV corners, rounded to 1 / ``UV_ID_GRID`` and rotated (winding kept) to
    the lexicographically smallest of its three rotations; the rows are sorted. That is the faces'
    connectivity as the UV map sees it (faces sharing a UV corner share its coordinates) and the UV
    layout, but none of the vertex numbering, the face order or how seams split vertices. Before
    rounding, ``v -> 1 - (1 - v)`` in float32 (exact for v >= 0.5 and idempotent) removes the last-bit
    noise of the glTF V flip (``1 - v``) done by the backend's writer, Blender and back, so a result
    that went through Blender hashes exactly as before.
    """
    one = np.float32(1.0)
    uvs = mesh.uvs.detach().cpu().numpy().astype(np.float32)
    uvs = one - (one - uvs)
    quantised = np.rint(uvs.astype(np.float64) * UV_ID_GRID).astype(np.int64)  # (T, 2)
    corners = quantised[mesh.face_uvs.detach().cpu().numpy()]  # (F, 3, 2)
    rotations = np.stack([np.roll(corners, -shift, axis=1).reshape(-1, 6) for shift in range(3)], 1)
    candidate = np.ones(rotations.shape[:2], dtype=bool)  # (F, 3): rotations still tied for smallest
    for column in range(6):
        values = np.where(candidate, rotations[:, :, column], np.iinfo(np.int64).max)
        candidate &= values == values.min(axis=1, keepdims=True)
    canonical = rotations[np.arange(len(rotations)), candidate.argmax(axis=1)]  # (F, 6)
    canonical = canonical[np.lexsort(canonical.T[::-1])]
    return np.ascontiguousarray(canonical).tobytes()


def _layout_hash(mesh: TexturedMesh) -> str:
    return hashlib.sha1(uv_layout_key(mesh)).hexdigest()[:12]


@functools.cache
def _known_templates() -> dict[str, str]:
    """Layout hash -> fixed id (e.g. "icosphere-642") of the shared templates (built on first use)."""
    known = {}
    for template in (icosphere_template(level) for level in (2, 3, 4)):
        known[_layout_hash(template.mesh)] = f"icosphere-{template.mesh.num_vertices}"
    sphere = uv_sphere_template().mesh
    known[_layout_hash(sphere)] = f"uvsphere-{sphere.num_vertices}"
    return known


def topology_id(mesh: TexturedMesh) -> str:
    """A short id of a mesh's UV layout: meshes with the same id share their texture layout.

    The id depends on the faces as UV triangles only (``uv_layout_key``): renumbered vertices,
    shuffled faces, vertices split (or welded) along UV seams and moved vertices keep it; a changed UV
    layout changes it. A layout equal to a shared template's has that template's fixed id
    ("icosphere-642", "icosphere-162", "icosphere-2562", "uvsphere-482"), so a refined template
    result keeps the id of the template's other results; any other layout gets ``"<F>f-<12 hex>"``.
    """
    digest = _layout_hash(mesh)
    return _known_templates().get(digest) or f"{mesh.num_faces}f-{digest}"
