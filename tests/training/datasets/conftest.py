"""Fixtures writing tiny datasets in exactly the published formats (CMR's .mat files: CUB, PASCAL3D+).

The writers here are the tests' own (``scipy.io.savemat`` of numpy record arrays, which MATLAB and scipy
read as struct arrays), independent of the synthetic generator's writers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from training.datasets.transforms import CUB_KEYPOINT_PERMUTATION, quaternion_to_matrix


def struct_array(records: list[dict[str, object]]) -> np.ndarray:
    """A record array savemat writes as a 1 x N MATLAB struct array."""
    names = list(records[0])
    array = np.zeros((len(records),), dtype=[(name, object) for name in names])
    for i, record in enumerate(records):
        for name in names:
            array[i][name] = record[name]
    return array


@dataclass
class CmrPhoto:
    """One photo of a CMR fixture and the ground truth it was made from."""

    rel_path: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 0/1
    keypoints_3d: np.ndarray  # (K, 3), symmetric under the keypoint permutation
    rot: np.ndarray
    scale: float
    trans: np.ndarray  # (2,) 1-based pixels
    parts: np.ndarray  # (3, K) 1-based, zeros when invisible
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 1-based


def symmetric_keypoints(rng: np.random.Generator, permutation: tuple[int, ...]) -> np.ndarray:
    points = rng.uniform(-0.5, 0.5, size=(len(permutation), 3))
    for k, partner in enumerate(permutation):
        if partner == k:
            points[k, 0] = 0.0
        elif partner > k:
            points[partner] = points[k] * np.array([-1.0, 1.0, 1.0])
    return points


def make_photo(
    rng: np.random.Generator, rel_path: str, permutation: tuple[int, ...], size: tuple[int, int] = (60, 80)
) -> CmrPhoto:
    """A photo with an elliptic object, keypoints projected by a known sfm pose (CMR's formula)."""
    height, width = size
    q = rng.normal(size=4)
    rot = quaternion_to_matrix(q / np.linalg.norm(q))
    scale = float(rng.uniform(15, 22))
    trans = np.array([width / 2 + rng.uniform(-4, 4), height / 2 + rng.uniform(-4, 4)])
    keypoints_3d = symmetric_keypoints(rng, permutation)
    projected = scale * (keypoints_3d @ rot.T)[:, :2] + trans  # (K, 2) 1-based pixels, y down
    parts = np.vstack([projected.T, np.ones(len(permutation))])
    parts[:, 3] = 0.0  # one invisible keypoint, written as zeros like CUB's
    rows, columns = np.mgrid[0:height, 0:width]
    mask = (((columns - trans[0] + 1) / 22.0) ** 2 + ((rows - trans[1] + 1) / 14.0) ** 2 < 1).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    image = (rng.uniform(0, 255, size=(height, width, 3))).astype(np.uint8)
    bbox = (float(xs.min() + 1), float(ys.min() + 1), float(xs.max() + 1), float(ys.max() + 1))
    return CmrPhoto(rel_path, image, mask, keypoints_3d, rot, scale, trans, parts, bbox)


WriteCmr = Callable[..., list[CmrPhoto]]


@pytest.fixture
def write_cmr() -> WriteCmr:
    """``write_cmr(image_dir, annotation_path, sfm_path, rel_paths, permutation, seed)`` -> the photos."""

    def write(
        image_dir: Path,
        annotation_path: Path,
        sfm_path: Path | None,
        rel_paths: list[str],
        permutation: tuple[int, ...] = CUB_KEYPOINT_PERMUTATION,
        seed: int = 0,
        extra_fields: dict[str, object] | None = None,
    ) -> list[CmrPhoto]:
        rng = np.random.default_rng(seed)
        photos = [make_photo(rng, rel, permutation) for rel in rel_paths]
        for photo in photos:
            path = image_dir / photo.rel_path.replace("\\", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo.image).save(path)
        records = []
        for photo in photos:
            x1, y1, x2, y2 = photo.bbox
            records.append(
                {
                    "rel_path": photo.rel_path,
                    "bbox": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                    "parts": photo.parts,
                    "mask": photo.mask,
                    **(extra_fields or {}),
                }
            )
        annotation_path.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(annotation_path), {"images": struct_array(records)})
        if sfm_path is not None:
            sfm_path.parent.mkdir(parents=True, exist_ok=True)
            sfm = [{"rot": p.rot, "scale": p.scale, "trans": p.trans} for p in photos]
            scipy.io.savemat(
                str(sfm_path),
                {
                    "sfm_anno": struct_array(sfm),
                    "S": photos[0].keypoints_3d.T,
                    "conv_tri": np.ones((4, 3), np.uint8),
                },
            )
        return photos

    return write
