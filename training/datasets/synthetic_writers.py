"""Writers of the synthetic generator: one per on-disk layout, each the format its loader reads.

Contract (``root`` is the output folder; ``<c>`` the category, ``<split>`` the split):

- ``ShapeNetWriter`` (SoftRas/NMR layout, read by ``ShapeNetRenderings``): ``<c>_<split>_images.npz``
  (``arr_0`` uint8 (N, V, 4, S, S) RGBA, stored **left-right mirrored** as SoftRas renders are, so that the
  loader's ``from_softras_images`` flip brings back our camera's view), ``<c>_<split>_voxels.npz``
  (``arr_0`` uint8 (N, 32, 32, 32) in SoftRas's orientation, ``shapenet.voxels_to_softras``) and, unless
  the views are SoftRas's 24, ``<c>_<split>_cameras.npz`` (float32 (N, V) distance, elevation, azimuth).
- ``CubWriter`` (CMR's CUB layout, read by ``CubDataset``): ``images/<c>/<c>_<split>_<object>_<view>.png``,
  ``data/<split>_cub_cleaned.mat`` (struct array ``images``: rel_path, bbox x1 y1 x2 y2 1-based inclusive
  around alpha > 0.5, parts 3 x K 1-based (x, y, visibility; zeros when hidden), mask uint8 alpha > 0.5;
  plus ``object`` and ``view``, the object's index in the split's mesh archive and the view number) and
  ``sfm/anno_<split>.mat`` (struct array ``sfm_anno``: rot 3 x 3, scale and trans (2,) in 1-based pixels,
  the exact camera of the render in CMR's y-down convention; plus ``S`` (3 x K) the mean of the split's 3D
  keypoints and ``conv_tri`` (T x 3, 1-based) the triangles of their convex hull), and the true part
  maps ``parts/<c>/<c>_<split>_<object>_<view>.png``: 8-bit label maps, 0 background, k the part k - 1 of
  ``synthetic.json``'s ``part_names`` (one channel per part once one-hot encoded by the loader).
- ``FolderWriter`` (read by ``ImageFolderDataset``): ``<split>/images/<c>_<split>_<object>_<view>.png`` (RGB),
  ``<split>/masks/<same name>.png`` (8-bit alpha) and ``<split>/cameras.json`` (per image name: the
  look-at camera and the object's index in the split's mesh archive).
- Every layout: ``<c>_<split>_meshes.npz``, the split's ground-truth meshes (``training.datasets.meshes``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import scipy.spatial
from PIL import Image

from backend.geometry.camera import SOFTRAS_VIEWING_ANGLE
from training.datasets.meshes import save_mesh_archive
from training.datasets.shapenet import voxels_to_softras
from training.datasets.synthetic_object import SyntheticObject
from training.datasets.synthetic_render import RenderedViews
from training.datasets.transforms import camera_to_sfm


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded)."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


class _MeshCollector:
    def __init__(self, root: Path, category: str, split: str) -> None:
        self.path = root / f"{category}_{split}_meshes.npz"
        self.meshes: list[Any] = []
        self.face_parts: list[Any] = []

    def add(self, obj: SyntheticObject) -> int:
        self.meshes.append(obj.mesh)
        self.face_parts.append(obj.face_parts)
        return len(self.meshes) - 1

    def close(self) -> None:
        if self.meshes:
            save_mesh_archive(self.path, self.meshes, self.face_parts)


class ShapeNetWriter:
    """Collects one split of the SoftRas layout and writes it on ``close``."""

    def __init__(
        self, root: Path, category: str, split: str, count: int, views: int, size: int, record_cameras: bool
    ) -> None:
        self.root, self.stem = root, f"{category}_{split}"
        # the renders of a large split may not fit in memory: collect them in a file-backed array
        self.scratch = root / f".{self.stem}_images.tmp.npy"
        shape = (count, views, 4, size, size)
        self.images = np.lib.format.open_memmap(self.scratch, mode="w+", dtype=np.uint8, shape=shape)
        self.voxels = np.zeros((count, 32, 32, 32), dtype=np.uint8)
        self.cameras = {
            k: np.zeros((count, views), dtype=np.float32) for k in ("distance", "elevation", "azimuth")
        }
        self.record_cameras = record_cameras
        self.meshes = _MeshCollector(root, category, split)

    def add(self, obj: SyntheticObject, rendered: RenderedViews, views: dict[str, np.ndarray]) -> None:
        index = self.meshes.add(obj)
        rgba = np.concatenate([rendered.rgb, rendered.alpha[..., None]], axis=-1)  # (V, S, S, 4)
        self.images[index] = to_uint8(rgba[:, :, ::-1].transpose(0, 3, 1, 2))  # SoftRas's mirrored images
        if obj.voxels is None:
            raise ValueError("the ShapeNet layout needs the objects' voxels")
        self.voxels[index] = voxels_to_softras(obj.voxels).numpy().astype(np.uint8)
        for key, values in views.items():
            self.cameras[key][index] = values

    def close(self) -> None:
        np.savez_compressed(self.root / f"{self.stem}_images.npz", self.images)
        del self.images  # closes the memory map before its file goes
        self.scratch.unlink()
        np.savez_compressed(self.root / f"{self.stem}_voxels.npz", self.voxels)
        if self.record_cameras:
            path = self.root / f"{self.stem}_cameras.npz"
            distance, elevation, azimuth = (self.cameras[k] for k in ("distance", "elevation", "azimuth"))
            np.savez_compressed(path, distance=distance, elevation=elevation, azimuth=azimuth)
        self.meshes.close()


def _box_of(mask: np.ndarray) -> dict[str, float]:
    """CMR's 1-based inclusive bbox of an (S, S) bool mask (the whole image when it is empty)."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        rows = columns = np.array([0, mask.shape[0] - 1])
    return {
        "x1": float(columns[0] + 1), "y1": float(rows[0] + 1),
        "x2": float(columns[-1] + 1), "y2": float(rows[-1] + 1),
    }  # fmt: skip


def _struct_array(records: list[dict[str, Any]]) -> np.ndarray:
    """A numpy record array that ``scipy.io.savemat`` writes as a MATLAB struct array."""
    fields = list(records[0])
    array = np.zeros((len(records),), dtype=[(name, object) for name in fields])
    for i, record in enumerate(records):
        for name in fields:
            array[i][name] = record[name]
    return array


class CubWriter:
    """Writes one split of CMR's CUB layout: images and part maps at once, .mat files on ``close``."""

    def __init__(self, root: Path, category: str, split: str, size: int) -> None:
        self.root, self.category, self.split, self.size = root, category, split, size
        for folder in ("images", "parts"):
            (root / folder / category).mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        (root / "sfm").mkdir(exist_ok=True)
        self.images: list[dict[str, Any]] = []
        self.sfm: list[dict[str, Any]] = []
        self.keypoints_3d: list[np.ndarray] = []
        self.meshes = _MeshCollector(root, category, split)

    def add(self, obj: SyntheticObject, rendered: RenderedViews, cameras: np.ndarray) -> None:
        """Add the B views of ``obj`` rendered with (B, 7) weak-perspective ``cameras``."""
        index = self.meshes.add(obj)
        self.keypoints_3d.append(obj.keypoints.numpy().astype(np.float64))
        half = self.size / 2.0
        for view in range(rendered.rgb.shape[0]):
            name = f"{self.category}_{self.split}_{index:06d}_{view:02d}"
            rel_path = f"{self.category}/{name}.png"
            Image.fromarray(to_uint8(rendered.rgb[view])).save(self.root / "images" / rel_path)
            Image.fromarray(rendered.labels[view]).save(self.root / "parts" / rel_path)
            mask = rendered.alpha[view] > 0.5
            keypoints = rendered.keypoints[view].astype(np.float64)  # (K, 3) NDC + visibility
            visible = keypoints[:, 2] > 0
            parts = np.zeros((3, keypoints.shape[0]))
            parts[0, visible] = (keypoints[visible, 0] + 1.0) * half + 0.5  # continuous -> 1-based
            parts[1, visible] = (1.0 - keypoints[visible, 1]) * half + 0.5
            parts[2, visible] = 1.0
            self.images.append(
                {"rel_path": rel_path, "bbox": _box_of(mask), "parts": parts, "mask": mask.astype(np.uint8),
                 "object": float(index), "view": float(view)}
            )  # fmt: skip
            scale, trans, rot = camera_to_sfm(cameras[view].astype(np.float64), self.size)
            self.sfm.append({"rot": rot, "scale": scale, "trans": trans})

    def close(self) -> None:
        if not self.images:
            return
        scipy.io.savemat(
            str(self.root / "data" / f"{self.split}_cub_cleaned.mat"),
            {"images": _struct_array(self.images)},
            do_compression=True,
        )
        mean_shape = np.mean(self.keypoints_3d, axis=0).T  # (3, K)
        try:
            triangles = scipy.spatial.ConvexHull(mean_shape.T).simplices + 1
        except scipy.spatial.QhullError:  # flat or too few keypoints: no hull
            triangles = np.zeros((0, 3), dtype=np.int64)
        scipy.io.savemat(
            str(self.root / "sfm" / f"anno_{self.split}.mat"),
            {
                "sfm_anno": _struct_array(self.sfm),
                "S": mean_shape,
                "conv_tri": triangles.astype(np.uint8),
            },
            do_compression=True,
        )
        self.meshes.close()


class FolderWriter:
    """Writes one split of the plain folder layout: images and masks at once, cameras on ``close``."""

    def __init__(self, root: Path, category: str, split: str) -> None:
        self.folder, self.category, self.split = root / split, category, split
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        (self.folder / "masks").mkdir(parents=True, exist_ok=True)
        self.cameras: dict[str, dict[str, Any]] = {}
        self.meshes = _MeshCollector(root, category, split)

    def add(self, obj: SyntheticObject, rendered: RenderedViews, views: dict[str, np.ndarray]) -> None:
        index = self.meshes.add(obj)
        for view in range(rendered.rgb.shape[0]):
            name = f"{self.category}_{self.split}_{index:06d}_{view:02d}.png"
            Image.fromarray(to_uint8(rendered.rgb[view])).save(self.folder / "images" / name)
            Image.fromarray(to_uint8(rendered.alpha[view])).save(self.folder / "masks" / name)
            self.cameras[name] = {
                "kind": "look_at",
                **{key: float(values[view]) for key, values in views.items()},
                "viewing_angle": SOFTRAS_VIEWING_ANGLE,
                "object": index,
            }

    def close(self) -> None:
        (self.folder / "cameras.json").write_text(json.dumps(self.cameras, indent=1, sort_keys=True))
        self.meshes.close()
