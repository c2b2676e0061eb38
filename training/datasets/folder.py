"""A plain folder of images, with optional masks: the loader for the user's own photos.

Contract:

- Images are the files with an image suffix under ``root/images`` when that folder exists, else under
  ``root`` (searched recursively, sorted by relative path, the mask folder excluded).
- Masks come from ``mask_dir`` (default ``root/masks`` when it exists): for ``images/a/b.jpg`` the file
  ``masks/a/b.<any image suffix>``, white object on black (or its alpha channel). When a mask folder is
  used every image must have its mask (``FileNotFoundError`` otherwise). Without a mask folder an image's
  own alpha channel is its mask; without either, the mask is all ones.
- With a mask (``crop=True``, the default) each item is the square box around the mask grown by
  ``padding`` (CMR's 5 %), jittered by ``jitter`` when ``augment``, outside the photo filled with 1 (image)
  and 0 (mask); without a mask, the largest centred square. Then resized to ``image_size``; mirrored with
  probability 1/2 when ``augment``. Randomness from ``numpy.random.default_rng((seed, epoch, index))``.
- Items: "image" (3, S, S), "mask" (1, S, S), "index", "name" (the path relative to the image folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training.datasets import transforms
from training.datasets._io import IMAGE_SUFFIXES, read_plane, read_rgba


def list_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted, skipping anything under ``exclude``."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if exclude is not None and exclude in path.parents:
            continue
        files.append(path)
    return files


class ImageFolderDataset(Dataset[dict[str, Any]]):
    """Images (and masks) from a folder; see the module docstring."""

    def __init__(
        self,
        root: str | Path,
        *,
        image_size: int = 128,
        mask_dir: str | Path | None = None,
        crop: bool = True,
        padding: float = 0.05,
        jitter: float = 0.05,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: expected the directory {self.root}")
        self.image_dir = self.root / "images" if (self.root / "images").is_dir() else self.root
        default_masks = self.root / "masks"
        self.mask_dir = (
            Path(mask_dir) if mask_dir is not None else (default_masks if default_masks.is_dir() else None)
        )
        if self.mask_dir is not None and not self.mask_dir.is_dir():
            raise FileNotFoundError(f"mask folder not found: expected the directory {self.mask_dir}")
        self.files = list_images(self.image_dir, exclude=self.mask_dir)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {self.image_dir}")
        self.image_size = image_size
        self.crop = crop
        self.padding = padding
        self.jitter = jitter
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Draw new jitter and mirroring for every item (the same within one epoch)."""
        self.epoch = int(epoch)

    def mask_path(self, index: int) -> Path | None:
        """The mask file of image ``index``, None without a mask folder."""
        if self.mask_dir is None:
            return None
        stem = self.files[index].relative_to(self.image_dir).with_suffix("")
        for suffix in IMAGE_SUFFIXES:
            candidate = self.mask_dir / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"mask of {self.files[index]} not found: expected {self.mask_dir / stem}.png "
            "(or another image type)"
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image, alpha = read_rgba(self.files[index])  # (H, W, 3), (H, W) or None
        mask_file = self.mask_path(index)
        mask = read_plane(mask_file) if mask_file is not None else alpha
        if mask is not None and mask.shape != image.shape[:2]:
            raise ValueError(f"mask {mask_file} has shape {mask.shape}, its image is {image.shape[:2]}")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        box = transforms.box_of_mask(mask) if (mask is not None and self.crop) else None
        if box is not None:
            jitter = self.jitter if self.augment else 0.0
            crop_box = transforms.square_box(transforms.pad_and_jitter_box(box, self.padding, jitter, rng))
        else:
            height, width = image.shape[:2]
            side = min(height, width)
            crop_box = transforms.CropBox((width - side) // 2, (height - side) // 2, side)
        size = self.image_size
        image = transforms.crop_and_resize(image, crop_box, size, 1.0)
        if mask is None:
            mask = np.ones((size, size), dtype=np.float32)
        else:
            mask = transforms.crop_and_resize(mask[..., None], crop_box, size, 0.0)[..., 0]
        if self.augment and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(np.clip(image, 0, 1).transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(np.clip(mask, 0, 1)[None])),  # (1, S, S)
            "index": index,
            "name": str(self.files[index].relative_to(self.image_dir)),
        }
