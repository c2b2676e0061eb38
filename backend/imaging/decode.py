"""Decode and validate an input photo or mask file into float arrays.

Contract:

- ``load_image(source)`` reads a path or the raw bytes of a PNG, JPEG, WebP, TIFF or BMP file through
  Pillow and returns a ``DecodedImage``: ``rgb`` (H, W, 3) float32 in [0, 1] and ``alpha`` (H, W) float32 in
  [0, 1], or ``None`` when the image has no *real* alpha channel (none at all, or every pixel opaque).
  The EXIF orientation is applied, so the arrays are upright as a viewer shows them and ``size`` is the
  upright (W, H). Every Pillow mode a photo or mask comes in is converted: 8- and 16-bit greyscale (``L``,
  ``I;16``, ``I``: 16-bit scale), ``LA``, palette (``P``, with a transparent index -> alpha), ``1``-bit,
  ``CMYK``, ``YCbCr``, ``RGBA``. Multi-frame files (animated WebP, multi-page TIFF) give their first frame.
- Limits are checked before decoding: the byte size against ``max_bytes`` (from the file size for a path),
  then the pixel count in the header against ``max_pixels``. Pillow's own decompression-bomb limit also
  applies and is reported with the same error.
- Failures raise the ``ImageError`` subclasses of ``backend.imaging.errors`` (``UnsupportedImageError``,
  ``ImageTooLargeError``, ``CorruptImageError``); a missing or unreadable file raises ``ImageError``.
- ``load_mask(source, size)`` reads a mask file of any of those formats into an (H, W) bool array at the
  photo's size (W, H): its alpha when it has a real one, else luminance > 0.5; nearest-neighbour resized.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backend.imaging.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    MaskError,
    UnsupportedImageError,
)
from backend.imaging.mask import check_mask_coverage

SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
"""Pillow format names this module decodes (MPO, the JPEG variant some cameras write, is read as JPEG)."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_MASK_ASPECT_TOLERANCE = 0.02

ImageSource = str | Path | bytes


@dataclass(frozen=True)
class DecodedImage:
    """A decoded, upright image.

    Attributes:
        rgb: (H, W, 3) float32 in [0, 1]; greyscale images are replicated to three channels.
        alpha: (H, W) float32 in [0, 1], or None when the image has no alpha channel or is opaque everywhere.
        format: Pillow's format name of the file, e.g. "PNG", "JPEG".
        size: (W, H) of the arrays, after the EXIF orientation.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    size: tuple[int, int]


def load_image(
    source: ImageSource, *, max_bytes: int = 32 * 2**20, max_pixels: int = 40_000_000
) -> DecodedImage:
    """Decode ``source`` (a path or the file's bytes) into float arrays; see the module docstring.

    Raises:
        ImageTooLargeError: more than ``max_bytes`` bytes or more than ``max_pixels`` pixels.
        UnsupportedImageError: not an image in one of ``SUPPORTED_FORMATS``.
        CorruptImageError: truncated or damaged data, or a zero-size image.
        ImageError: the path does not exist or cannot be read.
    """
    data = _read_bytes(source, max_bytes)
    with warnings.catch_warnings():
        # Pillow warns (rather than fails) between its MAX_IMAGE_PIXELS and twice that: refuse those too.
        # (catch_warnings edits process-wide state; harmless here, as it only ever adds this one filter.)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _open(data)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise CorruptImageError(f"the {image.format} image has zero size ({width} x {height})")
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width} x {height} = {width * height:,} pixels; "
                    f"the limit is {max_pixels:,} pixels"
                )
            file_format = str(image.format)
            try:
                image.load()
            except _DECODE_ERRORS as error:
                raise CorruptImageError(
                    f"the {file_format} image is truncated or damaged and cannot be decoded ({error})"
                ) from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageTooLargeError(f"the image has too many pixels to decode safely ({error})") from error
    image = _apply_exif_orientation(image)
    rgb, alpha = _to_float_arrays(image)
    if alpha is not None and float(alpha.min()) >= 1.0:
        alpha = None
    return DecodedImage(
        rgb=rgb, alpha=alpha, format="JPEG" if file_format == "MPO" else file_format, size=image.size
    )


def load_mask(source: ImageSource, size: tuple[int, int]) -> np.ndarray:
    """Read a mask file and return it as an (H, W) bool array for a photo of ``size`` = (W, H).

    The mask is the file's alpha > 0.5 when it has a real alpha channel, else its luminance > 0.5. A mask of
    another resolution is resized with nearest neighbour; its aspect ratio must match the photo's (within
    2 %), since a mismatch means the wrong mask or a rotated one.

    Raises:
        MaskError: the aspect ratio differs, or the mask is empty or covers (nearly) the whole photo.
        ImageError: the file itself cannot be decoded (see ``load_image``).
    """
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be a positive (W, H), got {size}")
    decoded = load_image(source)
    if decoded.alpha is not None:
        mask = decoded.alpha > 0.5
    else:
        luminance = decoded.rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
        mask = luminance > 0.5
    mask_width, mask_height = decoded.size
    if (mask_width, mask_height) != (width, height):
        aspect_mask, aspect_photo = mask_width / mask_height, width / height
        if abs(aspect_mask / aspect_photo - 1.0) > _MASK_ASPECT_TOLERANCE:
            raise MaskError(
                f"the mask is {mask_width} x {mask_height} but the photo is {width} x {height}: "
                "their aspect ratios differ, so the mask does not belong to this photo"
            )
        mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    check_mask_coverage(mask, "the given mask")
    return mask


def _read_bytes(source: ImageSource, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ImageTooLargeError(f"the image is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
        return data
    if not isinstance(source, str | Path):
        raise TypeError(f"source must be a path or bytes, got {type(source).__name__}")
    path = Path(source)
    try:
        file_size = path.stat().st_size
        if file_size > max_bytes:
            raise ImageTooLargeError(
                f"the image file {path} is {file_size:,} bytes; the limit is {max_bytes:,} bytes"
            )
        return path.read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read the image file {path}: {error.strerror or error}") from error


def _open(data: bytes) -> Image.Image:
    """Open (header only) an image in one of the supported formats."""
    supported = ", ".join(SUPPORTED_FORMATS)
    if not data:
        raise UnsupportedImageError(f"the file is empty; supported formats: {supported}")
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        pass
    except _DECODE_ERRORS as error:
        raise CorruptImageError(f"the image header is damaged and cannot be read ({error})") from error
    claimed = _format_from_signature(data)
    if claimed is not None:
        raise CorruptImageError(f"the data starts like a {claimed} file but its header is damaged or invalid")
    # Name the format when Pillow knows it, to make the message useful ("GIF is not supported").
    try:
        with Image.open(io.BytesIO(data)) as other:
            found = f"{other.format} images are not supported"
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        found = "the data is not an image in a known format"
    raise UnsupportedImageError(f"{found}; supported formats: {supported}")


def _format_from_signature(data: bytes) -> str | None:
    """The supported format whose file signature ``data`` starts with, if any."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        transposed = ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        # A damaged EXIF block should not cost the user their photo: keep the stored orientation.
        return image
    return image if transposed is None else transposed


def _to_float_arrays(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Return rgb (H, W, 3) float32 and alpha (H, W) float32 or None, both in [0, 1]."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.clip(np.asarray(image).astype(np.float32) / 65535.0, 0.0, 1.0)  # (H, W)
        return _grey_to_rgb(grey), None
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return _grey_to_rgb(grey), None
    has_transparency = "transparency" in image.info
    if mode == "1" or (mode == "L" and not has_transparency):
        image = image.convert("L")
    elif mode in ("LA", "La"):
        image = image.convert("LA")
    elif mode in ("RGBA", "RGBa", "P", "PA") or has_transparency:
        image = image.convert("RGBA")
    else:  # RGB, RGBX, CMYK, YCbCr, LAB, HSV
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:  # L
        return _grey_to_rgb(array), None
    if array.shape[2] == 2:  # LA
        return _grey_to_rgb(array[..., 0]), np.ascontiguousarray(array[..., 1])
    if array.shape[2] == 4:  # RGBA
        return np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3])
    return np.ascontiguousarray(array), None


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32, copy=False)
