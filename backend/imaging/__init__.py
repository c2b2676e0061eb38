"""Imaging: decode and validate photos and masks, find the object mask, crop around it.

``load_image`` -> ``DecodedImage`` (rgb (H, W, 3) float32, alpha or None); ``load_mask`` reads a mask file;
``compute_mask`` picks the given mask, the alpha channel, a salient-object model (``SalientModel``, an
ONNX network found by ``find_mask_model``; ``backend.imaging.salient``) or GrabCut; ``crop_to_mask`` cuts
the square crop a method consumes and its ``CropTransform`` maps crop pixels and NDC back to the photo.
Bad input raises an ``ImageError`` (a ``ValueError``) subclass. Coordinate conventions are those of
``backend.geometry``. ``backend.imaging.distance_transform`` (torch; import the submodule, not
re-exported here) is the exact Euclidean distance transform of boolean masks.
"""

from backend.imaging.crop import CropResult, CropTransform, crop_box, crop_to_mask, paste_mask
from backend.imaging.decode import SUPPORTED_FORMATS, DecodedImage, load_image, load_mask
from backend.imaging.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    MaskError,
    UnsupportedImageError,
)
from backend.imaging.mask import MaskResult, check_mask_coverage, clean_mask, compute_mask, grabcut_mask
from backend.imaging.salient import MaskModelError, SalientModel, find_mask_model, load_cached

__all__ = [
    "SUPPORTED_FORMATS",
    "CorruptImageError",
    "CropResult",
    "CropTransform",
    "DecodedImage",
    "ImageError",
    "ImageTooLargeError",
    "MaskError",
    "MaskModelError",
    "MaskResult",
    "SalientModel",
    "UnsupportedImageError",
    "check_mask_coverage",
    "clean_mask",
    "compute_mask",
    "crop_box",
    "crop_to_mask",
    "find_mask_model",
    "grabcut_mask",
    "load_cached",
    "load_image",
    "load_mask",
    "paste_mask",
]
