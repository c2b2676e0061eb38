"""CelebA faces cropped with Unsup3d's boxes (Wu et al. 2020, ``data/celeba_crop.py``).

Contract. Either layout of ``root`` works:

- the in-the-wild photos and the crop boxes: ``root/img_celeba/<fname>`` and ``root/celeba_crop_bbox.txt``,
  one row per photo ``fname split x0 y0 w h`` (split 0 train, 1 val, 2 test; pixels, 0-based). Each item
  is Unsup3d's crop: the photo padded by h rows and w columns on each side with replicated borders, the
  box [y0, y0 + h) x [x0, x0 + w) cut out and resized to 128 x 128 (bilinear), then to ``image_size``
  (area). Boxes of 10 pixels or less are skipped, as Unsup3d does.
- the crops Unsup3d's script writes: ``root/celeba_cropped/<split>/*.jpg`` (or ``root/<split>/*.jpg``),
  resized to ``image_size``.

Items: "image" (3, S, S), "mask" (1, S, S) of ones (CelebA has no masks: the crop is the object),
"index", "name" (the file name). With ``augment`` (default: the "train" split) the item is mirrored
with probability 1/2 (Unsup3d's only augmentation), drawn from ``default_rng((seed, epoch, index))``.
Unsup3d trains at 64 x 64, the default ``image_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from training.datasets._io import IMAGE_SUFFIXES, read_rgb
from training.datasets.transforms import augments, resize_square

BOX_FILE = "celeba_crop_bbox.txt"
PHOTO_DIR = "img_celeba"
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}
UNSUP3D_CROP_SIZE = 128
"""Side of the crops Unsup3d's script writes before the loader resizes them."""


@dataclass(frozen=True)
class CropEntry:
    """One photo and its crop box (x0, y0, w, h), or a pre-cropped file (box None)."""

    path: Path
    box: tuple[int, int, int, int] | None


def read_crop_boxes(path: Path, split: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Rows ``(fname, (x0, y0, w, h))`` of ``split`` in Unsup3d's box file (boxes > 10 px only)."""
    if split not in SPLIT_CODES.values():
        raise ValueError(f"CelebA split must be one of {sorted(SPLIT_CODES.values())}, got {split!r}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != 6 or words[1] not in SPLIT_CODES:
            raise ValueError(
                f"{path}:{number}: expected 'fname split x0 y0 w h' with split 0, 1 or 2, got {line!r}"
            )
        try:
            x0, y0, width, height = (int(float(v)) for v in words[2:])
        except ValueError as error:
            raise ValueError(f"{path}:{number}: the box must be four numbers, got {words[2:]}") from error
        if SPLIT_CODES[words[1]] == split and width > 10 and height > 10:
            rows.append((words[0], (x0, y0, width, height)))
    return rows


def unsup3d_crop(photo: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Unsup3d's crop of an (H, W, 3) photo: replicate-padded box -> (128, 128, 3) float32."""
    x0, y0, width, height = box
    padded = cv2.copyMakeBorder(photo, height, height, width, width, cv2.BORDER_REPLICATE)
    crop = padded[y0 + height : y0 + 2 * height, x0 + width : x0 + 2 * width]
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"the crop box {box} lies outside the photo of shape {photo.shape[:2]}")
    size = UNSUP3D_CROP_SIZE
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)


class CelebACrops(Dataset[dict[str, Any]]):
    """CelebA face crops (Unsup3d's protocol); see the module docstring."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        image_size: int = 64,
        augment: bool | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        self.augment = augments(split, augment)
        self.seed = seed
        self.epoch = 0
        boxes = self.root / BOX_FILE
        if boxes.is_file():
            photos = self.root / PHOTO_DIR
            self.entries = [CropEntry(photos / name, box) for name, box in read_crop_boxes(boxes, split)]
        else:
            folder = next(
                (d for d in (self.root / "celeba_cropped" / split, self.root / split) if d.is_dir()), None
            )
            if folder is None:
                raise FileNotFoundError(
                    f"CelebA not found under {self.root}: expected {boxes} with {self.root / PHOTO_DIR}, "
                    f"or cropped images in {self.root / 'celeba_cropped' / split}"
                )
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            self.entries = [CropEntry(path, None) for path in files]

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Draw new mirroring for every item (the same within one epoch)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        entry = self.entries[index]
        image = read_rgb(entry.path)
        if entry.box is not None:
            image = unsup3d_crop(image, entry.box)
        image = np.clip(resize_square(image, self.image_size), 0.0, 1.0)  # (S, S, 3)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.augment and rng.random() < 0.5:
            image = image[:, ::-1]
        size = self.image_size
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (3, S, S)
            "mask": torch.ones(1, size, size, device="cpu"),  # (1, S, S); the loop moves batches
            "index": index,
            "name": entry.path.name,
        }
