"""ImageFolderDataset: images with a mask folder, with alpha, or alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.datasets import ImageFolderDataset


def _square_mask(height: int = 40, width: int = 60) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[10:30, 20:40] = 255  # a 20 x 20 object
    return mask


def test_images_with_a_mask_folder_are_cropped_around_the_mask(tmp_path: Path) -> None:
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "masks" / "sub").mkdir(parents=True)
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:30, 20:40] = [255, 0, 0]
    Image.fromarray(image).save(tmp_path / "images" / "sub" / "a.jpg")
    Image.fromarray(_square_mask()).save(tmp_path / "masks" / "sub" / "a.png")
    dataset = ImageFolderDataset(tmp_path, image_size=22, padding=0.05)
    assert len(dataset) == 1
    item = dataset[0]
    assert item["name"] == "sub/a.jpg" and item["image"].shape == (3, 22, 22)
    mask = item["mask"][0].numpy()
    assert (
        mask[1:21, 1:21].min() > 0.99 and mask[0].max() < 0.01 and mask[:, 21].max() < 0.01
    )  # 1 px of padding
    assert item["image"][0, 5:15, 5:15].min() > 0.9  # the red object fills the crop


def test_alpha_is_the_mask_without_a_mask_folder_and_ones_without_either(tmp_path: Path) -> None:
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 3] = _square_mask()
    Image.fromarray(rgba).save(tmp_path / "with_alpha.png")
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "plain.png")
    dataset = ImageFolderDataset(tmp_path, image_size=16)
    names = [dataset[i]["name"] for i in range(len(dataset))]
    assert names == ["plain.png", "with_alpha.png"]
    assert torch.equal(dataset[0]["mask"], torch.ones(1, 16, 16))
    alpha_mask = dataset[1]["mask"]
    assert alpha_mask.mean() < 0.95 and alpha_mask[0, 8, 8] == 1.0


def test_augmentation_mirrors_some_items(tmp_path: Path) -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:30, 20:30] = 255  # left half of the object white
    Image.fromarray(image).save(tmp_path / "a.png")
    (tmp_path / "masks").mkdir()
    Image.fromarray(_square_mask()).save(tmp_path / "masks" / "a.png")
    plain = ImageFolderDataset(tmp_path, image_size=22)[0]["image"]
    dataset = ImageFolderDataset(tmp_path, image_size=22, augment=True, jitter=0.0)
    flips = 0
    for epoch in range(10):
        dataset.set_epoch(epoch)
        image_t = dataset[0]["image"]
        flips += torch.equal(image_t, plain.flip(-1))
        assert torch.equal(image_t, plain) or torch.equal(image_t, plain.flip(-1))
    assert 0 < flips < 10


def test_missing_things_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "absent")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "b.png")
    with pytest.raises(FileNotFoundError, match=r"mask of .*b\.png not found"):
        ImageFolderDataset(tmp_path)[0]
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"has shape \(4, 4\), its image is \(8, 8\)"):
        ImageFolderDataset(tmp_path)[0]
