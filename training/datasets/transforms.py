"""Crop, resize and mirror of annotated images, as CMR's data pipeline does them (its facts, our code).

Contract:

- **Coordinates.** Annotations are carried in *continuous pixel coordinates* of the photo (as in
  ``backend.imaging.crop``): x right along columns, y down rows, pixel (row i, column j) covers
  [j, j + 1) x [i, i + 1). A 1-based pixel index k of a MATLAB annotation (CMR's ``bbox``, ``parts``,
  ``sfm.trans``) is the pixel centre k - 0.5. Samples carry *NDC of the crop*: x right, y **up**, -1..1 over
  the crop (the project's convention, ``backend.geometry``).
- **Box.** ``pad_and_jitter_box`` grows each side of a (x_min, y_min, x_max, y_max) box by ``padding``
  times the box's width (x sides) or height (y sides), and moves each side independently by a uniform
  amount in +-``jitter`` times the same length (CMR's ``peturb_bbox``: padding 0.05, jitter 0.05 for
  training, 0 otherwise). ``square_box`` turns it into a ``CropBox``: a square of whole pixels, side
  ``round(max(w, h))``, centred on the box to within half a pixel.
- **Crop.** ``crop_and_resize`` cuts the box out of an (H, W, C) image, filling what lies outside the photo
  with ``fill`` (CMR: 1 for images, 0 for masks), and resizes it to S x S (OpenCV INTER_AREA when shrinking,
  INTER_LINEAR when enlarging).
- **Camera.** A CMR sfm pose (``scale`` in pixels, ``trans`` 1-based pixels, ``rot`` 3 x 3) projects a
  3D point p to the 1-based pixel ``scale * (rot p)[:2] + trans`` (y down). ``sfm_to_camera`` rewrites it
  as the 7-vector ``[s, tx, ty, qw, qx, qy, qz]`` of ``backend.geometry.Camera.weak_perspective`` for the
  crop, so that ``Camera.weak_perspective(s, (tx, ty), q).project(p)`` gives the crop NDC (y up) of p:
  ``s = 2 scale / side``, and ``q`` is the quaternion of ``diag(1, -1, -1) @ rot`` (turning y down into y
  up and the viewing direction into ours: the camera on +Z looking down -Z). ``camera_to_sfm`` is the
  inverse for a whole square image (the synthetic writer uses it).
- **Mirror.** ``mirror_keypoints``, ``mirror_camera`` and ``mirror_parts`` flip a sample left-right as CMR
  does: x_ndc -> -x_ndc, keypoints reordered by the left/right permutation (``new[k] = flipped[perm[k]]``),
  rotation ``R' = diag(-1, 1, 1) R diag(-1, 1, 1)`` (quaternion (w, x, y, z) -> (w, x, -y, -z)) and
  ``tx' = -tx`` (CMR's ``W - tx - 1`` in its pixel indices), part channels reordered by the part permutation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MIRROR = np.diag([-1.0, 1.0, 1.0])
"""The reflection x -> -x about the symmetry plane of every category."""

Y_DOWN_TO_UP = np.diag([1.0, -1.0, -1.0])
"""Rotation by 180 degrees about x: CMR's y-down sfm frame to the project's y-up camera frame."""

CUB_KEYPOINT_NAMES: tuple[str, ...] = (
    "Back", "Beak", "Belly", "Breast", "Crown", "FHead", "LEye", "LLeg",
    "LWing", "Nape", "REye", "RLeg", "RWing", "Tail", "Throat",
)  # fmt: skip
"""CUB-200-2011's 15 bird keypoints, in the dataset's order (``parts`` columns)."""

CUB_KEYPOINT_PERMUTATION: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 10, 11, 12, 9, 6, 7, 8, 13, 14)
"""CMR's left/right keypoint permutation for CUB (0-based): eyes, legs and wings swap."""


@dataclass(frozen=True)
class CropBox:
    """A square box of whole photo pixels: columns x0 .. x0 + side - 1, rows y0 .. y0 + side - 1.

    ``x0`` and ``y0`` may be negative and the box may reach past the photo (the crop pads it).
    """

    x0: int
    y0: int
    side: int

    def __post_init__(self) -> None:
        if self.side < 1:
            raise ValueError(f"a crop box needs a positive side, got {self.side}")

    def to_ndc(self, points_px: np.ndarray) -> np.ndarray:
        """Continuous photo pixel coordinates (..., 2), y down -> crop NDC (..., 2), y up."""
        points = np.asarray(points_px, dtype=np.float64)
        x = 2.0 * (points[..., 0] - self.x0) / self.side - 1.0
        y = 1.0 - 2.0 * (points[..., 1] - self.y0) / self.side
        return np.stack([x, y], axis=-1)


def augments(split: str, augment: bool | None) -> bool:
    """Whether a loader augments (jitter, mirror): ``augment`` when given, else CMR's rule, on for the
    "train" split only."""
    return split == "train" if augment is None else augment


def box_from_cmr(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    """CMR's 1-based inclusive pixel box -> (4,) continuous (x_min, y_min, x_max, y_max).

    >>> box_from_cmr(1, 1, 10, 20).tolist()
    [0.0, 0.0, 10.0, 20.0]
    """
    return np.array([x1 - 1.0, y1 - 1.0, float(x2), float(y2)])


def box_of_mask(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """(4,) continuous box of the (H, W) mask's pixels above ``threshold``, or None when there are none."""
    rows = np.flatnonzero((mask > threshold).any(axis=1))
    columns = np.flatnonzero((mask > threshold).any(axis=0))
    if rows.size == 0:
        return None
    return np.array([columns[0], rows[0], columns[-1] + 1, rows[-1] + 1], dtype=np.float64)


def pad_and_jitter_box(
    box: np.ndarray, padding: float, jitter: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Grow a (4,) box by ``padding`` and move each side by up to ``jitter`` (module docstring).

    >>> pad_and_jitter_box(np.array([0.0, 0.0, 100.0, 50.0]), 0.05, 0.0).tolist()
    [-5.0, -2.5, 105.0, 52.5]
    """
    if padding < 0 or jitter < 0:
        raise ValueError(f"padding and jitter must be >= 0, got {padding} and {jitter}")
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    width, height = x_max - x_min, y_max - y_min
    if not (width > 0 and height > 0):
        raise ValueError(f"the box {list(box)} is empty")
    moves = np.zeros(4)
    if jitter > 0:
        if rng is None:
            raise ValueError("a jittered box needs a random generator")
        moves = rng.uniform(-jitter, jitter, size=4) * np.array([width, height, width, height])
    return np.array(
        [
            x_min - padding * width + moves[0],
            y_min - padding * height + moves[1],
            x_max + padding * width + moves[2],
            y_max + padding * height + moves[3],
        ]
    )


def square_box(box: np.ndarray) -> CropBox:
    """The square box of whole pixels around a (4,) continuous box (module docstring).

    >>> square_box(np.array([10.0, 20.0, 30.0, 60.0]))
    CropBox(x0=0, y0=20, side=40)
    """
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    side = max(1, round(max(x_max - x_min, y_max - y_min)))
    x0 = math.floor((x_min + x_max) / 2.0 - side / 2.0 + 0.5)
    y0 = math.floor((y_min + y_max) / 2.0 - side / 2.0 + 0.5)
    return CropBox(x0, y0, side)


def crop_and_resize(
    image: np.ndarray, box: CropBox, size: int, fill: float | Sequence[float] | np.ndarray
) -> np.ndarray:
    """Cut ``box`` from an (H, W, C) float32 image, pad with ``fill`` (scalar or (C,)) -> (S, S, C)."""
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    height, width, channels = image.shape
    canvas = np.empty((box.side, box.side, channels), dtype=np.float32)
    canvas[:] = np.broadcast_to(np.asarray(fill, dtype=np.float32), (channels,))
    x_lo, x_hi = max(box.x0, 0), min(box.x0 + box.side, width)
    y_lo, y_hi = max(box.y0, 0), min(box.y0 + box.side, height)
    if x_lo < x_hi and y_lo < y_hi:
        canvas[y_lo - box.y0 : y_hi - box.y0, x_lo - box.x0 : x_hi - box.x0] = image[y_lo:y_hi, x_lo:x_hi]
    return resize_square(canvas, size)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, C) float32 image to (S, S, C): INTER_AREA when shrinking, INTER_LINEAR otherwise."""
    if image.shape[0] == size and image.shape[1] == size:
        return image.astype(np.float32, copy=False)
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    channels = image.shape[2]
    # OpenCV handles at most 4 channels in one resize call for every interpolation: go 4 at a time.
    parts = [
        cv2.resize(image[..., c : c + 4], (size, size), interpolation=interpolation).reshape(size, size, -1)
        for c in range(0, channels, 4)
    ]
    return np.concatenate(parts, axis=2).astype(np.float32, copy=False)


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(4,) unit quaternion (w, x, y, z), w >= 0, of a proper 3 x 3 rotation matrix.

    >>> matrix_to_quaternion(np.diag([1.0, -1.0, -1.0])).round(6).tolist()
    [0.0, 1.0, 0.0, 0.0]
    """
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"a rotation matrix is 3 x 3, got shape {r.shape}")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
        raise ValueError("rot is not a proper rotation matrix (orthonormal with determinant +1)")
    trace = np.trace(r)
    candidates = np.array(
        [1 + trace, 1 + 2 * r[0, 0] - trace, 1 + 2 * r[1, 1] - trace, 1 + 2 * r[2, 2] - trace]
    )
    k = int(np.argmax(candidates))  # the best-conditioned component
    root = 2.0 * math.sqrt(max(candidates[k], 1e-12))
    if k == 0:
        q = [root / 4, (r[2, 1] - r[1, 2]) / root, (r[0, 2] - r[2, 0]) / root, (r[1, 0] - r[0, 1]) / root]
    elif k == 1:
        q = [(r[2, 1] - r[1, 2]) / root, root / 4, (r[0, 1] + r[1, 0]) / root, (r[0, 2] + r[2, 0]) / root]
    elif k == 2:
        q = [(r[0, 2] - r[2, 0]) / root, (r[0, 1] + r[1, 0]) / root, root / 4, (r[1, 2] + r[2, 1]) / root]
    else:
        q = [(r[1, 0] - r[0, 1]) / root, (r[0, 2] + r[2, 0]) / root, (r[1, 2] + r[2, 1]) / root, root / 4]
    quaternion = np.asarray(q) / np.linalg.norm(q)
    return quaternion if quaternion[0] >= 0 else -quaternion


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """3 x 3 rotation matrix of a (4,) quaternion (w, x, y, z) (normalised here)."""
    w, x, y, z = np.asarray(quaternion, dtype=np.float64) / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def sfm_to_camera(scale: float, trans: np.ndarray, rot: np.ndarray, box: CropBox) -> np.ndarray:
    """A CMR sfm pose (pixels, 1-based, y down) -> (7,) weak-perspective camera of the crop (see above)."""
    trans = np.asarray(trans, dtype=np.float64).reshape(-1)
    if trans.shape != (2,):
        raise ValueError(f"sfm trans must have 2 values, got shape {trans.shape}")
    centre_ndc = box.to_ndc(trans - 0.5)  # where the object origin projects, (2,)
    quaternion = matrix_to_quaternion(Y_DOWN_TO_UP @ np.asarray(rot, dtype=np.float64))
    return np.concatenate([[2.0 * float(scale) / box.side], centre_ndc, quaternion])


def camera_to_sfm(camera: np.ndarray, image_size: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(7,) weak-perspective camera of a whole S x S image -> CMR sfm (scale px, trans (2,) 1-based, rot)."""
    scale, tx, ty = (float(v) for v in camera[:3])
    half = image_size / 2.0
    trans = np.array([(tx + 1.0) * half + 0.5, (1.0 - ty) * half + 0.5])
    return scale * half, trans, Y_DOWN_TO_UP @ quaternion_to_matrix(camera[3:7])


def mirror_camera(camera: np.ndarray) -> np.ndarray:
    """(7,) camera of the left-right mirrored image: tx -> -tx, R -> diag(-1,1,1) R diag(-1,1,1)."""
    s, tx, ty, w, x, y, z = (float(v) for v in camera)
    return np.array([s, -tx, ty, w, x, -y, -z])


def mirror_keypoints(keypoints: np.ndarray, permutation: Sequence[int]) -> np.ndarray:
    """(K, 3) keypoints (x_ndc, y_ndc, visibility) of the mirrored image: x -> -x, rows permuted."""
    if len(permutation) != keypoints.shape[0]:
        raise ValueError(
            f"the keypoint permutation has {len(permutation)} entries "
            f"but there are {keypoints.shape[0]} keypoints"
        )
    flipped = keypoints.copy()
    flipped[:, 0] = -flipped[:, 0]
    return flipped[np.asarray(permutation)]


def mirror_parts(parts: np.ndarray, permutation: Sequence[int] | None) -> np.ndarray:
    """(S, S, P) part maps of the mirrored image: flipped along the width, channels permuted."""
    flipped = parts[:, ::-1]
    if permutation is not None:
        flipped = flipped[..., np.asarray(permutation)]
    return np.ascontiguousarray(flipped)


def check_permutation(permutation: Sequence[int], size: int, name: str) -> tuple[int, ...]:
    """Validate a 0-based left/right permutation of ``size`` items that is its own inverse."""
    values = tuple(int(v) for v in permutation)
    if sorted(values) != list(range(size)):
        raise ValueError(f"{name} must be a permutation of 0..{size - 1}, got {list(values)}")
    if any(values[values[i]] != i for i in range(size)):
        raise ValueError(f"{name} must swap left and right, i.e. be its own inverse, got {list(values)}")
    return values
