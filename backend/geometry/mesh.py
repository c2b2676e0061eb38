"""The mesh and point-cloud types every layer passes around.

``TexturedMesh`` is one UV-mapped triangle mesh with its texture image; ``PointCloud`` is the input of
Poisson meshing. Both validate themselves on construction and raise ``ValueError`` naming the problem
(out-of-range indices, NaN coordinates, empty meshes, wrong shapes), so bad data never reaches the
renderer or the exporters. Derived quantities (normals, Laplacians) are functions in
``backend.geometry.ops``, not cached state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


def _check_finite(name: str, tensor: Tensor) -> None:
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).any(dim=-1).sum()) if tensor.dim() > 1 else 1
        raise ValueError(f"{name} contains NaN or infinite values ({bad} rows)")


def _check_shape(name: str, tensor: Tensor, width: int) -> None:
    if tensor.dim() != 2 or tensor.shape[1] != width:
        raise ValueError(f"{name} must have shape (N, {width}), got {tuple(tensor.shape)}")


def check_faces(faces: Tensor, num_vertices: int, name: str = "faces") -> None:
    """Raise ``ValueError`` unless ``faces`` (F, 3) is an integer tensor indexing ``num_vertices``.

    >>> check_faces(torch.tensor([[0, 1, 3]]), 3)
    Traceback (most recent call last):
    ...
    ValueError: faces index vertex 3 but there are only 3 vertices
    """
    _check_shape(name, faces, 3)
    if faces.dtype.is_floating_point or faces.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {faces.dtype}")
    if faces.numel() == 0:
        raise ValueError(f"{name} is empty: a mesh needs at least one face")
    low, high = int(faces.min()), int(faces.max())
    if low < 0:
        raise ValueError(f"{name} contain a negative index ({low})")
    if high >= num_vertices:
        raise ValueError(f"{name} index vertex {high} but there are only {num_vertices} vertices")


@dataclass(frozen=True)
class TexturedMesh:
    """A UV-mapped triangle mesh with a texture image.

    Attributes:
        vertices: (V, 3) float32 positions, Y up.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        uvs: (T, 2) float32 texture coordinates, (0, 0) at the bottom-left of the texture.
        face_uvs: (F, 3) int64 indices into ``uvs`` for each face corner. UV vertices are separate
            from positions so seams can duplicate UVs without duplicating geometry.
        texture: (H, W, 3) float32 image in [0, 1]; row 0 is the top of the image (v = 1).
        vertex_colors: optional (V, 3) float32 colours in [0, 1].
    """

    vertices: Tensor
    faces: Tensor
    uvs: Tensor
    face_uvs: Tensor
    texture: Tensor
    vertex_colors: Tensor | None = None

    def __post_init__(self) -> None:
        _check_shape("vertices", self.vertices, 3)
        if self.vertices.shape[0] == 0:
            raise ValueError("vertices is empty: a mesh needs at least three vertices")
        _check_finite("vertices", self.vertices)
        check_faces(self.faces, self.vertices.shape[0])
        _check_shape("uvs", self.uvs, 2)
        _check_finite("uvs", self.uvs)
        check_faces(self.face_uvs, self.uvs.shape[0], name="face_uvs")
        if self.face_uvs.shape[0] != self.faces.shape[0]:
            raise ValueError(
                f"face_uvs has {self.face_uvs.shape[0]} rows but there are {self.faces.shape[0]} faces"
            )
        if self.texture.dim() != 3 or self.texture.shape[2] != 3 or min(self.texture.shape[:2]) == 0:
            raise ValueError(
                f"texture must have shape (H, W, 3) with H, W > 0, got {tuple(self.texture.shape)}"
            )
        _check_finite("texture", self.texture)
        if self.vertex_colors is not None:
            _check_shape("vertex_colors", self.vertex_colors, 3)
            if self.vertex_colors.shape[0] != self.vertices.shape[0]:
                raise ValueError("vertex_colors must have one row per vertex")

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def to(self, device: torch.device | str) -> TexturedMesh:
        """The same mesh with every tensor on ``device``."""
        colors = None if self.vertex_colors is None else self.vertex_colors.to(device)
        return TexturedMesh(
            self.vertices.to(device),
            self.faces.to(device),
            self.uvs.to(device),
            self.face_uvs.to(device),
            self.texture.to(device),
            colors,
        )

    def with_vertices(self, vertices: Tensor) -> TexturedMesh:
        """The same topology, UVs and texture with new (V, 3) positions."""
        if vertices.shape != self.vertices.shape:
            raise ValueError(
                f"new vertices must have shape {tuple(self.vertices.shape)}, got {tuple(vertices.shape)}"
            )
        return replace(self, vertices=vertices)

    def with_texture(self, texture: Tensor) -> TexturedMesh:
        """The same mesh with another (H, W, 3) texture image (same UV layout)."""
        return replace(self, texture=texture)


@dataclass(frozen=True)
class PointCloud:
    """Points with optional normals and colours: the input of Poisson meshing.

    Attributes:
        points: (N, 3) float32 positions.
        normals: optional (N, 3) unit normals pointing out of the surface.
        colors: optional (N, 3) colours in [0, 1].
    """

    points: Tensor
    normals: Tensor | None = None
    colors: Tensor | None = None

    def __post_init__(self) -> None:
        _check_shape("points", self.points, 3)
        if self.points.shape[0] == 0:
            raise ValueError("points is empty")
        _check_finite("points", self.points)
        for name, value in (("normals", self.normals), ("colors", self.colors)):
            if value is not None:
                _check_shape(name, value, 3)
                if value.shape[0] != self.points.shape[0]:
                    raise ValueError(f"{name} must have one row per point")
                _check_finite(name, value)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])
