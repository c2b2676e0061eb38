"""CelebACrops with Unsup3d's crop boxes (celeba_crop_bbox.txt) and with pre-cropped folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from training.datasets import CelebACrops


def _write_photos(root: Path) -> list[np.ndarray]:
    (root / "img_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    photos = []
    for i in range(3):
        photo = rng.integers(0, 256, size=(50, 40, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "img_celeba" / f"{i:06d}.png")
        photos.append(photo)
    rows = [
        "000000.png 0 5 10 20 24",  # inside the photo
        "000001.png 0 -6 30 25 30",  # reaches past the left and bottom borders: replicated
        "000002.png 2 4 4 8 8",  # a test crop of 8 pixels: Unsup3d skips boxes of 10 pixels or less
    ]
    (root / "celeba_crop_bbox.txt").write_text("\n".join(rows) + "\n")
    return photos


def test_crops_follow_unsup3d_replicate_padding(tmp_path: Path) -> None:
    photos = _write_photos(tmp_path)
    dataset = CelebACrops(tmp_path, "train", image_size=128, augment=False)
    assert len(dataset) == 2
    item = dataset[1]
    assert set(item) == {"image", "mask", "index", "name"} and item["name"] == "000001.png"
    # Unsup3d: pad by (h, w) with replicated borders and cut [y0 + h : y0 + 2h, x0 + w : x0 + 2w]
    photo = photos[1].astype(np.float32) / 255.0
    padded = np.pad(photo, ((30, 30), (25, 25), (0, 0)), mode="edge")
    crop = padded[30 + 30 : 30 + 60, -6 + 25 : -6 + 50]
    expected = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert torch.equal(item["mask"], torch.ones(1, 128, 128))


def test_split_codes_and_default_size(tmp_path: Path) -> None:
    _write_photos(tmp_path)
    assert len(CelebACrops(tmp_path, "test")) == 0  # the only test box is too small
    assert len(CelebACrops(tmp_path, "val")) == 0
    assert CelebACrops(tmp_path)[0]["image"].shape == (3, 64, 64)
    with pytest.raises(ValueError, match="split must be one of"):
        CelebACrops(tmp_path, "training")


def test_training_items_are_mirrored_sometimes(tmp_path: Path) -> None:
    _write_photos(tmp_path)
    plain = CelebACrops(tmp_path, augment=False)[0]["image"]
    dataset = CelebACrops(tmp_path)
    flips = 0
    for epoch in range(10):
        dataset.set_epoch(epoch)
        image = dataset[0]["image"]
        assert torch.equal(image, plain) or torch.equal(image, plain.flip(-1))
        flips += torch.equal(image, plain.flip(-1))
    assert 0 < flips < 10


def test_precropped_folder(tmp_path: Path) -> None:
    folder = tmp_path / "celeba_cropped" / "val"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((128, 128, 3), 200, np.uint8)).save(folder / "000010.jpg")
    dataset = CelebACrops(tmp_path, "val")
    assert len(dataset) == 1 and dataset[0]["image"].shape == (3, 64, 64)


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"celeba_crop_bbox\.txt"):
        CelebACrops(tmp_path)
    (tmp_path / "celeba_crop_bbox.txt").write_text("000000.png 0 5 10\n")
    with pytest.raises(ValueError, match=r"celeba_crop_bbox.txt:1: expected 'fname split x0 y0 w h'"):
        CelebACrops(tmp_path)
    (tmp_path / "celeba_crop_bbox.txt").write_text("000000.png 0 5 10 20 24\n")
    with pytest.raises(FileNotFoundError, match=r"img_celeba/000000.png"):
        CelebACrops(tmp_path)[0]
