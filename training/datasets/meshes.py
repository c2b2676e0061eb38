"""Ground-truth meshes of a synthetic split, many objects in one compressed .npz.

File format (``np.savez_compressed``; object i owns rows ``offsets[i]:offsets[i + 1]`` of each packed
array; indices are local to the object):

- ``vertices`` float32 (sum V, 3), ``vertex_offsets`` int64 (N + 1,)
- ``faces`` int32 (sum F, 3), ``face_uvs`` int32 (sum F, 3), ``face_parts`` uint8 (sum F,) (the primitive
  each face belongs to, the part map label minus one), ``face_offsets`` int64 (N + 1,)
- ``uvs`` float32 (sum T, 2), ``uv_offsets`` int64 (N + 1,)
- ``textures`` uint8 (N, H, W, 3)

Coordinates are the project's (Y up, the object's front towards +Z, symmetric about x = 0), inside the
cube [-0.5, 0.5]^3 like ShapeNet's normalised models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from backend.geometry import TexturedMesh
from training.datasets._io import require_file

_KEYS = (
    "vertices", "vertex_offsets", "faces", "face_uvs", "face_parts", "face_offsets", "uvs", "uv_offsets",
    "textures",
)  # fmt: skip


def _offsets(counts: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def save_mesh_archive(path: Path, meshes: Sequence[TexturedMesh], face_parts: Sequence[Tensor]) -> Path:
    """Write ``meshes`` (each with its (F,) part ids) to ``path`` in the format above; returns the path."""
    if len(meshes) != len(face_parts):
        raise ValueError(f"{len(meshes)} meshes but {len(face_parts)} face part arrays")
    if not meshes:
        raise ValueError("a mesh archive needs at least one mesh")
    shapes = {tuple(m.texture.shape) for m in meshes}
    if len(shapes) != 1:
        raise ValueError(f"all textures of an archive must have one shape, got {sorted(shapes)}")
    textures = np.stack([(m.texture.clamp(0, 1) * 255).round().to(torch.uint8).numpy() for m in meshes])
    np.savez_compressed(
        path,
        vertices=np.concatenate([m.vertices.numpy() for m in meshes]).astype(np.float32),
        vertex_offsets=_offsets([m.num_vertices for m in meshes]),
        faces=np.concatenate([m.faces.numpy() for m in meshes]).astype(np.int32),
        face_uvs=np.concatenate([m.face_uvs.numpy() for m in meshes]).astype(np.int32),
        face_parts=np.concatenate([p.numpy() for p in face_parts]).astype(np.uint8),
        face_offsets=_offsets([m.num_faces for m in meshes]),
        uvs=np.concatenate([m.uvs.numpy() for m in meshes]).astype(np.float32),
        uv_offsets=_offsets([int(m.uvs.shape[0]) for m in meshes]),
        textures=textures,
    )
    return path


class MeshArchive:
    """Read access to a mesh archive (loaded into memory once)."""

    def __init__(self, path: Path) -> None:
        self.path = require_file(Path(path), "mesh archive")
        with np.load(self.path) as data:
            missing = [key for key in _KEYS if key not in data]
            if missing:
                raise ValueError(f"mesh archive {self.path} lacks the array {missing[0]!r}")
            self.arrays = {key: data[key] for key in _KEYS}
        count = self.arrays["textures"].shape[0]
        for key in ("vertex_offsets", "face_offsets", "uv_offsets"):
            if self.arrays[key].shape != (count + 1,):
                raise ValueError(f"{self.path}: {key} must have {count + 1} entries for {count} meshes")

    def __len__(self) -> int:
        return int(self.arrays["textures"].shape[0])

    def _rows(self, key: str, offsets: str, index: int) -> np.ndarray:
        start, stop = self.arrays[offsets][index], self.arrays[offsets][index + 1]
        return self.arrays[key][start:stop]

    def mesh(self, index: int) -> TexturedMesh:
        """The TexturedMesh of object ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"mesh {index} out of range for {len(self)} meshes in {self.path}")
        return TexturedMesh(
            vertices=torch.from_numpy(self._rows("vertices", "vertex_offsets", index).copy()),
            faces=torch.from_numpy(self._rows("faces", "face_offsets", index).astype(np.int64)),
            uvs=torch.from_numpy(self._rows("uvs", "uv_offsets", index).copy()),
            face_uvs=torch.from_numpy(self._rows("face_uvs", "face_offsets", index).astype(np.int64)),
            texture=torch.from_numpy(self.arrays["textures"][index].astype(np.float32) / 255.0),
        )

    def face_parts(self, index: int) -> Tensor:
        """(F,) int64 primitive id of each face of object ``index``."""
        return torch.from_numpy(self._rows("face_parts", "face_offsets", index).astype(np.int64))
