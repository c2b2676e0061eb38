"""Small file readers shared by the dataset loaders; every failure names the file and what was expected.

- ``read_rgb(path)`` -> (H, W, 3) float32 in [0, 1] (greyscale replicated, alpha dropped);
  ``read_rgba(path)`` -> the same plus (H, W) alpha or None; ``read_plane(path)`` -> (H, W) float32 in [0, 1]
  (a mask: luminance, or alpha when the file has one); ``read_label_map(path)`` -> (H, W) int64 labels.
- ``load_mat(path, variables)`` reads a MATLAB file with ``scipy.io.loadmat(struct_as_record=False,
  squeeze_me=True)`` (CMR's call) and checks the variables are there; ``as_records`` undoes ``squeeze_me``
  for a struct array of one element; ``field`` reads a struct field or says which one is missing.
- ``read_metadata(root)`` reads the ``synthetic.json`` the synthetic generator writes beside its data
  (keypoint and part names and their left/right permutations), or returns None for real datasets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

METADATA_FILE = "synthetic.json"
"""Name of the metadata file the synthetic generator writes at the root of each layout."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
"""File suffixes (lower case) the folder loaders treat as images."""


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` or raise ``FileNotFoundError`` saying which file of the dataset is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: expected the file {path}")
    return path


def _open(path: Path) -> Image.Image:
    require_file(path, "image")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot decode the image {path}: {error}") from error
    return image


def read_rgba(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) float32 RGB in [0, 1] and (H, W) float32 alpha (None when the file has no alpha)."""
    image = _open(path)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if image.mode in ("I", "I;16", "I;16B", "F"):
        plane = np.asarray(image, dtype=np.float32)
        plane = plane / (65535.0 if plane.max() > 255 else 255.0)
        return np.repeat(plane[..., None], 3, axis=2), None
    converted = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    alpha = converted[..., 3] if has_alpha else None
    return np.ascontiguousarray(converted[..., :3]), alpha


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]."""
    return read_rgba(path)[0]


def read_plane(path: Path) -> np.ndarray:
    """(H, W) float32 mask in [0, 1]: the alpha channel when the file has one, else the luminance."""
    rgb, alpha = read_rgba(path)
    if alpha is not None:
        return alpha
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


def read_label_map(path: Path) -> np.ndarray:
    """(H, W) int64 labels of a single-channel 8- or 16-bit PNG."""
    image = _open(path)
    if image.mode not in ("L", "P", "I", "I;16"):
        raise ValueError(f"the part label map {path} must be a single-channel image, got mode {image.mode}")
    return np.asarray(image).astype(np.int64)


def load_mat(path: Path, variables: tuple[str, ...], what: str) -> dict[str, Any]:
    """Read a .mat file CMR's way and check that it holds ``variables``."""
    require_file(path, what)
    try:
        data = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"cannot read {what} {path} as a MATLAB file: {error}") from error
    missing = [name for name in variables if name not in data]
    if missing:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{what} {path} has no variable {missing[0]!r} (it holds {found})")
    return data


def as_records(value: Any) -> list[Any]:
    """The elements of a struct array read with ``squeeze_me=True`` (one element comes back unwrapped)."""
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1))
    return [value]


def field(record: Any, name: str, path: Path, index: int) -> Any:
    """``record.name`` or a ``ValueError`` naming the file, the record and the missing field."""
    if not hasattr(record, name):
        names = getattr(record, "_fieldnames", [])
        raise ValueError(f"{path}: record {index} has no field {name!r} (fields: {names})")
    return getattr(record, name)


def read_metadata(root: Path) -> dict[str, Any] | None:
    """The synthetic generator's ``synthetic.json`` at ``root``, or None when there is none."""
    path = root / METADATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data
