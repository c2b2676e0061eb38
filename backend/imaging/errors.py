"""Errors raised for bad images and masks.

Every error is a ``ValueError`` (bad input, not a bug) with a message that names the problem, so that the
server can answer it with a 4xx status and the command line can print it as it is:

- ``UnsupportedImageError``: not an image, or a format this project does not read (415).
- ``ImageTooLargeError``: the file has too many bytes or the image too many pixels (413).
- ``CorruptImageError``: a supported format whose data is truncated, damaged or zero-sized (422).
- ``MaskError``: a mask that is unusable (empty, covering the whole image, wrong aspect ratio) (422).
"""

from __future__ import annotations


class ImageError(ValueError):
    """Base class: the image or mask given as input cannot be used."""


class UnsupportedImageError(ImageError):
    """The data is not an image in one of the supported formats."""


class ImageTooLargeError(ImageError):
    """The file is larger than the byte limit or the image has more pixels than the pixel limit."""


class CorruptImageError(ImageError):
    """The data starts like a supported image but cannot be decoded (truncated, damaged, zero size)."""


class MaskError(ImageError):
    """The object mask is unusable: empty, covering (nearly) the whole image, or of the wrong shape."""
