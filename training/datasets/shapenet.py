"""The SoftRas/NMR ShapeNet renderings (Kato et al.'s "mesh_reconstruction" set), and the synthetic copies.

Contract (files in ``root``; ``<synset>`` is a ShapeNet synset id such as "02691156", or the synthetic
category name such as "bird"; ``<split>`` is "train", "val" or "test"):

- ``<synset>_<split>_images.npz``: key ``arr_0``, uint8 (N, V, 4, H, W) RGBA renders (alpha = silhouette),
  V = 24 and H = W = 64 in the published set. SoftRas's camera for view k: elevation 30, distance 2.732,
  azimuth -15 k degrees, look-at with a 15 degree half viewing angle. SoftRas's images are the left-right
  mirror of a right-handed camera (``backend.geometry.from_softras_images``): the loader flips them, so
  every view matches ``Camera.look_at(distance, elevation, azimuth)`` renders of the object.
- ``<synset>_<split>_voxels.npz`` (optional): key ``arr_0``, (N, 32, 32, 32) occupancy in **SoftRas's
  orientation**: its cell [a, b, c] is our cell (x, y, z) = (b, a, 31 - c), i.e. SoftRas's array is ours
  with x and y swapped and z reversed (SoftRas's ``evaluate_iou`` compares the dataset with
  ``voxelization(...).transpose(0, 2, 1, 3)[:, :, :, ::-1]``, and its voxelization indexes [x, y, z]).
  Our cell x covers world ``[-0.5 + x / 32, -0.5 + (x + 1) / 32) * 32 / 31`` (SoftRas voxelises
  ``v * 31/32 + 0.5`` on [0, 1]^3). The loader returns voxels in **our** order [x, y, z]
  (``voxels_from_softras``), so that ``voxel_iou(voxelize_like_softras(vertices, faces), item["voxels"])``
  is SoftRas's 3D IoU.
- ``<synset>_<split>_cameras.npz`` (synthetic sets with V != 24 only): float32 (N, V) arrays
  ``distance``, ``elevation``, ``azimuth`` of each view (same look-at convention).
- ``<synset>_<split>_meshes.npz`` (synthetic sets): ground-truth meshes (``training.datasets.meshes``).

Items (one object each): "image" (V', 3, S, S), "mask" (V', 1, S, S), "elevation", "azimuth", "distance"
(V',) float32, "view" (V',) int64, "voxels" (32, 32, 32) bool when present, "index", "name" (the object's
index in its file, as text), "category" (the synset). V' = ``views_per_item`` distinct views drawn from
``default_rng((seed, epoch, index))`` (all V views in order when ``views_per_item >= V``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from backend.geometry import TexturedMesh, voxelize_mesh
from backend.geometry.camera import from_softras_images
from training.datasets._io import require_file
from training.datasets.meshes import MeshArchive

SOFTRAS_ELEVATION = 30.0
SOFTRAS_DISTANCE = 2.732
SOFTRAS_AZIMUTH_STEP = -15.0
SOFTRAS_NUM_VIEWS = 24
SOFTRAS_VOXEL_SCALE = 31.0 / 32.0
"""SoftRas voxelises ``v * 31/32 + 0.5`` on [0, 1]^3: our grid over [-0.5, 0.5]^3 of ``v * 31/32``."""

SHAPENET_SYNSETS = {
    "02691156": "airplane", "02828884": "bench", "02933112": "cabinet", "02958343": "car",
    "03001627": "chair", "03211117": "display", "03636649": "lamp", "03691459": "loudspeaker",
    "04090263": "rifle", "04256520": "sofa", "04379243": "table", "04401088": "telephone",
    "04530566": "watercraft",
}  # fmt: skip
"""The 13 ShapeNet classes of the SoftRas/NMR set, synset -> name."""


def softras_cameras(num_views: int = SOFTRAS_NUM_VIEWS) -> dict[str, np.ndarray]:
    """(V,) float32 distance, elevation and azimuth of SoftRas's views k = 0 .. V - 1."""
    views = np.arange(num_views, dtype=np.float32)
    return {
        "distance": np.full(num_views, SOFTRAS_DISTANCE, dtype=np.float32),
        "elevation": np.full(num_views, SOFTRAS_ELEVATION, dtype=np.float32),
        "azimuth": (SOFTRAS_AZIMUTH_STEP * views).astype(np.float32),
    }


def voxels_to_softras(grid: Tensor) -> Tensor:
    """(..., R, R, R) voxels in our [x, y, z] order -> SoftRas's dataset orientation (module docstring)."""
    return grid.transpose(-3, -2).flip(-1)


def voxels_from_softras(grid: Tensor) -> Tensor:
    """(..., R, R, R) voxels of a SoftRas ``_voxels.npz`` -> our [x, y, z] order."""
    return grid.flip(-1).transpose(-3, -2)


def voxelize_like_softras(vertices: Tensor, faces: Tensor, resolution: int = 32) -> Tensor:
    """(R, R, R) bool [x, y, z]: SoftRas's evaluation grid of a mesh (V, 3), (F, 3) in [-0.5, 0.5]^3."""
    return voxelize_mesh(vertices * SOFTRAS_VOXEL_SCALE, faces, resolution=resolution, fill_surface=True)


def _load_array(path: Path, what: str) -> np.ndarray:
    require_file(path, what)
    with np.load(path) as data:
        keys = list(data.keys())
        if not keys:
            raise ValueError(f"{path} holds no array (expected the key 'arr_0')")
        return np.asarray(data["arr_0"] if "arr_0" in keys else data[keys[0]])


@dataclass
class _Category:
    """One ``<synset>_<split>`` set of files, loaded."""

    synset: str
    images: np.ndarray  # (N, V, 4, H, W) uint8
    cameras: dict[str, np.ndarray]  # name -> (N, V) float32
    voxels: np.ndarray | None  # (N, R, R, R)
    meshes_path: Path


def _load_category(root: Path, synset: str, split: str) -> _Category:
    stem = f"{synset}_{split}"
    images_path = root / f"{stem}_images.npz"
    images = _load_array(images_path, "ShapeNet renderings")
    if images.ndim != 5 or images.shape[2] != 4 or images.shape[3] != images.shape[4]:
        raise ValueError(
            f"{images_path}: arr_0 must be uint8 (N, V, 4, H, H) RGBA renders, got shape {images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"{images_path}: arr_0 must be uint8, got {images.dtype}")
    count, views = images.shape[:2]
    camera_path = root / f"{stem}_cameras.npz"
    if camera_path.is_file():
        with np.load(camera_path) as data:
            cameras = {}
            for key in ("distance", "elevation", "azimuth"):
                if key not in data or data[key].shape != (count, views):
                    raise ValueError(f"{camera_path}: {key} must be a ({count}, {views}) array")
                cameras[key] = data[key].astype(np.float32)
    elif views == SOFTRAS_NUM_VIEWS:
        cameras = {k: np.broadcast_to(v, (count, views)) for k, v in softras_cameras(views).items()}
    else:
        raise FileNotFoundError(
            f"{images_path} has {views} views per object, not SoftRas's 24: expected their cameras in "
            f"{camera_path}"
        )
    voxels_path = root / f"{stem}_voxels.npz"
    voxels = None
    if voxels_path.is_file():
        voxels = _load_array(voxels_path, "ShapeNet voxels")
        if voxels.ndim != 4 or voxels.shape[0] != count or len(set(voxels.shape[1:])) != 1:
            raise ValueError(
                f"{voxels_path}: arr_0 must be ({count}, R, R, R) voxels, got shape {voxels.shape}"
            )
    return _Category(synset, images, cameras, voxels, root / f"{stem}_meshes.npz")


def discover_categories(root: Path, split: str) -> list[str]:
    """Synsets with a ``<synset>_<split>_images.npz`` in ``root``, sorted."""
    suffix = f"_{split}_images.npz"
    return sorted(p.name[: -len(suffix)] for p in root.glob(f"*{suffix}"))


class ShapeNetRenderings(Dataset[dict[str, Any]]):
    """Multi-view renderings of objects in the SoftRas/NMR layout; see the module docstring."""

    def __init__(
        self,
        root: str | Path,
        categories: list[str] | None = None,
        split: str = "train",
        views_per_item: int = 2,
        image_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ShapeNet renderings not found: expected the directory {self.root}")
        available = discover_categories(self.root, split)
        if categories is None:
            if not available:
                raise FileNotFoundError(f"no <synset>_{split}_images.npz files in {self.root}")
            categories = available
        unknown = [c for c in categories if c not in available]
        if unknown:
            raise ValueError(
                f"unknown category {unknown[0]!r} for split {split!r} in {self.root}: expected one of "
                f"{available} (files <category>_{split}_images.npz)"
            )
        if views_per_item < 1:
            raise ValueError(f"views_per_item must be at least 1, got {views_per_item}")
        self.split = split
        self.views_per_item = views_per_item
        self.image_size = image_size
        self.seed = seed
        self.epoch = 0
        self.categories = [_load_category(self.root, c, split) for c in categories]
        self.offsets = np.cumsum([0] + [c.images.shape[0] for c in self.categories])
        self._archives: dict[str, MeshArchive] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        """Draw other views for every item (the same within one epoch)."""
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """(category number, object index within the category's files) of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} objects")
        category = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return category, index - int(self.offsets[category])

    def num_views(self, index: int) -> int:
        """V, the number of renderings of item ``index`` in its file."""
        category, _ = self.locate(index)
        return int(self.categories[category].images.shape[1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        number, local = self.locate(index)
        category = self.categories[number]
        total = category.images.shape[1]
        if self.views_per_item >= total:
            views = np.arange(total)
        else:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            views = rng.choice(total, size=self.views_per_item, replace=False)
        rgba = torch.from_numpy(category.images[local, views].astype(np.float32) / 255.0)  # (V', 4, H, H)
        rgba = from_softras_images(rgba)  # back to our right-handed camera
        if rgba.shape[-1] != self.image_size:
            shrink = rgba.shape[-1] > self.image_size
            mode = "area" if shrink else "bilinear"
            rgba = F.interpolate(rgba, size=(self.image_size, self.image_size), mode=mode)
        sample: dict[str, Any] = {
            "image": rgba[:, :3].contiguous(),  # (V', 3, S, S)
            "mask": rgba[:, 3:].contiguous(),  # (V', 1, S, S)
            "view": torch.from_numpy(views.astype(np.int64)),
            "index": index,
            "name": str(local),
            "category": category.synset,
        }
        for key, values in category.cameras.items():
            sample[key] = torch.from_numpy(np.array(values[local, views], dtype=np.float32))  # (V',)
        if category.voxels is not None:
            grid = torch.from_numpy(np.asarray(category.voxels[local]) > 0)
            sample["voxels"] = voxels_from_softras(grid).contiguous()  # (R, R, R) [x, y, z]
        return sample

    def ground_truth_mesh(self, index: int) -> TexturedMesh | None:
        """The object's ground-truth mesh when the set has a ``_meshes.npz`` (synthetic data), else None."""
        number, local = self.locate(index)
        category = self.categories[number]
        if not category.meshes_path.is_file():
            return None
        if category.synset not in self._archives:
            self._archives[category.synset] = MeshArchive(category.meshes_path)
        return self._archives[category.synset].mesh(local)


class RenderingsSettings(Protocol):
    """The fields of a trainer config that choose its ``ShapeNetRenderings`` splits (softras, pointcloud)."""

    @property
    def data(self) -> str: ...
    @property
    def categories(self) -> tuple[str, ...]: ...
    @property
    def train_split(self) -> str: ...
    @property
    def eval_split(self) -> str: ...
    @property
    def views_per_item(self) -> int: ...
    @property
    def eval_views(self) -> int: ...
    @property
    def eval_objects(self) -> int: ...
    @property
    def seed(self) -> int: ...


def renderings_splits(
    settings: RenderingsSettings, image_size: int
) -> tuple[ShapeNetRenderings, ShapeNetRenderings | None]:
    """The training split (``views_per_item`` views per item) and the evaluation split (``eval_views``
    views, its first ``eval_objects`` objects when that is not 0; None when the folder has no such split).

    Raises:
        ValueError: no data folder given.
    """
    if not settings.data:
        raise ValueError("no data folder: pass --data DIR (the SoftRas/NMR npz files or a synthetic copy)")
    categories = list(settings.categories) or None
    train_set = ShapeNetRenderings(
        Path(settings.data), categories, settings.train_split, views_per_item=settings.views_per_item,
        image_size=image_size, seed=settings.seed,
    )  # fmt: skip
    try:
        eval_set: ShapeNetRenderings | None = ShapeNetRenderings(
            Path(settings.data), categories, settings.eval_split, views_per_item=settings.eval_views,
            image_size=image_size, seed=settings.seed,
        )  # fmt: skip
    except FileNotFoundError:
        eval_set = None
    if eval_set is not None and settings.eval_objects:
        # a Subset (typed as the dataset: callers index it and take its length)
        eval_set = Subset(eval_set, range(min(settings.eval_objects, len(eval_set))))  # type: ignore[assignment]
    return train_set, eval_set


def renderings_info(
    settings: RenderingsSettings, train_set: Dataset[Any], eval_set: Dataset[Any] | None
) -> dict[str, Any]:
    """The dataset description a checkpoint records for a run on ``renderings_splits``."""
    return {
        "name": "shapenet-renderings",
        "root": str(Path(settings.data).resolve()),
        "categories": list(settings.categories) or "all",
        "train_split": settings.train_split,
        "train_objects": len(train_set),  # type: ignore[arg-type]
        "eval_split": settings.eval_split,
        "eval_objects": len(eval_set) if eval_set is not None else 0,  # type: ignore[arg-type]
    }
