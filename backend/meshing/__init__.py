"""Turning geometry into a Blender-ready textured mesh.

- ``texturing``: texture by projection of the photo onto any UV-mapped mesh, mirror fill on the
  symmetric templates, inpainting of what is left.
- ``errors``: ``MeshingError``, the time limit of the Open3D stages and ``import_open3d``.
- ``normals``: Open3D normal estimation, oriented outward from the centroid, toward a camera, or by
  consistent tangent planes.
- ``poisson``: input guards, screened Poisson reconstruction (Open3D) and density trimming.
- ``cleanup``: largest component, degenerate and duplicate faces, unused vertices, quadric decimation to
  a face budget, orientation checks.
- ``pipeline``: ``mesh_point_cloud`` with ``MeshingOptions``, the whole point cloud -> mesh stage with
  per-stage timings.
- ``unwrap``: xatlas UV atlas (``unwrap_uvs``), a vectorised UV raster and ``uv_overlap_fraction``.
- ``bake``: ``bake_texture`` for any atlas: photo, mirror image across x = 0 in 3-D, inpainting.
- ``relief``, ``depth_relief``: an open surface (a depth grid) cut to some faces and closed into a solid
  by a back surface and a rim; a depth map as such a relief under parallel projection (``unsup3d``).

No module here imports Open3D (or xatlas) when it is imported: the stages that need it import it when
they run (``errors.import_open3d``), so a missing Open3D fails only the point cloud -> mesh stage, with a
``MeshingError`` that says how to install it. The names below are re-exported lazily as well: importing
``backend.meshing.texturing`` (as the ``fit`` method does) loads none of the other stages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.meshing.bake import BakedTexture, bake_texture
    from backend.meshing.errors import MeshingError
    from backend.meshing.normals import estimate_normals
    from backend.meshing.pipeline import MeshingOptions, MeshingResult, mesh_point_cloud
    from backend.meshing.poisson import poisson_reconstruct
    from backend.meshing.unwrap import unwrap_uvs, uv_overlap_fraction

_EXPORTS = {
    "BakedTexture": "bake",
    "bake_texture": "bake",
    "MeshingError": "errors",
    "estimate_normals": "normals",
    "MeshingOptions": "pipeline",
    "MeshingResult": "pipeline",
    "mesh_point_cloud": "pipeline",
    "poisson_reconstruct": "poisson",
    "unwrap_uvs": "unwrap",
    "uv_overlap_fraction": "unwrap",
}

__all__ = [
    "BakedTexture",
    "MeshingError",
    "MeshingOptions",
    "MeshingResult",
    "bake_texture",
    "estimate_normals",
    "mesh_point_cloud",
    "poisson_reconstruct",
    "unwrap_uvs",
    "uv_overlap_fraction",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"backend.meshing.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'backend.meshing' has no attribute {name!r}")
