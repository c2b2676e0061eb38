"""Square crops around the object mask, and the maps between crop and photo coordinates.

Contract:

- ``crop_to_mask(rgb, mask, output_size)`` cuts a square box centred on the mask's bounding box, enlarged
  by ``padding`` times the box's longer side on each side (CMR uses 5 %), and resizes it to
  ``output_size`` x ``output_size``. The box may extend past the photo: the image is padded with
  ``background``, the mask with 0. It returns a ``CropResult`` with the ``CropTransform`` that maps
  points between the crop and the photo, and ``paste_mask`` maps a mask in the crop back to the photo.
- The box is whole photo pixels: ``side = ceil(extent * (1 + 2 padding))``, rounded up to a multiple of the
  block-average factor k = side // (4 S) when the crop shrinks the box 8 times or more, and
  ``x0 = floor(cx - side / 2 + 0.5)`` for the box centre ``cx`` (likewise ``y0``), so the box's centre is
  within half a pixel of the mask's.

Coordinate conventions (all points are (..., 2) as (x, y)):

- *Pixel coordinates* (photo or crop) are continuous: x along columns, y down rows, the top-left corner of
  the image at (0, 0), so pixel (row i, column j) covers [j, j + 1) x [i, i + 1) and has its centre at
  (j + 0.5, i + 0.5). Photo pixel coordinates are crop pixel coordinates times ``side / output_size`` plus
  (x0, y0).
- *NDC of the crop* (the project's convention, see ``backend.geometry``): x right, y **up**, -1..1 over the
  crop, crop pixel (i, j) centred at ((2 j + 1) / S - 1, 1 - (2 i + 1) / S).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import cv2
import numpy as np

from backend.imaging.errors import MaskError

Points = TypeVar("Points")  # a numpy array or a torch tensor of shape (..., 2)


@dataclass(frozen=True)
class CropTransform:
    """A square box of the photo, ``side`` photo pixels wide at (x0, y0), resampled to ``output_size``.

    Methods take a numpy array or a torch tensor of (..., 2) points (x, y) and return the same kind, in
    floating point; they are affine maps, differentiable for tensors.

    >>> t = CropTransform(x0=10, y0=20, side=100, output_size=50, image_width=200, image_height=200)
    >>> t.crop_to_image(np.array([[0.5, 0.5]]))  # the centre of crop pixel (0, 0)
    array([[11., 21.]])
    >>> t.ndc_to_image(np.array([[-1.0, 1.0], [1.0, -1.0]]))  # top-left and bottom-right crop corners
    array([[ 10.,  20.],
           [110., 120.]])
    """

    x0: int
    y0: int
    side: int
    output_size: int
    image_width: int
    image_height: int

    def __post_init__(self) -> None:
        if self.side < 1 or self.output_size < 1:
            raise ValueError(f"side and output_size must be positive, got {self.side}, {self.output_size}")
        if self.image_width < 1 or self.image_height < 1:
            raise ValueError(f"image size must be positive, got {self.image_width} x {self.image_height}")

    @property
    def scale(self) -> float:
        """Photo pixels per crop pixel, ``side / output_size``."""
        return self.side / self.output_size

    def crop_to_image(self, points_xy: Points) -> Points:
        """Crop pixel coordinates (..., 2) -> photo pixel coordinates (..., 2)."""
        return _affine(points_xy, (self.scale, self.scale), (self.x0, self.y0))

    def image_to_crop(self, points_xy: Points) -> Points:
        """Photo pixel coordinates (..., 2) -> crop pixel coordinates (..., 2)."""
        inverse = 1.0 / self.scale
        return _affine(points_xy, (inverse, inverse), (-self.x0 * inverse, -self.y0 * inverse))

    def ndc_to_image(self, xy_ndc: Points) -> Points:
        """Crop NDC (..., 2), y up -> photo pixel coordinates (..., 2), y down."""
        half = self.side / 2.0
        return _affine(xy_ndc, (half, -half), (self.x0 + half, self.y0 + half))

    def image_to_ndc(self, points_xy: Points) -> Points:
        """Photo pixel coordinates (..., 2), y down -> crop NDC (..., 2), y up."""
        half = self.side / 2.0
        return _affine(
            points_xy, (1.0 / half, -1.0 / half), (-(self.x0 + half) / half, (self.y0 + half) / half)
        )


@dataclass(frozen=True)
class CropResult:
    """A square crop of a photo and its mask.

    Attributes:
        rgb: (S, S, 3) float32 in [0, 1].
        mask: (S, S) float32 in {0, 1}.
        transform: the map between crop and photo coordinates.
    """

    rgb: np.ndarray
    mask: np.ndarray
    transform: CropTransform


def crop_box(mask: np.ndarray, output_size: int, padding: float = 0.05) -> CropTransform:
    """The square box around the (H, W) bool ``mask`` that ``crop_to_mask`` cuts (module docstring).

    >>> mask = np.zeros((100, 120), dtype=bool); mask[20:60, 30:90] = True  # 60 wide, 40 high
    >>> crop_box(mask, 64)
    CropTransform(x0=27, y0=7, side=66, output_size=64, image_width=120, image_height=100)
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    if not padding >= 0.0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise MaskError("the mask is empty: there is no object to crop around")
    x_min, x_max = int(columns[0]), int(columns[-1]) + 1  # pixel-edge coordinates
    y_min, y_max = int(rows[0]), int(rows[-1]) + 1
    extent = max(x_max - x_min, y_max - y_min)
    side = math.ceil(round(extent * (1.0 + 2.0 * padding), 6))  # round: 60 * 1.1 is 66.00000000000001
    factor = _nominal_block_factor(side, output_size)
    side = -(-side // factor) * factor  # a multiple of the block-average factor
    x0 = math.floor((x_min + x_max) / 2.0 - side / 2.0 + 0.5)
    y0 = math.floor((y_min + y_max) / 2.0 - side / 2.0 + 0.5)
    height, width = mask.shape
    return CropTransform(x0, y0, side, output_size, image_width=width, image_height=height)


def crop_to_mask(
    rgb: np.ndarray,
    mask: np.ndarray,
    output_size: int,
    padding: float = 0.05,
    background: float | Sequence[float] = 1.0,
) -> CropResult:
    """Cut the square box around ``mask`` from ``rgb`` and resize it to ``output_size`` (module docstring).

    Args:
        rgb: (H, W, 3) float32 in [0, 1].
        mask: (H, W) bool, not empty.
        output_size: S, the side of the crop in pixels.
        padding: margin on each side, as a fraction of the bounding box's longer side.
        background: the colour outside the photo, a grey level or an (r, g, b) triple.

    Returns:
        CropResult: rgb (S, S, 3) float32, mask (S, S) float32 in {0, 1}, and the transform.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask must be (H, W) = {rgb.shape[:2]} like rgb, got shape {mask.shape}")
    fill = np.broadcast_to(np.asarray(background, dtype=np.float32), (3,))
    transform = crop_box(mask, output_size, padding)
    rgb_crop = _resample_box(rgb.astype(np.float32, copy=False), transform, fill)  # (S, S, 3)
    mask_crop = _resample_box(mask.astype(np.float32)[..., None], transform, np.zeros(1, np.float32))
    mask_crop = (mask_crop[..., 0] > 0.5).astype(np.float32)  # (S, S)
    return CropResult(rgb=rgb_crop, mask=mask_crop, transform=transform)


def paste_mask(crop_mask: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Map an (S, S) mask in the crop (bool, or float thresholded at 0.5) to an (H, W) bool photo mask.

    Each photo pixel takes the bilinear sample of the crop mask at its centre; outside the box it is False.
    """
    size = transform.output_size
    if crop_mask.shape != (size, size):
        raise ValueError(f"crop_mask must be ({size}, {size}) like the crop, got shape {crop_mask.shape}")
    scale = transform.scale
    # Pixel-index form of crop_to_image: j_photo + 0.5 = x0 + (j_crop + 0.5) * scale.
    matrix = np.array(
        [
            [scale, 0.0, transform.x0 + 0.5 * scale - 0.5],
            [0.0, scale, transform.y0 + 0.5 * scale - 0.5],
        ]
    )
    pasted = cv2.warpAffine(
        crop_mask.astype(np.float32),
        matrix,
        (transform.image_width, transform.image_height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return np.asarray(pasted > 0.5)


def _nominal_block_factor(side: int, output_size: int) -> int:
    """Block-average a box 8 times the output size or more, down to 4 to 8 times it (1: no block stage).

    Leaving the final INTER_AREA resize a factor of 4 or more keeps the two-stage filter close to a
    single area resize: the block grid shifts each output pixel's footprint by at most a quarter pixel.
    """
    return max(1, side // (4 * output_size))


def _block_factor(side: int, output_size: int) -> int:
    """The block-average factor for a box: the nominal one, or the largest divisor of ``side`` below it."""
    factor = _nominal_block_factor(side, output_size)
    while side % factor:
        factor -= 1
    return factor


def _resample_box(image: np.ndarray, transform: CropTransform, fill: np.ndarray) -> np.ndarray:
    """Cut ``transform``'s box from the (H, W, C) ``image``, padded with ``fill`` (C,); (S, S, C) float32.

    A box of 8 or more times the output size is first block-averaged by k = side // (4 S) (exact area
    averaging that holds only the part inside the photo in memory), then resized (INTER_AREA when
    shrinking, INTER_LINEAR when enlarging).
    """
    height, width, channels = image.shape
    side, size = transform.side, transform.output_size
    factor = _block_factor(side, size)
    blocks = side // factor
    small = np.empty((blocks, blocks, channels), dtype=np.float32)
    small[:] = fill
    x_lo, x_hi = max(transform.x0, 0), min(transform.x0 + side, width)  # photo pixels inside the box
    y_lo, y_hi = max(transform.y0, 0), min(transform.y0 + side, height)
    if x_lo < x_hi and y_lo < y_hi:
        bx_lo, bx_hi = (x_lo - transform.x0) // factor, -(-(x_hi - transform.x0) // factor)
        by_lo, by_hi = (y_lo - transform.y0) // factor, -(-(y_hi - transform.y0) // factor)
        region = np.empty(((by_hi - by_lo) * factor, (bx_hi - bx_lo) * factor, channels), dtype=np.float32)
        region[:] = fill
        top = y_lo - transform.y0 - by_lo * factor
        left = x_lo - transform.x0 - bx_lo * factor
        region[top : top + y_hi - y_lo, left : left + x_hi - x_lo] = image[y_lo:y_hi, x_lo:x_hi]
        if factor > 1:
            region = region.reshape(by_hi - by_lo, factor, bx_hi - bx_lo, factor, channels).mean(axis=(1, 3))
        small[by_lo:by_hi, bx_lo:bx_hi] = region
    if blocks == size:
        return small
    interpolation = cv2.INTER_AREA if blocks > size else cv2.INTER_LINEAR
    resized = cv2.resize(small, (size, size), interpolation=interpolation)
    return resized.reshape(size, size, channels)


def _affine(points: Points, scale: tuple[float, float], offset: tuple[float, float]) -> Points:
    """``points * scale + offset`` per coordinate, for a numpy array or a torch tensor of (..., 2)."""
    shape = getattr(points, "shape", None)
    if shape is None or len(shape) == 0 or shape[-1] != 2:
        raise ValueError(f"points must be an array or tensor of shape (..., 2), got {shape}")
    source: Any = points
    result = source * 1.0  # (..., 2) a floating-point copy of the same kind
    result[..., 0] = source[..., 0] * scale[0] + offset[0]
    result[..., 1] = source[..., 1] * scale[1] + offset[1]
    return cast(Points, result)
