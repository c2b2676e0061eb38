"""CUB-200-2011 birds with CMR's annotation files (and the synthetic generator's "cub" layout).

Contract (CMR's layout; ``annotation_root`` is CMR's ``cachedir/cub``, by default ``root`` itself):

    root/images/<rel_path>                        the photos (CUB_200_2011/images)
    annotation_root/data/<split>_cub_cleaned.mat  variable ``images``: rel_path, bbox, parts (3 x 15), mask
    annotation_root/sfm/anno_<split>.mat          variable ``sfm_anno``: rot, scale, trans (optional)

Splits are the file names CMR uses: "train", "testval", "val", "test" (any name works). The 15 keypoints
are CUB's (``transforms.CUB_KEYPOINT_NAMES``) mirrored with CMR's permutation; a ``synthetic.json`` at
``root`` (written by the synthetic generator) replaces them with its category's keypoints and adds the
true part maps under ``root/parts``. Nothing else is needed: no SCOPS part maps are read unless
``part_maps`` points at them (UMR's optional input). Items are described in ``training.datasets.cmr``.

>>> import tempfile
>>> CubDataset(tempfile.mkdtemp())  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
FileNotFoundError: annotation file not found: expected the file .../data/train_cub_cleaned.mat
"""

from __future__ import annotations

from pathlib import Path

from backend.geometry import TexturedMesh
from training.datasets._io import read_metadata
from training.datasets.cmr import AugmentConfig, CmrAnnotatedImages, PartMaps, part_maps_from_metadata
from training.datasets.meshes import MeshArchive
from training.datasets.transforms import CUB_KEYPOINT_PERMUTATION, augments


class CubDataset(CmrAnnotatedImages):
    """CUB-200-2011 with CMR's .mat annotations; items as in ``training.datasets.cmr``."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        annotation_root: str | Path | None = None,
        image_size: int = 256,
        padding: float = 0.05,
        jitter: float = 0.05,
        augment: bool | None = None,
        part_maps: PartMaps | None = None,
        seed: int = 0,
    ) -> None:
        """Args:
        root: the CUB_200_2011 folder (with ``images/``), or a synthetic "cub" layout.
        split: annotation file name part ("train", "val", "test", "testval").
        annotation_root: CMR's ``cachedir/cub`` (holding ``data/`` and ``sfm/``); default ``root``.
        image_size, padding, jitter: see ``AugmentConfig`` (CMR: 256, 0.05, 0.05).
        augment: jitter and mirror; default True for the "train" split only, as CMR.
        part_maps: where per-photo part maps are; default the synthetic layout's ``root/parts``.
        seed: seed of the per-item random generator.
        """
        root = Path(root)
        annotations = Path(annotation_root) if annotation_root is not None else root
        metadata = read_metadata(root)
        permutation: tuple[int, ...] = CUB_KEYPOINT_PERMUTATION
        if metadata is not None and "keypoint_permutation" in metadata:
            permutation = tuple(int(v) for v in metadata["keypoint_permutation"])
        config = AugmentConfig(
            image_size=image_size,
            padding=padding,
            jitter=jitter,
            augment=augments(split, augment),
            seed=seed,
        )
        sfm_path = annotations / "sfm" / f"anno_{split}.mat"
        super().__init__(
            image_dir=root / "images",
            annotation_path=annotations / "data" / f"{split}_cub_cleaned.mat",
            sfm_path=sfm_path if sfm_path.is_file() else None,
            keypoint_permutation=permutation,
            config=config,
            part_maps=part_maps or part_maps_from_metadata(root / "parts", metadata),
        )
        self.split = split
        self.root = root
        self._archives: dict[str, MeshArchive] = {}

    def ground_truth_mesh(self, index: int) -> TexturedMesh | None:
        """The object's ground-truth mesh (synthetic "cub" layout: the record's ``object`` in
        ``<category>_<split>_meshes.npz``, the category being the first folder of ``rel_path``), else None.

        The mesh is in the world frame of the item's ``"camera"`` (which follows crops and mirroring).
        """
        record = self.records[index]
        category = self.rel_path(index).split("/")[0]
        path = self.root / f"{category}_{self.split}_meshes.npz"
        if not hasattr(record, "object") or not path.is_file():
            return None
        if category not in self._archives:
            self._archives[category] = MeshArchive(path)
        return self._archives[category].mesh(int(record.object))
