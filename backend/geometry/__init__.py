"""Geometry: the central types, templates, mesh operations, metrics, file IO, surface sampling, voxel grids
of points, rotation distances and projected points against images.

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
from backend.geometry.image_points import points_in_mask, splat_points
from backend.geometry.io import load_glb, load_mesh, load_obj, save_glb, save_obj, weld_vertices
from backend.geometry.mesh import PointCloud, TexturedMesh
from backend.geometry.metrics import (
    ChamferDistance,
    chamfer_distance,
    mask_iou,
    ssim,
    voxel_iou,
    voxelize_mesh,
)
from backend.geometry.ops import (
    EdgeAdjacency,
    cotangent_laplacian,
    deformation_loss,
    edge_adjacent_faces,
    face_areas,
    face_normals,
    flatten_loss,
    laplacian_loss,
    uniform_laplacian,
    vertex_normals,
)
from backend.geometry.rotations import quaternion_distance, rotation_angle_deg, rotation_distance
from backend.geometry.sampling import sample_surface
from backend.geometry.templates import (
    SymmetricTemplate,
    icosphere_template,
    mirror_texel_index,
    mirror_texture,
    select_free_vertices,
    symmetrize_offsets,
    symmetrize_vertices,
    uv_sphere_template,
)
from backend.geometry.volumes import voxel_shell, voxelize_points

__all__ = [
    "Camera",
    "ChamferDistance",
    "EdgeAdjacency",
    "PointCloud",
    "SymmetricTemplate",
    "TexturedMesh",
    "chamfer_distance",
    "cotangent_laplacian",
    "deformation_loss",
    "edge_adjacent_faces",
    "face_areas",
    "face_normals",
    "flatten_loss",
    "icosphere_template",
    "laplacian_loss",
    "load_glb",
    "load_mesh",
    "load_obj",
    "mask_iou",
    "mirror_texel_index",
    "mirror_texture",
    "points_in_mask",
    "quaternion_distance",
    "rotation_angle_deg",
    "rotation_distance",
    "sample_surface",
    "save_glb",
    "save_obj",
    "select_free_vertices",
    "splat_points",
    "ssim",
    "symmetrize_offsets",
    "symmetrize_vertices",
    "uniform_laplacian",
    "uv_sphere_template",
    "vertex_normals",
    "voxel_iou",
    "voxel_shell",
    "voxelize_mesh",
    "voxelize_points",
    "weld_vertices",
]
