"""Datasets: loaders for the published layouts and the synthetic generator that writes them.

Every dataset is a ``torch.utils.data.Dataset`` whose items are ``dict[str, Tensor | str | int]``:

Single-image datasets (``CubDataset``, ``Pascal3DCars``, ``CelebACrops``, ``ImageFolderDataset``):

- "image": float32 (3, S, S) RGB in [0, 1], the background kept.
- "mask": float32 (1, S, S) in [0, 1] (all ones for CelebA, which has no masks).
- "keypoints" (CUB, PASCAL3D+): float32 (K, 3): x, y in NDC of the crop ([-1, 1], y up) and the
  visibility (0 or 1); invisible keypoints are (0, 0, 0), as in CMR.
- "camera" (with an sfm file): float32 (7,) weak-perspective ``[scale, tx, ty, qw, qx, qy, qz]``: CMR's
  sfm pose normalised to the crop and written in the project's convention, i.e.
  ``backend.geometry.Camera.weak_perspective(c[0], c[1:3], c[3:7]).project(points)`` gives the crop NDC
  (y up) of 3D points (``training.datasets.transforms``).
- "parts" (with part maps): float32 (P, S, S) part probabilities, channel 0 the background.
- "depth" (``SyntheticFaces``, the synthetic faces with ground truth): float32 (S, S), the depth of the
  visible surface at each pixel centre (Unsup3d's camera); their "mask" is the face, 0 or 1.
- "index": int, the item's index; "name": str, the image's path relative to its folder.

Multi-view datasets (``ShapeNetRenderings``, the SoftRas/NMR layout): one object per item, V views stacked:

- "image" (V, 3, S, S), "mask" (V, 1, S, S), "elevation", "azimuth", "distance" (V,) float32 (degrees,
  world units; SoftRas's look-at convention, images already flipped so they match
  ``backend.geometry.Camera.look_at``), "view" (V,) int64, "voxels" (32, 32, 32) bool in our [x, y, z]
  order when present, "index" int, "name" str (object id), "category" str (the synset, or the synthetic
  category name). ``ground_truth_mesh(index)`` gives the object's mesh for synthetic sets.

Datasets with random augmentation draw it from ``numpy.random.default_rng((seed, epoch, index))`` and have
``set_epoch(epoch)``. Missing files raise ``FileNotFoundError`` and malformed ones ``ValueError``, naming
the file and what was expected. The synthetic generator (``synthetic.generate``, the ``make-synthetic``
command) writes the "shapenet", "cub" and "folder" layouts with known 3D;
``synthetic_faces.generate_faces`` (``make-synthetic --category face``) writes Unsup3d's kind of data,
faces with ground-truth depth. ``holes.random_holes`` draws the random hole masks ``texture-completion``
hides in its crops (in the training step, from a seeded generator, not in the datasets).
"""

from training.datasets.celeba import CelebACrops
from training.datasets.cub import CubDataset
from training.datasets.folder import ImageFolderDataset
from training.datasets.meshes import MeshArchive, save_mesh_archive
from training.datasets.pascal3d import Pascal3DCars
from training.datasets.shapenet import (
    ShapeNetRenderings,
    voxelize_like_softras,
    voxels_from_softras,
    voxels_to_softras,
)
from training.datasets.synthetic import CATEGORIES, LAYOUTS, SyntheticConfig, generate
from training.datasets.synthetic_faces import SyntheticFaces, SyntheticFacesConfig, generate_faces

__all__ = [
    "CATEGORIES",
    "LAYOUTS",
    "CelebACrops",
    "CubDataset",
    "ImageFolderDataset",
    "MeshArchive",
    "Pascal3DCars",
    "ShapeNetRenderings",
    "SyntheticConfig",
    "SyntheticFaces",
    "SyntheticFacesConfig",
    "generate",
    "generate_faces",
    "save_mesh_archive",
    "voxelize_like_softras",
    "voxels_from_softras",
    "voxels_to_softras",
]
