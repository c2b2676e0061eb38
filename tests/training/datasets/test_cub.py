"""CubDataset on a tiny fixture written in CMR's exact .mat layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch

from backend.geometry import Camera
from training.datasets import CubDataset
from training.datasets.transforms import CUB_KEYPOINT_PERMUTATION, mirror_camera

WriteCmr = Callable[..., list[Any]]


def _write_cub(root: Path, write_cmr: WriteCmr, count: int = 3, split: str = "train") -> list[Any]:
    rel_paths = [f"001.Black_footed_Albatross/Black_Footed_Albatross_000{i}_1.png" for i in range(count)]
    return write_cmr(
        root / "images",
        root / "data" / f"{split}_cub_cleaned.mat",
        root / "sfm" / f"anno_{split}.mat",
        rel_paths,
        CUB_KEYPOINT_PERMUTATION,
    )


def _project(camera: torch.Tensor, points: np.ndarray) -> np.ndarray:
    c = camera[None].double()
    cam = Camera.weak_perspective(c[:, 0], c[:, 1:3], c[:, 3:7])
    return cam.project(torch.from_numpy(points))[0, :, :2].numpy()


def test_items_have_the_documented_keys_shapes_and_ranges(tmp_path: Path, write_cmr: WriteCmr) -> None:
    _write_cub(tmp_path, write_cmr)
    dataset = CubDataset(tmp_path, "train", image_size=64, augment=False)
    assert len(dataset) == 3
    item = dataset[1]
    assert set(item) == {"image", "mask", "keypoints", "camera", "index", "name"}
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 64, 64) and 0.0 <= item["mask"].min() <= item["mask"].max() <= 1.0
    assert item["keypoints"].shape == (15, 3) and item["camera"].shape == (7,)
    assert item["index"] == 1 and item["name"].endswith("_0001_1.png")
    assert item["keypoints"][3].tolist() == [0.0, 0.0, 0.0]  # invisible keypoints are zeros, as in CMR


def test_keypoints_follow_the_padded_square_crop(tmp_path: Path, write_cmr: WriteCmr) -> None:
    photo = _write_cub(tmp_path, write_cmr)[0]
    item = CubDataset(tmp_path, "train", image_size=64, augment=False)[0]
    x1, y1, x2, y2 = photo.bbox
    width, height = x2 - x1 + 1, y2 - y1 + 1
    side = round(max(width, height) * 1.1)  # 5 % padding on each side
    centre_x, centre_y = (x1 - 1 + x2) / 2, (y1 - 1 + y2) / 2
    x0, y0 = np.floor(centre_x - side / 2 + 0.5), np.floor(centre_y - side / 2 + 0.5)
    u, v = photo.parts[0, 0] - 0.5, photo.parts[1, 0] - 0.5  # keypoint 0, continuous pixels
    expected = [2 * (u - x0) / side - 1, 1 - 2 * (v - y0) / side]
    np.testing.assert_allclose(item["keypoints"][0, :2].numpy(), expected, atol=1e-5)


def test_the_camera_projects_the_3d_keypoints_onto_the_keypoints(tmp_path: Path, write_cmr: WriteCmr) -> None:
    photos = _write_cub(tmp_path, write_cmr)
    dataset = CubDataset(tmp_path, "train", image_size=64, augment=False)
    for index, photo in enumerate(photos):
        item = dataset[index]
        visible = item["keypoints"][:, 2].numpy() > 0
        projected = _project(item["camera"], photo.keypoints_3d)
        np.testing.assert_allclose(projected[visible], item["keypoints"][visible, :2].numpy(), atol=1e-5)


def test_the_mask_is_cropped_with_padding(tmp_path: Path, write_cmr: WriteCmr) -> None:
    _write_cub(tmp_path, write_cmr)
    mask = CubDataset(tmp_path, "train", image_size=110, augment=False)[0]["mask"][0].numpy() > 0.5
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    # the longer side of the box spans 100 of the 110 pixels; 5 pixels of padding on each side
    assert min(columns[0], 109 - columns[-1]) in range(3, 8)
    assert rows[0] > 5 and 109 - rows[-1] > 5


def test_augmentation_mirrors_keypoints_and_camera_consistently(tmp_path: Path, write_cmr: WriteCmr) -> None:
    photo = _write_cub(tmp_path, write_cmr, count=1)[0]
    plain = CubDataset(tmp_path, "train", image_size=64, augment=False)[0]
    dataset = CubDataset(tmp_path, "train", image_size=64)  # train: jitter and mirror on
    mirrored_count = 0
    for epoch in range(12):
        dataset.set_epoch(epoch)
        item = dataset[0]
        again = dataset[0]
        assert torch.equal(item["image"], again["image"])  # the same within an epoch
        mirrored = np.allclose(item["camera"][3:], mirror_camera(plain["camera"].numpy())[3:], atol=1e-5)
        assert mirrored or np.allclose(item["camera"][3:], plain["camera"][3:], atol=1e-5)
        mirrored_count += mirrored
        visible = item["keypoints"][:, 2].numpy() > 0
        projected = _project(item["camera"], photo.keypoints_3d)
        np.testing.assert_allclose(projected[visible], item["keypoints"][visible, :2].numpy(), atol=1e-5)
        if mirrored:  # LEye (6) is now where REye (10) was, and REye's invisible slot moved
            assert (
                item["keypoints"][:, 2].tolist()
                == plain["keypoints"][list(CUB_KEYPOINT_PERMUTATION), 2].tolist()
            )
    assert 0 < mirrored_count < 12


def test_a_single_image_struct_array_survives_squeeze_me(tmp_path: Path, write_cmr: WriteCmr) -> None:
    _write_cub(tmp_path, write_cmr, count=1, split="test")
    dataset = CubDataset(tmp_path, "test", image_size=32)
    assert len(dataset) == 1 and dataset.config.augment is False
    assert dataset[0]["image"].shape == (3, 32, 32)


def test_separate_annotation_root_and_no_sfm(tmp_path: Path, write_cmr: WriteCmr) -> None:
    cache = tmp_path / "cachedir" / "cub"
    rel = ["a/b.png"]
    write_cmr(tmp_path / "CUB_200_2011" / "images", cache / "data" / "val_cub_cleaned.mat", None, rel)
    item = CubDataset(tmp_path / "CUB_200_2011", "val", annotation_root=cache, image_size=32)[0]
    assert "camera" not in item and item["keypoints"].shape == (15, 3)


def test_part_maps_in_scops_layout_are_cropped_and_mirrored(tmp_path: Path, write_cmr: WriteCmr) -> None:
    from training.datasets.cmr import PartMaps

    photo = _write_cub(tmp_path, write_cmr, count=1)[0]
    height, width = photo.mask.shape
    parts = np.zeros((height, width, 3), dtype=np.float32)
    parts[..., 0] = 1 - photo.mask
    parts[:, : width // 2, 1] = photo.mask[:, : width // 2]
    parts[:, width // 2 :, 2] = photo.mask[:, width // 2 :]
    target = tmp_path / "scops" / Path(photo.rel_path).with_suffix(".npy")
    target.parent.mkdir(parents=True)
    np.save(target, parts)
    maps = PartMaps(tmp_path / "scops", num_channels=3, channel_permutation=(0, 2, 1))
    plain = CubDataset(tmp_path, image_size=32, augment=False, part_maps=maps)[0]
    assert plain["parts"].shape == (3, 32, 32)
    np.testing.assert_allclose(plain["parts"].sum(0).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(plain["parts"][0].numpy(), 1 - plain["mask"][0].numpy(), atol=1e-5)
    dataset = CubDataset(tmp_path, image_size=32, jitter=0.0, part_maps=maps)
    for epoch in range(8):
        dataset.set_epoch(epoch)
        item = dataset[0]
        if not torch.equal(item["image"], plain["image"]):  # mirrored: left part is now on the left again
            np.testing.assert_allclose(
                item["parts"][1].numpy(), plain["parts"][2].flip(-1).numpy(), atol=1e-6
            )
            return
    pytest.fail("no item was mirrored in 8 epochs")


def test_missing_and_malformed_files_say_what_was_expected(tmp_path: Path, write_cmr: WriteCmr) -> None:
    with pytest.raises(FileNotFoundError, match=r"train_cub_cleaned\.mat"):
        CubDataset(tmp_path)
    photos = _write_cub(tmp_path, write_cmr, count=2)
    (tmp_path / "images" / photos[1].rel_path).unlink()
    with pytest.raises(FileNotFoundError, match=r"Black_Footed_Albatross_0001_1\.png"):
        CubDataset(tmp_path, augment=False)[1]
    annotation = tmp_path / "data" / "train_cub_cleaned.mat"
    data = scipy.io.loadmat(str(annotation))
    data["images"][0, 0]["mask"] = np.zeros((3, 3), np.uint8)
    scipy.io.savemat(str(annotation), {"images": data["images"]})
    with pytest.raises(ValueError, match=r"mask has shape \(3, 3\)"):
        CubDataset(tmp_path, augment=False)[0]
    data["images"][0, 0]["parts"] = np.zeros((2, 15))
    scipy.io.savemat(str(annotation), {"images": data["images"]})
    with pytest.raises(ValueError, match="parts must be 3 x K"):
        CubDataset(tmp_path, augment=False)
    scipy.io.savemat(str(annotation), {"other": np.zeros(2)})
    with pytest.raises(ValueError, match="no variable 'images'"):
        CubDataset(tmp_path)


def test_sfm_and_annotations_must_correspond(tmp_path: Path, write_cmr: WriteCmr) -> None:
    _write_cub(tmp_path, write_cmr, count=2)
    sfm = tmp_path / "sfm" / "anno_train.mat"
    data = scipy.io.loadmat(str(sfm))
    scipy.io.savemat(str(sfm), {"sfm_anno": data["sfm_anno"][:, :1]})
    with pytest.raises(ValueError, match="1 sfm_anno entries but"):
        CubDataset(tmp_path)


def test_umr_scops_file_names_are_found_and_ambiguity_is_an_error(
    tmp_path: Path, write_cmr: WriteCmr
) -> None:
    from training.datasets.cmr import PartMaps

    photo = _write_cub(tmp_path, write_cmr, count=1)[0]
    height, width = photo.mask.shape
    parts = np.zeros((height, width, 3), dtype=np.float32)
    parts[..., 0] = 1 - photo.mask
    parts[..., 1] = photo.mask
    stem = Path(photo.rel_path).with_suffix("")
    folder = tmp_path / "scops" / stem.parent
    folder.mkdir(parents=True)
    np.save(folder / f"{stem.name}_17.npy", parts)  # UMR: <class dir>/<image name>_<number>.npy
    maps = PartMaps(tmp_path / "scops", num_channels=3)
    item = CubDataset(tmp_path, image_size=32, augment=False, part_maps=maps)[0]
    np.testing.assert_allclose(item["parts"][1].numpy(), item["mask"][0].numpy(), atol=1e-5)
    np.save(folder / f"{stem.name}_18.npy", parts)
    with pytest.raises(ValueError, match="ambiguous"):
        CubDataset(tmp_path, image_size=32, augment=False, part_maps=maps)[0]


def test_the_synthetic_layout_gives_the_ground_truth_mesh_of_each_photo(tmp_path: Path) -> None:
    from backend.render.renderer import render
    from backend.render.settings import RasterSettings
    from training.datasets.synthetic import SyntheticConfig, generate

    generate(
        tmp_path,
        SyntheticConfig(category="bird", n=3, layout="cub", size=64, views=2, splits=(("train", 1.0),)),
    )
    dataset = CubDataset(tmp_path, image_size=64, augment=False)
    assert len(dataset) == 6
    for index in (0, 3, 5):
        item, mesh = dataset[index], dataset.ground_truth_mesh(index)
        assert mesh is not None
        camera = item["camera"][None]
        rendered = render(
            mesh.vertices, mesh.faces, Camera.weak_perspective(camera[:, 0], camera[:, 1:3], camera[:, 3:7]),
            RasterSettings(64, soft=False),
        ).alpha[0, ..., 0]  # fmt: skip
        overlap = (rendered * item["mask"][0]).sum() / (
            rendered + item["mask"][0] - rendered * item["mask"][0]
        ).sum()
        assert overlap > 0.85, (index, float(overlap))  # hard edges of a 64-pixel render


def test_real_cub_has_no_ground_truth_mesh(tmp_path: Path, write_cmr: WriteCmr) -> None:
    _write_cub(tmp_path, write_cmr, count=1)
    assert CubDataset(tmp_path, image_size=32, augment=False).ground_truth_mesh(0) is None
