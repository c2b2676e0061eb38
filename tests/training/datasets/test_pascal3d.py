"""Pascal3DCars on a tiny fixture in CMR's PASCAL3D+ layout (backslash paths, kp_perm_inds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch

from backend.geometry import Camera
from training.datasets import Pascal3DCars
from training.datasets.transforms import mirror_camera

WriteCmr = Callable[..., list[Any]]
CAR_KEYPOINTS = [
    "left_front_wheel", "left_back_wheel", "right_front_wheel", "right_back_wheel",
    "upper_left_windshield", "upper_right_windshield", "upper_left_rearwindow", "upper_right_rearwindow",
    "left_front_light", "right_front_light", "left_back_trunk", "right_back_trunk",
]  # fmt: skip
CAR_PERMUTATION = (2, 3, 0, 1, 5, 4, 7, 6, 9, 8, 11, 10)


def _write_p3d(root: Path, write_cmr: WriteCmr, split: str = "train") -> list[Any]:
    rel_paths = ["car_imagenet\\n02814533_10008.JPEG", "car_pascal\\2008_000027.jpg"]
    extra = {
        "width": 80.0,
        "height": 60.0,
        "cad_index": 3.0,
        "voc_image_id": "x",
        "voc_rec_id": 1.0,
        "is_train": 1.0,
    }
    photos = write_cmr(
        root / "Images", root / "data" / f"car_{split}.mat", root / "sfm" / f"car_{split}.mat",
        rel_paths, CAR_PERMUTATION, 7, extra,
    )  # fmt: skip
    scipy.io.savemat(
        str(root / "data" / "car_kps.mat"),
        {"kp_perm_inds": np.array(CAR_PERMUTATION) + 1, "kp_names": np.array(CAR_KEYPOINTS, dtype=object)},
    )
    return photos


def test_backslash_paths_keypoints_and_camera(tmp_path: Path, write_cmr: WriteCmr) -> None:
    photos = _write_p3d(tmp_path, write_cmr)
    dataset = Pascal3DCars(tmp_path, "train", image_size=48, augment=False)
    assert len(dataset) == 2
    item = dataset[0]
    assert item["name"] == "car_imagenet/n02814533_10008.JPEG"
    assert item["image"].shape == (3, 48, 48) and item["keypoints"].shape == (12, 3)
    visible = item["keypoints"][:, 2] > 0
    c = item["camera"][None].double()
    projected = Camera.weak_perspective(c[:, 0], c[:, 1:3], c[:, 3:7]).project(
        torch.from_numpy(photos[0].keypoints_3d)
    )[0, :, :2]
    np.testing.assert_allclose(projected[visible].numpy(), item["keypoints"][visible, :2].numpy(), atol=1e-5)


def test_mirroring_uses_the_kps_file_permutation(tmp_path: Path, write_cmr: WriteCmr) -> None:
    _write_p3d(tmp_path, write_cmr)
    plain = Pascal3DCars(tmp_path, image_size=48, augment=False)[1]
    dataset = Pascal3DCars(tmp_path, image_size=48, jitter=0.0)
    for epoch in range(10):
        dataset.set_epoch(epoch)
        item = dataset[1]
        if np.allclose(item["camera"][3:], mirror_camera(plain["camera"].numpy())[3:], atol=1e-5):
            expected = plain["keypoints"][list(CAR_PERMUTATION)].clone()
            expected[:, 0] = -expected[:, 0]
            np.testing.assert_allclose(item["keypoints"].numpy(), expected.numpy(), atol=1e-5)
            assert torch.allclose(item["image"], plain["image"].flip(-1))
            return
    pytest.fail("no item was mirrored in 10 epochs")


def test_missing_keypoint_file_is_named(tmp_path: Path, write_cmr: WriteCmr) -> None:
    _write_p3d(tmp_path, write_cmr)
    (tmp_path / "data" / "car_kps.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"car_kps\.mat"):
        Pascal3DCars(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"car_val\.mat"):
        scipy.io.savemat(str(tmp_path / "data" / "car_kps.mat"), {"kp_perm_inds": np.arange(1, 13)})
        Pascal3DCars(tmp_path, "val")
