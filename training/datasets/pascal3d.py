"""PASCAL3D+ cars with CMR's annotation files.

Contract (CMR's layout; ``annotation_root`` is CMR's ``cachedir/p3d``, by default ``root`` itself):

    root/Images/<rel_path>                          the photos (PASCAL3D+_release1.1/Images)
    annotation_root/data/<category>_<split>.mat     variable ``images``: rel_path (Windows backslashes,
                                                    e.g. ``car_imagenet\\n02814533_1.JPEG``), bbox, parts
                                                    (3 x K), mask; PASCAL3D+ adds width, height,
                                                    cad_index, voc_image_id, voc_rec_id, is_train (unused)
    annotation_root/sfm/<category>_<split>.mat      variable ``sfm_anno``: rot, scale, trans (optional)
    annotation_root/data/<category>_kps.mat         ``kp_perm_inds`` (1-based left/right permutation),
                                                    ``kp_names``

Splits are CMR's file names ("train", "val", "all"). Items are described in ``training.datasets.cmr``
(CMR's crop, jitter and mirror; backslashes in ``rel_path`` are read as ``/``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.datasets._io import load_mat
from training.datasets.cmr import AugmentConfig, CmrAnnotatedImages
from training.datasets.transforms import augments


class Pascal3DCars(CmrAnnotatedImages):
    """PASCAL3D+ (cars by default) with CMR's .mat annotations; items as in ``training.datasets.cmr``."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        annotation_root: str | Path | None = None,
        category: str = "car",
        image_size: int = 256,
        padding: float = 0.05,
        jitter: float = 0.05,
        augment: bool | None = None,
        seed: int = 0,
    ) -> None:
        """Args:
        root: the PASCAL3D+ release folder (with ``Images/``).
        split: annotation file name part ("train", "val", "all").
        annotation_root: CMR's ``cachedir/p3d`` (holding ``data/`` and ``sfm/``); default ``root``.
        category: PASCAL class of the annotation files ("car").
        image_size, padding, jitter: see ``AugmentConfig`` (CMR: 256, 0.05, 0.05).
        augment: jitter and mirror; default True for the "train" split only, as CMR.
        seed: seed of the per-item random generator.
        """
        root = Path(root)
        annotations = Path(annotation_root) if annotation_root is not None else root
        keypoint_file = annotations / "data" / f"{category}_kps.mat"
        inds = load_mat(keypoint_file, ("kp_perm_inds",), "keypoint file")["kp_perm_inds"]
        permutation = tuple(int(v) - 1 for v in np.atleast_1d(inds))
        config = AugmentConfig(
            image_size=image_size,
            padding=padding,
            jitter=jitter,
            augment=augments(split, augment),
            seed=seed,
        )
        sfm_path = annotations / "sfm" / f"{category}_{split}.mat"
        super().__init__(
            image_dir=root / "Images",
            annotation_path=annotations / "data" / f"{category}_{split}.mat",
            sfm_path=sfm_path if sfm_path.is_file() else None,
            keypoint_permutation=permutation,
            config=config,
        )
        self.split = split
        self.category = category
