"""The object mask of a photo: from a given mask, the alpha channel, a salient-object model, or GrabCut.

Contract:

- ``compute_mask(rgb, alpha, given_mask, salient=None)`` returns a ``MaskResult`` whose ``mask`` is
  (H, W) bool, chosen in this order: the given mask (used as it is); else a real alpha channel (some
  pixel below 1), thresholded at 0.5; else, when a ``salient`` model is passed
  (``backend.imaging.salient.SalientModel``), its segmentation (source "salient"); else
  ``grabcut_mask(rgb)``, an automatic segmentation that assumes the object is framed near the centre of
  the photo, as object photos are.
- The salient model never makes the job fail: when it raises ``MaskModelError`` (a corrupt file, a
  failing run) or finds nothing usable (an empty mask, or one covering the whole photo), GrabCut is used
  and ``MaskResult.note`` says why.
- Every mask is checked by ``check_mask_coverage``: an empty mask, or one covering more than 99.5 % of the
  image, raises ``MaskError`` (an ``ImageError``, a ``ValueError``) saying so and suggesting a mask.
- ``grabcut_mask`` is deterministic (OpenCV's RNG is seeded with 0) and cleaned by ``clean_mask``: the
  largest connected component, holes filled, small morphological open and close. The salient model's mask
  is cleaned the same way (in ``SalientModel.segment``). Given and alpha masks are the user's intent and
  are not cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from backend.imaging.errors import MaskError

if TYPE_CHECKING:  # salient imports this module (clean_mask): no import at run time
    from backend.imaging.salient import SalientModel

MaskSource = Literal["given", "alpha", "salient", "grabcut"]

MAX_COVERAGE = 0.995
"""A mask covering more than this fraction of the image carries no silhouette and is refused."""

_SUGGEST_MASK = "pass a mask image (white object on black, or a PNG with transparency)"


@dataclass(frozen=True)
class MaskResult:
    """The object mask and where it came from.

    Attributes:
        mask: (H, W) bool, True on the object.
        source: "given" (the caller's mask), "alpha" (the image's alpha channel), "salient" (the
            salient-object model) or "grabcut".
        note: why the salient model passed in was not used (GrabCut was), else None.
    """

    mask: np.ndarray
    source: MaskSource
    note: str | None = None


def compute_mask(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    given_mask: np.ndarray | None = None,
    salient: SalientModel | None = None,
) -> MaskResult:
    """Choose the object mask of a photo: ``given_mask``, else a real ``alpha``, else the ``salient``
    model's segmentation, else GrabCut (module docstring).

    Args:
        rgb: (H, W, 3) float32 in [0, 1].
        alpha: (H, W) float in [0, 1] or None; ignored when it is 1 everywhere.
        given_mask: (H, W) bool or None.
        salient: a loaded salient-object model, or None (GrabCut).

    Returns:
        MaskResult with an (H, W) bool mask.

    Raises:
        MaskError: the chosen mask is empty or covers (nearly) the whole image.
        ValueError: the arrays have the wrong shapes or dtype.
    """
    height, width = _check_rgb(rgb)
    if given_mask is not None:
        _check_plane(given_mask, (height, width), "given_mask")
        if given_mask.dtype != np.bool_:
            raise ValueError(f"given_mask must be a bool array, got dtype {given_mask.dtype}")
        check_mask_coverage(given_mask, "the given mask", "check that the mask file is the right one")
        return MaskResult(mask=given_mask.copy(), source="given")
    if alpha is not None:
        _check_plane(alpha, (height, width), "alpha")
        if float(alpha.min()) < 1.0:
            mask = np.asarray(alpha > 0.5)
            check_mask_coverage(mask, "the image's alpha channel", _SUGGEST_MASK)
            return MaskResult(mask=mask, source="alpha")
    note: str | None = None
    if salient is not None:
        segmented = _salient_problem(salient, rgb)
        if isinstance(segmented, np.ndarray):
            return MaskResult(mask=segmented, source="salient")
        note = segmented
    mask = grabcut_mask(rgb)
    check_mask_coverage(mask, "the automatic segmentation (GrabCut)", _SUGGEST_MASK)
    return MaskResult(mask=mask, source="grabcut", note=note)


def _salient_problem(salient: SalientModel, rgb: np.ndarray) -> np.ndarray | str:
    """The salient model's (H, W) bool mask of ``rgb``, or why it cannot be used (GrabCut then is)."""
    from backend.imaging.salient import MaskModelError

    try:
        mask = salient.segment(rgb)
        check_mask_coverage(
            mask, f"the segmentation of the mask model {salient.name}", "GrabCut was used instead"
        )
    except MaskModelError as error:
        return f"the mask model failed ({error}); GrabCut was used instead"
    except MaskError as error:
        return str(error)
    return mask


def check_mask_coverage(mask: np.ndarray, what: str, hint: str = _SUGGEST_MASK) -> None:
    """Raise ``MaskError`` when the (H, W) bool ``mask`` is empty or covers more than 99.5 % of it.

    >>> check_mask_coverage(np.eye(4, dtype=bool), "the mask")
    >>> check_mask_coverage(np.zeros((4, 4), dtype=bool), "the mask")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    backend.imaging.errors.MaskError: the mask is empty: no pixel belongs to the object; pass a mask ...
    """
    if not mask.any():
        raise MaskError(f"{what} is empty: no pixel belongs to the object; {hint}")
    coverage = float(mask.mean())
    if coverage > MAX_COVERAGE:
        raise MaskError(
            f"{what} covers {coverage:.1%} of the image, so there is no silhouette to reconstruct from; "
            f"{hint}"
        )


def grabcut_mask(
    rgb: np.ndarray, *, inset: float = 0.07, max_side: int = 400, iterations: int = 5
) -> np.ndarray:
    """Segment the object framed near the centre of ``rgb`` with GrabCut; return an (H, W) bool mask.

    GrabCut is initialised with the rectangle inset by ``inset`` times each side, run for ``iterations``
    on a copy whose longer side is at most ``max_side`` pixels, cleaned with ``clean_mask`` and upsampled
    (bilinear, then > 0.5) to (H, W). The result may be empty; ``compute_mask`` checks it.

    Raises:
        MaskError: the image is too small to segment, or OpenCV fails on it.
    """
    height, width = _check_rgb(rgb)
    if not 0.0 < inset < 0.5:
        raise ValueError(f"inset must be in (0, 0.5), got {inset}")
    scale = min(1.0, max_side / max(height, width))
    small_width, small_height = max(1, round(width * scale)), max(1, round(height * scale))
    rect_x, rect_y = max(1, round(inset * small_width)), max(1, round(inset * small_height))
    rect = (rect_x, rect_y, small_width - 2 * rect_x, small_height - 2 * rect_y)
    if rect[2] < 2 or rect[3] < 2:
        raise MaskError(
            f"the {width} x {height} image is too small to segment automatically; {_SUGGEST_MASK}"
        )
    image = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3)
    if scale < 1.0:
        image = cv2.resize(image, (small_width, small_height), interpolation=cv2.INTER_AREA)
    # GrabCut's colour models do not depend on the channel order, so RGB is passed as it is.
    labels = np.zeros((small_height, small_width), dtype=np.uint8)
    background_model = np.zeros((1, 65), dtype=np.float64)
    foreground_model = np.zeros((1, 65), dtype=np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(
            np.ascontiguousarray(image),
            labels,
            rect,
            background_model,
            foreground_model,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error as error:
        raise MaskError(f"automatic segmentation (GrabCut) failed on this image; {_SUGGEST_MASK}") from error
    mask = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)  # (h, w)
    if not mask.any():
        return np.zeros((height, width), dtype=bool)
    mask = clean_mask(mask)
    if scale < 1.0:
        upsampled = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        mask = upsampled > 0.5
    return mask


def clean_mask(mask: np.ndarray, *, kernel_fraction: float = 0.01) -> np.ndarray:
    """Clean a segmentation: morphological open then close, the largest component, holes filled.

    The structuring element is an ellipse of odd size ``kernel_fraction`` times the longer side (at least
    3). An open that would erase everything is skipped.

    Args:
        mask: (H, W) bool.

    Returns:
        (H, W) bool, empty when ``mask`` is.

    >>> ring = np.zeros((9, 9), dtype=bool); ring[2:7, 2:7] = True; ring[4, 4] = False
    >>> bool(clean_mask(ring)[4, 4])
    True
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    pixels = mask.astype(np.uint8)
    if not pixels.any():
        return np.zeros(mask.shape, dtype=bool)
    size = max(3, 2 * round(kernel_fraction * max(mask.shape) / 2) + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    opened = cv2.morphologyEx(pixels, cv2.MORPH_OPEN, kernel)
    closed = cv2.morphologyEx(opened if opened.any() else pixels, cv2.MORPH_CLOSE, kernel)
    return fill_holes(largest_component(closed > 0))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected component of the (H, W) bool ``mask``; (H, W) bool."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.asarray(labels == largest)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of the (H, W) bool ``mask``: background not connected to the border; (H, W) bool."""
    height, width = mask.shape
    # A one-pixel frame of background joins every border pixel into one region for the flood fill.
    framed = np.zeros((height + 2, width + 2), dtype=np.uint8)
    framed[1:-1, 1:-1] = mask.astype(np.uint8)
    flood_mask = np.zeros((height + 4, width + 4), dtype=np.uint8)
    cv2.floodFill(framed, flood_mask, (0, 0), 1)
    holes = framed[1:-1, 1:-1] == 0
    return mask | holes


def _check_rgb(rgb: np.ndarray) -> tuple[int, int]:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise ValueError(f"rgb must be an (H, W, 3) numpy array, got {shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb has zero size: {rgb.shape}")
    return rgb.shape[0], rgb.shape[1]


def _check_plane(array: np.ndarray, shape: tuple[int, int], name: str) -> None:
    if not isinstance(array, np.ndarray) or array.shape != shape:
        found = getattr(array, "shape", type(array).__name__)
        raise ValueError(f"{name} must be an (H, W) = {shape} numpy array like the image, got {found}")
