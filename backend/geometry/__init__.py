"""Geometry: the central types, templates, mesh operations, metrics and file IO.

Conventions (one place for the whole project):

- World and object space are right-handed with **Y up**; a camera looks down its **-Z** axis (glTF).
  Blender's Z-up world is reached through Blender's glTF importer, which converts.
- Image pixel (0, 0) is the **top-left** corner; pixel ``(row i, column j)`` has its centre at
  ``x_ndc = (2 j + 1) / W - 1``, ``y_ndc = 1 - (2 i + 1) / H``: normalised device coordinates (NDC)
  run from -1 to 1 with **y up**.
- UV (0, 0) is the **bottom-left** of the texture image (glTF, Blender); texture row 0 is v = 1.
- Depth is the positive distance in front of the camera along its viewing axis.
- Shape letters: B batch, V vertices, F faces, T uv-vertices, N points, H W image, C channels.
"""

from backend.geometry.camera import Camera
from backend.geometry.mesh import PointCloud, TexturedMesh

__all__ = ["Camera", "PointCloud", "TexturedMesh"]
