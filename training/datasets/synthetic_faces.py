"""Synthetic faces with ground-truth depth, in the spirit of Unsup3d's "synface": write them, read them.

Contract:

- ``generate_faces(out, config)`` draws ``config.n`` bilaterally symmetric faces
  (``synthetic_face_model``), each seen roughly from the front under a random Lambertian light and a small
  random view (``synthetic_face_render``: Unsup3d's camera, 10-degree field of view), and writes the
  "folder" layout of the synthetic generator, which ``ImageFolderDataset`` reads (use ``crop=False``: the
  pictures are already framed)::

      <out>/synthetic.json                               the set: category "face", sizes, ranges, splits, seed
      <out>/<split>/images/face_<split>_<i:06d>.png      RGB, S x S
      <out>/<split>/masks/face_<split>_<i:06d>.png       the face's anti-aliased coverage (8-bit)
      <out>/<split>/ground_truth.safetensors             per image, in the order of ``names``

  ``ground_truth.safetensors`` holds ``depth`` (N, S, S) float32, the depth (distance along the view
  axis) of the visible surface at each pixel centre in the input view; ``mask`` (N, S, S) uint8, 1 where
  that surface is the face (0 on the background plane); ``canonical_depth`` (N, S, S) float32, the
  canonical (frontal, un-posed) depth on the image's rays, exactly mirror symmetric; ``view`` (N, 6) and
  ``light`` (N, 4) float32 as ``synthetic_face_render`` defines them; its metadata ``names`` is the JSON
  list of image file names.
- Objects go to the splits in order (the first ``train`` fraction to "train", ...); face i draws its shape
  and albedo from ``default_rng((seed, FACE_CODE, i, 0))`` and its view and light from ``default_rng((seed,
  FACE_CODE, i, 1))``: the same seed gives byte-identical files, and a face does not depend on ``n``.
- ``SyntheticFaces(root, split)`` reads one split back: items "image" (3, S, S) in [0, 1], "mask" (1, S, S)
  (the ground-truth face mask, 0 or 1), "depth" (S, S), "index", "name". With ``augment`` each item is
  mirrored with probability 1/2 (image, mask and depth together; Unsup3d's only augmentation), drawn from
  ``default_rng((seed, epoch, index))``. Another ``image_size`` resamples the image (area) and the depth
  and mask (bilinear with aligned corners, which keeps Unsup3d's pixel-to-ray map; the mask keeps the
  pixels whose neighbours are all face).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file
from torch.utils.data import Dataset

from training.datasets._io import METADATA_FILE, read_rgb, require_file
from training.datasets.synthetic import DEFAULT_SPLITS, split_counts
from training.datasets.synthetic_face_model import canonical_depth, sample_face
from training.datasets.synthetic_face_render import (
    FOV,
    ROTATION_CENTRE_DEPTH,
    ray_grid,
    render_face,
    sample_light,
    sample_view,
)

FACE_CATEGORY = "face"
FACE_CODE = 100
"""The category number in the faces' random streams (the part categories use 0, 1, 2)."""
GROUND_TRUTH_FILE = "ground_truth.safetensors"


@dataclass(frozen=True)
class SyntheticFacesConfig:
    """What to generate (module docstring).

    Attributes:
        n: number of faces.
        size: image side S in pixels.
        seed: seed of every random choice.
        splits: (name, fraction) pairs (``synthetic.split_counts``).
        max_angles: largest pitch, yaw and roll in degrees (each uniform in +-).
        max_shift: largest x and y translation (depth units; the picture spans +-0.0875 at depth 1).
        max_depth_shift: largest z translation (Unsup3d's CelebA and synface settings have none).
        ambient, diffuse: ranges of the light's ambient and diffuse strengths.
        light_angle: largest angle in degrees between the light direction and the view axis.
        supersample: sub-pixels per pixel side (odd).
    """

    n: int = 2000
    size: int = 64
    seed: int = 0
    splits: tuple[tuple[str, float], ...] = field(default=DEFAULT_SPLITS)
    max_angles: tuple[float, float, float] = (15.0, 20.0, 10.0)
    max_shift: float = 0.01
    max_depth_shift: float = 0.0
    ambient: tuple[float, float] = (0.3, 0.5)
    diffuse: tuple[float, float] = (0.4, 0.6)
    light_angle: float = 40.0
    supersample: int = 3

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if not 8 <= self.size <= 512:
            raise ValueError(f"size must lie in 8..512, got {self.size}")
        if any(not 0 <= a <= 25 for a in self.max_angles):
            raise ValueError(f"max_angles must lie in [0, 25] degrees, got {self.max_angles}")
        if not (0 <= self.max_shift <= 0.03 and 0 <= self.max_depth_shift <= 0.05):
            raise ValueError(
                f"max_shift must lie in [0, 0.03] and max_depth_shift in [0, 0.05], got {self.max_shift} "
                f"and {self.max_depth_shift}"
            )
        if not 0 <= self.light_angle < 90:
            raise ValueError(f"light_angle must lie in [0, 90), got {self.light_angle}")
        if self.supersample < 1 or self.supersample % 2 == 0:
            raise ValueError(f"supersample must be an odd positive number, got {self.supersample}")
        split_counts(self.n, self.splits)  # validates the fractions


def face_name(split: str, index: int) -> str:
    return f"{FACE_CATEGORY}_{split}_{index:06d}.png"


def _metadata(config: SyntheticFacesConfig, counts: list[tuple[str, int]]) -> dict[str, Any]:
    settings = asdict(config)
    settings.pop("splits")
    return {
        "format": 1,
        "generator": "mono2mesh make-synthetic",
        "category": FACE_CATEGORY,
        "layout": "folder",
        "n": config.n,
        "size": config.size,
        "seed": config.seed,
        "splits": dict(counts),
        "camera": {
            "kind": "unsup3d",
            "fov": FOV,
            "rotation_centre_depth": ROTATION_CENTRE_DEPTH,
            "frame": "x right, y down, z forward (depth); view = (rx, ry, rz degrees, tx, ty, tz), "
            "p -> Rz Ry Rx (p - c) + c + t",
        },
        "light": "(ambient, diffuse, dx, dy): ambient + diffuse * max(0, n . normalise(dx, dy, 1))",
        "settings": settings,
    }


def generate_faces(
    out: str | Path, config: SyntheticFacesConfig, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Write the set into ``out`` (created); ``progress(k)`` after every k faces. Returns the metadata
    written to ``out/synthetic.json``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    counts = split_counts(config.n, config.splits)
    size = config.size
    rays = ray_grid(size)
    u, v = np.meshgrid(rays, rays)  # the pixel centres' rays
    first = 0
    for split, count in counts:
        if count == 0:
            continue
        folder = root / split
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        arrays: dict[str, list[np.ndarray]] = {
            key: [] for key in ("depth", "mask", "canonical_depth", "view", "light")
        }
        names = []
        for index in range(first, first + count):
            face = sample_face(np.random.default_rng((config.seed, FACE_CODE, index, 0)))
            rng = np.random.default_rng((config.seed, FACE_CODE, index, 1))
            view = sample_view(rng, config.max_angles, config.max_shift, config.max_depth_shift)
            light = sample_light(rng, config.ambient, config.diffuse, config.light_angle)
            rendered = render_face(face, view, light, size, supersample=config.supersample)
            name = face_name(split, index - first)
            Image.fromarray(_to_uint8(rendered.image)).save(folder / "images" / name)
            Image.fromarray(_to_uint8(rendered.coverage)).save(folder / "masks" / name)
            names.append(name)
            arrays["depth"].append(rendered.depth)
            arrays["mask"].append(rendered.mask.astype(np.uint8))
            arrays["canonical_depth"].append(canonical_depth(face, u, v).astype(np.float32))
            arrays["view"].append(view.astype(np.float32))
            arrays["light"].append(light.astype(np.float32))
            if progress is not None:
                progress(1)
        save_file(
            {key: np.ascontiguousarray(np.stack(values)) for key, values in arrays.items()},
            str(folder / GROUND_TRUTH_FILE),
            metadata={"names": json.dumps(names)},  # one key: safetensors orders several at random
        )
        first += count
    data = _metadata(config, counts)
    (root / METADATA_FILE).write_text(json.dumps(data, indent=1))
    return data


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def is_synthetic_faces(root: str | Path) -> bool:
    """Whether ``root`` holds a set ``generate_faces`` wrote (its ``synthetic.json`` says category face)."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text()).get("category") == FACE_CATEGORY)
    except (json.JSONDecodeError, AttributeError):
        return False


class SyntheticFaces(Dataset[dict[str, Any]]):
    """One split of a synthetic face set with its ground truth (module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        image_size: int | None = None,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.folder = self.root / split
        truth = require_file(self.folder / GROUND_TRUTH_FILE, f"ground truth of the {split!r} split")
        with safe_open(str(truth), framework="pt") as file:
            metadata = file.metadata() or {}
            if "names" not in metadata:
                raise ValueError(f"{truth} has no 'names' metadata: not written by generate_faces")
            self.names: list[str] = json.loads(metadata["names"])
            self.depth = file.get_tensor("depth").float()  # (N, S, S)
            self.mask = file.get_tensor("mask").float()  # (N, S, S)
        if self.depth.shape[0] != len(self.names) or self.mask.shape != self.depth.shape:
            raise ValueError(
                f"{truth}: {len(self.names)} names, depth {tuple(self.depth.shape)}, mask "
                f"{tuple(self.mask.shape)} do not match"
            )
        self.stored_size = int(self.depth.shape[-1])
        self.image_size = image_size or self.stored_size
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        """Draw new mirrorings for every item (the same within one epoch)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} faces")
        image = torch.from_numpy(read_rgb(self.folder / "images" / self.names[index])).permute(2, 0, 1)
        depth, mask = self.depth[index], self.mask[index]  # (S, S) each
        if image.shape[1:] != depth.shape:
            raise ValueError(
                f"image {self.names[index]} is {tuple(image.shape[1:])}, its depth {tuple(depth.shape)}"
            )
        if self.image_size != self.stored_size:
            image, depth, mask = self._resized(image, depth, mask)
        if self.augment and np.random.default_rng((self.seed, self.epoch, index)).random() < 0.5:
            image, depth, mask = image.flip(-1), depth.flip(-1), mask.flip(-1)
        return {
            "image": image.contiguous(),
            "mask": mask[None].contiguous(),
            "depth": depth.contiguous(),
            "index": index,
            "name": self.names[index],
        }

    def _resized(
        self, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        size = (self.image_size, self.image_size)
        image = F.interpolate(image[None], size=size, mode="area")[0]
        pair = torch.stack([depth, mask])[None]  # (1, 2, S, S)
        pair = F.interpolate(pair, size=size, mode="bilinear", align_corners=True)[0]
        return image, pair[0], (pair[1] > 1 - 1e-6).float()
