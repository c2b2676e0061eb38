"""The server's memory budget: estimate what a job (and the check of a submission) needs, refuse what
can never fit, and hold back work until its share of the budget is free.

Estimates (bytes), from peak resident memory measured on the ``fit`` pipeline (CPU, one thread):

- checking an upload (``intake``: decoding the photo, and the mask): ``DECODE_BYTES_PER_PIXEL`` per
  pixel (a 6000 x 6000 PNG: ~1.1 GiB, whatever its file size: a compressible PNG is small on the wire);
- running a job: ``JOB_BASE_BYTES`` + the decode of its photo + ``TEXEL_BYTES`` per texel of the
  output texture (taken as ``texture_size`` x 2 ``texture_size``, the widest layout any method makes)
  + ``CROP_BYTES_PER_PIXEL`` per crop pixel. ``fit`` measured 1.4 GiB at texture_size 1024 and
  3.6 GiB at 2048 (~380 bytes per texel): texture_size 4096 needs ~13 GiB.

``MemoryBudget(total)`` is a weighted semaphore: ``reserve(amount, what)`` waits until ``amount`` fits
beside what is reserved, and raises ``OverBudget`` at once when it can never fit. The intake reserves
the decode of each submission (refusing with 413 what exceeds the budget alone), and the worker holds
the job's estimate while it runs, so a job, the uploads being checked meanwhile and the queue stay
under the budget together (``mono2mesh serve --memory-budget-gb``, default half the machine's memory).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

DECODE_BYTES_PER_PIXEL = 32
JOB_BASE_BYTES = 700 * 2**20
TEXEL_BYTES = 400
CROP_BYTES_PER_PIXEL = 64
DEFAULT_TEXTURE_SIZE = 1024
"""Texture side assumed for a method whose options give none (``None``: the method's own default)."""


class OverBudget(ValueError):
    """A piece of work needs more memory than the whole budget."""


def gib(size: float) -> str:
    """Bytes as GiB text, e.g. '1.5 GiB'."""
    return f"{size / 2**30:.1f} GiB"


def image_pixels(data: bytes) -> int | None:
    """Pixel count of an encoded image from its header alone (no decoding); None when unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # any failure: the decoder will report it properly
        return None
    return int(width) * int(height)


def decode_bytes(pixels: int) -> int:
    """Estimated peak of decoding and checking an image of ``pixels`` pixels."""
    return DECODE_BYTES_PER_PIXEL * pixels


def job_bytes(pixels: int, options: Mapping[str, Any]) -> int:
    """Estimated peak of a job on a photo of ``pixels`` pixels with these (resolved) options."""
    texture = options.get("texture_size")
    side = int(texture) if isinstance(texture, int) and texture > 0 else DEFAULT_TEXTURE_SIZE
    crop = options.get("crop_size")
    crop_side = int(crop) if isinstance(crop, int) and crop > 0 else 512
    return (
        JOB_BASE_BYTES
        + decode_bytes(pixels)
        + TEXEL_BYTES * 2 * side * side
        + CROP_BYTES_PER_PIXEL * crop_side * crop_side
    )


class MemoryBudget:
    """A weighted semaphore over ``total`` bytes (module docstring)."""

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError(f"the memory budget must be positive, got {total}")
        self.total = total
        self._used = 0
        self._condition = threading.Condition()

    @property
    def used(self) -> int:
        with self._condition:
            return self._used

    def check(self, amount: int, what: str) -> None:
        """``OverBudget`` naming ``what`` when ``amount`` exceeds the whole budget."""
        if amount > self.total:
            raise OverBudget(
                f"{what} needs about {gib(amount)} of memory, more than this server's budget of "
                f"{gib(self.total)}"
            )

    @contextmanager
    def reserve(self, amount: int, what: str) -> Iterator[None]:
        """Hold ``amount`` bytes of the budget while the block runs (waiting until they are free)."""
        self.check(amount, what)
        with self._condition:
            self._condition.wait_for(lambda: self._used + amount <= self.total)
            self._used += amount
        try:
            yield
        finally:
            with self._condition:
                self._used -= amount
                self._condition.notify_all()
