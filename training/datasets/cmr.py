"""Photos annotated in CMR's .mat format (CUB-200-2011, PASCAL3D+): the loader both datasets share.

Contract (the files, as CMR's ``cachedir`` holds them; read with ``scipy.io.loadmat(struct_as_record=False,
squeeze_me=True)``):

- an annotation file whose variable ``images`` is a struct array, one element per photo, with fields
  ``rel_path`` (path of the photo under the image folder; PASCAL3D+ writes Windows backslashes, read as
  ``/``), ``bbox`` (struct ``x1, y1, x2, y2``, 1-based inclusive pixels), ``parts`` (3 x K: x, y, visibility,
  1-based pixels) and ``mask`` (H x W, 0/1 or 0/255, the photo's size);
- optionally an sfm file whose variable ``sfm_anno`` is a struct array with the same number of elements,
  fields ``rot`` (3 x 3), ``scale`` (pixels) and ``trans`` (2, 1-based pixels): the weak-perspective camera
  of the structure-from-motion fit of the keypoints (see ``training.datasets.transforms``).

Each item is CMR's: a square crop around the box grown by ``padding`` (5 %), jittered by ``jitter`` (5 %)
and mirrored with probability 1/2 when ``augment`` (CMR: the training split), resized to ``image_size``.
Outside the photo the image is filled with 1 (white) and the mask with 0, as CMR does. Items are
``dict``s with the keys of ``training.datasets`` (image, mask, keypoints, camera when there is an sfm file,
parts when there are part maps, index, name). Keypoints that are not visible are (0, 0, 0), as in CMR.

Randomness comes from ``numpy.random.default_rng((seed, epoch, index))``: an item is the same every time
it is read in one epoch (``set_epoch`` moves to the next), and DataLoader workers need no seeding.

Part maps (optional, ``part_dir``): for a photo ``a/b.jpg`` the file ``part_dir/a/b.png`` is a label map
(0 background, k part k, the photo's size) turned into ``1 + P`` one-hot channels, or ``part_dir/a/b.npy``
is an (H, W, C) float array of part probabilities with the background first (SCOPS's layout). UMR names
its SCOPS files ``<class dir>/<image name>_<number>.npy``; when ``b.npy`` is absent the single file
``b_<anything>.npy`` beside it is read (two candidates are an error naming both). Without part maps, items
simply have no "parts" key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training.datasets import transforms
from training.datasets._io import as_records, field, load_mat, read_label_map, read_rgb

Sample = dict[str, Any]


@dataclass(frozen=True)
class AugmentConfig:
    """How items are cropped: CMR's defaults.

    Attributes:
        image_size: side S of the square crop, in pixels.
        padding: the box grows by this fraction of its width/height on each side.
        jitter: each side of the box moves by up to this fraction (only when ``augment``).
        augment: jitter and random mirroring on (training) or off (evaluation).
        seed: seed of the per-item random generator.
    """

    image_size: int = 256
    padding: float = 0.05
    jitter: float = 0.05
    augment: bool = True
    seed: int = 0


@dataclass(frozen=True)
class PartMaps:
    """Where per-photo part maps live and how they mirror.

    Attributes:
        directory: folder of ``<rel_path stem>.png`` label maps or ``.npy`` probability maps.
        num_channels: channels per item, background included (label maps are one-hot encoded to this).
        channel_permutation: left/right permutation of the channels (background first), or None.
    """

    directory: Path
    num_channels: int
    channel_permutation: tuple[int, ...] | None = None


class CmrAnnotatedImages(Dataset[Sample]):
    """Photos with CMR's box, keypoint, mask (and sfm) annotations; see the module docstring."""

    def __init__(
        self,
        image_dir: Path,
        annotation_path: Path,
        sfm_path: Path | None,
        keypoint_permutation: tuple[int, ...] | None,
        config: AugmentConfig,
        part_maps: PartMaps | None = None,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.annotation_path = Path(annotation_path)
        self.config = config
        self.part_maps = part_maps
        self.epoch = 0
        if config.image_size < 1:
            raise ValueError(f"image_size must be positive, got {config.image_size}")
        self.records = as_records(load_mat(self.annotation_path, ("images",), "annotation file")["images"])
        self.sfm: list[Any] | None = None
        if sfm_path is not None:
            sfm = as_records(load_mat(Path(sfm_path), ("sfm_anno",), "sfm annotation file")["sfm_anno"])
            if len(sfm) != len(self.records):
                raise ValueError(
                    f"{sfm_path} has {len(sfm)} sfm_anno entries but {self.annotation_path} has "
                    f"{len(self.records)} images: they must correspond one to one"
                )
            self.sfm = sfm
        self.sfm_path = sfm_path
        self.num_keypoints = self._keypoints(0).shape[0] if self.records else 0
        self.keypoint_permutation = (
            None
            if keypoint_permutation is None
            else transforms.check_permutation(
                keypoint_permutation, self.num_keypoints, "keypoint permutation"
            )
        )

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Draw new jitter and mirroring for every item (the same within one epoch)."""
        self.epoch = int(epoch)

    def rel_path(self, index: int) -> str:
        """The photo's path under the image folder, with ``/`` separators."""
        return str(field(self.records[index], "rel_path", self.annotation_path, index)).replace("\\", "/")

    def _keypoints(self, index: int) -> np.ndarray:
        """(K, 3) keypoints in continuous photo pixels (invisible ones zero)."""
        parts = np.asarray(field(self.records[index], "parts", self.annotation_path, index), dtype=np.float64)
        if parts.ndim == 1 and parts.size == 3:
            parts = parts.reshape(3, 1)  # squeeze_me turned a 3 x 1 array into (3,)
        if parts.ndim != 2 or parts.shape[0] != 3:
            raise ValueError(
                f"{self.annotation_path}: record {index} parts must be 3 x K (x, y, visibility), "
                f"got shape {parts.shape}"
            )
        keypoints = parts.T.copy()  # (K, 3)
        visible = keypoints[:, 2] > 0
        keypoints[visible, :2] -= 0.5  # 1-based pixel centre k -> continuous k - 0.5
        keypoints[~visible] = 0.0
        keypoints[:, 2] = visible
        return keypoints

    def _box(self, index: int) -> np.ndarray:
        bbox = field(self.records[index], "bbox", self.annotation_path, index)
        try:
            corners = [float(getattr(bbox, name)) for name in ("x1", "y1", "x2", "y2")]
        except AttributeError as error:
            raise ValueError(
                f"{self.annotation_path}: record {index} bbox must be a struct with x1, y1, x2, y2"
            ) from error
        return transforms.box_from_cmr(*corners)

    def _mask(self, index: int, shape: tuple[int, int], image_path: Path) -> np.ndarray:
        mask = np.asarray(field(self.records[index], "mask", self.annotation_path, index), dtype=np.float32)
        if mask.shape != shape:
            raise ValueError(
                f"{self.annotation_path}: record {index} mask has shape {mask.shape} but the photo "
                f"{image_path} is {shape[0]} x {shape[1]}"
            )
        return mask / 255.0 if mask.size and mask.max() > 1.0 else mask

    def _camera(self, index: int, box: transforms.CropBox) -> np.ndarray | None:
        if self.sfm is None:
            return None
        record, path = self.sfm[index], Path(self.sfm_path or "")
        rot = np.asarray(field(record, "rot", path, index), dtype=np.float64)
        trans = np.asarray(field(record, "trans", path, index), dtype=np.float64)
        scale = float(np.asarray(field(record, "scale", path, index)).reshape(-1)[0])
        if rot.shape != (3, 3):
            raise ValueError(f"{path}: record {index} rot must be 3 x 3, got shape {rot.shape}")
        return transforms.sfm_to_camera(scale, trans, rot, box)

    def _parts(self, index: int, shape: tuple[int, int]) -> np.ndarray | None:
        if self.part_maps is None:
            return None
        stem = str(Path(self.rel_path(index)).with_suffix(""))
        label_path = self.part_maps.directory / f"{stem}.png"
        array_path = self.part_maps.directory / f"{stem}.npy"
        channels = self.part_maps.num_channels
        if not label_path.is_file() and not array_path.is_file():
            array_path = _indexed_array(array_path)
        if label_path.is_file():
            labels = read_label_map(label_path)
            if labels.max() >= channels:
                raise ValueError(f"{label_path} has label {labels.max()} but only {channels} part channels")
            parts = np.eye(channels, dtype=np.float32)[labels]  # (H, W, C)
        elif array_path.is_file():
            parts = np.load(array_path).astype(np.float32)
            if parts.ndim != 3 or parts.shape[2] != channels:
                raise ValueError(f"{array_path} must be (H, W, {channels}), got shape {parts.shape}")
        else:
            raise FileNotFoundError(f"part map not found: expected {label_path} or {array_path}")
        if parts.shape[:2] != shape:
            raise ValueError(f"part map of {self.rel_path(index)} is {parts.shape[:2]}, the photo is {shape}")
        return parts

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        config = self.config
        rng = np.random.default_rng((config.seed, self.epoch, index))
        image_path = self.image_dir / self.rel_path(index)
        image = read_rgb(image_path)  # (H, W, 3)
        shape = (image.shape[0], image.shape[1])
        mask = self._mask(index, shape, image_path)
        parts = self._parts(index, shape)

        jitter = config.jitter if config.augment else 0.0
        box = transforms.square_box(
            transforms.pad_and_jitter_box(self._box(index), config.padding, jitter, rng)
        )
        size = config.image_size
        image = transforms.crop_and_resize(image, box, size, 1.0)
        mask = transforms.crop_and_resize(mask[..., None], box, size, 0.0)[..., 0]
        keypoints = self._keypoints(index)
        visible = keypoints[:, 2] > 0
        keypoints[visible, :2] = box.to_ndc(keypoints[visible, :2])
        camera = self._camera(index, box)
        if parts is not None:
            parts = transforms.crop_and_resize(parts, box, size, np.eye(parts.shape[2])[0])

        if config.augment and rng.random() < 0.5:
            image, mask = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
            if self.keypoint_permutation is None:
                raise ValueError("mirroring needs a keypoint permutation (pass augment=False)")
            keypoints = transforms.mirror_keypoints(keypoints, self.keypoint_permutation)
            camera = None if camera is None else transforms.mirror_camera(camera)
            if parts is not None and self.part_maps is not None:
                parts = transforms.mirror_parts(parts, self.part_maps.channel_permutation)

        sample: Sample = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (3, S, S)
            "mask": torch.from_numpy(np.clip(mask, 0.0, 1.0)[None].astype(np.float32)),  # (1, S, S)
            "keypoints": torch.from_numpy(keypoints.astype(np.float32)),  # (K, 3)
            "index": index,
            "name": self.rel_path(index),
        }
        if camera is not None:
            sample["camera"] = torch.from_numpy(camera.astype(np.float32))  # (7,)
        if parts is not None:
            sample["parts"] = torch.from_numpy(np.ascontiguousarray(parts.transpose(2, 0, 1)))  # (P, S, S)
        return sample


def part_maps_from_metadata(directory: Path, metadata: dict[str, Any] | None) -> PartMaps | None:
    """Part maps under ``directory`` described by the synthetic metadata (names, permutation), if any."""
    if metadata is None or not directory.is_dir() or "part_names" not in metadata:
        return None
    names = list(metadata["part_names"])
    permutation = metadata.get("part_permutation")
    channels = None
    if permutation is not None:
        inner = transforms.check_permutation(permutation, len(names), "part_permutation")
        channels = (0, *(p + 1 for p in inner))
    return PartMaps(directory=directory, num_channels=len(names) + 1, channel_permutation=channels)


def _indexed_array(path: Path) -> Path:
    """UMR's SCOPS name for ``dir/b.npy``: the one ``dir/b_<suffix>.npy``; ``path`` itself when none."""
    candidates = sorted(path.parent.glob(f"{path.stem}_*.npy")) if path.parent.is_dir() else []
    if len(candidates) > 1:
        names = ", ".join(c.name for c in candidates[:2])
        raise ValueError(f"part map of {path.stem} is ambiguous: {names} both match {path.stem}_*.npy")
    return candidates[0] if candidates else path
