"""Accepting a job: validate everything a client sent, then store it as a queued job.

``accept_job`` checks, in order, and answers the first problem with an ``HTTPException`` whose detail
names it (and which upload it was in):

- the method exists and can run (400), its options are a JSON object (400) within the size, depth and
  number limits (``parse_options_text``) and valid for it, every number finite and in its field's range
  (422 naming the field);
- the image decodes within the byte and pixel limits (``backend.imaging.load_image``): 415 unsupported
  format, 413 too many bytes or pixels, 422 corrupt;
- the mask, if any, decodes within the same limits and is usable for this photo
  (``backend.imaging.load_mask``): same codes, 422 for an empty or full mask or a wrong aspect ratio;
  without a mask, an alpha channel that is empty or covers everything is a 422 as well (it would be
  the mask); a photo without either is segmented when the job runs (by the salient-object mask
  model when one is found, else by GrabCut), and a failure there fails the job with GrabCut's message;
- the mesh, if any, is a readable GLB with triangles (``backend.geometry.io.load_glb``): 422;
- with a memory budget (``backend.server.budget``), the job's estimated peak memory fits in it (413
  naming the estimate and the budget); the image checks hold their own estimate of the budget while
  they decode, so concurrent submissions of large photos wait for each other instead of piling up.

Only then is the job folder made (inputs under fixed names, see ``backend.server.jobs``) and the job
added, queued. Blocking work (decoding, file IO): call it from a worker thread, not the event loop.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import unicodedata
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException

from backend.checkpoints import checkpoint_root
from backend.imaging import (
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    check_mask_coverage,
    load_image,
    load_mask,
)
from backend.methods.base import MethodError
from backend.server.budget import MemoryBudget, OverBudget, decode_bytes, image_pixels, job_bytes
from backend.server.catalog import MethodFactory
from backend.server.jobs import IMAGE_FILE, MASK_FILE, MESH_FILE, Job, JobStore, new_job_id

_T = TypeVar("_T")

_DECODE_SLOTS = threading.BoundedSemaphore(2)
"""At most two submissions decode at once: a 40-megapixel photo is ~0.5 GB of float32 while checked."""

MAX_OPTIONS_CHARS = 65_536
"""Longest options text accepted (every method's full options fit in a few hundred characters)."""
MAX_OPTIONS_DEPTH = 8
"""Deepest nesting of arrays and objects in the options (every method's options are flat)."""
MAX_INTEGER_DIGITS = 30
"""Longest integer in the options, in digits (the largest bound of any option has 10)."""

MAX_NAME_LENGTH = 200
"""Characters of a client's file name kept in ``image_name``."""


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the client's file name (text only, never a path here) and its bytes."""

    filename: str | None
    data: bytes


@dataclass(frozen=True)
class Limits:
    """Byte and pixel limits for one image or mask."""

    max_bytes: int
    max_pixels: int


def sanitize_name(name: str | None) -> str:
    """A client file name reduced to display text: the last path part, printable, at most 200 characters.

    >>> sanitize_name("C:\\\\photos\\\\bird.jpg"), sanitize_name("../../etc/passwd"), sanitize_name(None)
    ('bird.jpg', 'passwd', 'image')
    >>> sanitize_name("a\\x00b\\nc.png")
    'abc.png'
    """
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(char for char in text if unicodedata.category(char)[0] != "C").strip()
    return text[:MAX_NAME_LENGTH] or "image"


def parse_options_text(factory: MethodFactory, method: str, text: str) -> dict[str, Any]:
    """The resolved (defaults filled in), JSON-ready options of ``method`` from the form's text.

    The text is checked before it is parsed: at most ``MAX_OPTIONS_CHARS`` characters, arrays and objects
    nested at most ``MAX_OPTIONS_DEPTH`` deep; numbers must be finite (no ``NaN``/``Infinity``, nor
    ``1e309``, which parses to infinity) and integers at most ``MAX_INTEGER_DIGITS`` digits long.

    Raises:
        HTTPException: 400 for an unknown or unavailable method, or options that are not valid JSON or
            not a JSON object; 422 for options that are too long, too deep, hold a non-finite or too long
            number, or are not valid for the method (the message names the field).
    """
    try:
        available, reason = factory.availability(method)
    except MethodError as error:
        raise HTTPException(400, str(error)) from None
    if not available:
        raise HTTPException(400, f"method {method!r} cannot run: {reason}")
    data = _options_json(text)
    try:
        options = factory.parse_options(method, data).model_dump(mode="json")
    except MethodError as error:
        raise HTTPException(422, str(error)) from None
    except (ValueError, TypeError, RecursionError) as error:  # a validator's own fault: still the input's
        raise HTTPException(422, f"invalid options for {method}: {error}") from None
    for name in PATH_OPTIONS:
        if options.get(name):
            options[name] = _installed_path(name, options[name])
    return options


PATH_OPTIONS = ("prior_checkpoint",)
"""Options that name a file on the server's machine: a client may only name an installed checkpoint
(under ``backend.checkpoints.checkpoint_root()``), never any file the server can read."""


def _installed_path(name: str, value: Any) -> str:
    """``value`` as an absolute path inside the installed checkpoints' folder (relative: to that folder);
    422 when it points elsewhere."""
    root = checkpoint_root().resolve()
    path = Path(str(value)).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise HTTPException(
            422,
            f"invalid options: {name}: a job sent to the server may only name an installed checkpoint "
            f"(a path inside {root}, or relative to it); leave it empty for the newest installed one",
        )
    return str(resolved)


def _options_json(text: str) -> dict[str, Any]:
    """The options text as a JSON object, within the limits of ``parse_options_text``."""
    if len(text) > MAX_OPTIONS_CHARS:
        raise HTTPException(
            422, f"options: {len(text)} characters, more than the limit of {MAX_OPTIONS_CHARS}"
        )
    depth = json_depth(text)
    if depth > MAX_OPTIONS_DEPTH:
        raise HTTPException(
            422, f"options: nested {depth} levels deep, more than the limit of {MAX_OPTIONS_DEPTH}"
        )
    try:
        data = json.loads(text, parse_constant=_refuse_constant) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise HTTPException(400, f"options must be a JSON object; it is not valid JSON: {error}") from None
    except _NonFinite as error:
        raise HTTPException(422, f"options: {error}") from None
    except (ValueError, RecursionError) as error:  # e.g. Python's limit on the digits of an integer
        raise HTTPException(422, f"options: a number is out of range: {error}") from None
    if not isinstance(data, dict):
        raise HTTPException(400, f"options must be a JSON object, got {type(data).__name__}")
    problem = _non_finite_or_long(data)
    if problem is not None:
        raise HTTPException(422, f"options: {problem}")
    return data


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not allowed: every number must be finite")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (brackets inside strings ignored);
    meaningful for valid JSON, and never more than the number of opening brackets for any text.

    >>> json_depth('{"a": [1, {"b": "]]"}]}'), json_depth("3"), json_depth("[[[")
    (3, 0, 3)
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _non_finite_or_long(value: Any, path: str = "") -> str | None:
    """What is wrong with a number anywhere in parsed options (``1e309`` is infinity), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path or 'value'}: {value} is not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_INTEGER_DIGITS:
        return f"{path or 'value'}: an integer of more than {MAX_INTEGER_DIGITS} digits"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        problem = _non_finite_or_long(item, f"{path}.{key}" if path else str(key))
        if problem is not None:
            return problem
    return None


def accept_job(
    store: JobStore,
    factory: MethodFactory,
    limits: Limits,
    *,
    image: Upload,
    mask: Upload | None,
    mesh: Upload | None,
    method: str,
    options_text: str,
    budget: MemoryBudget | None = None,
) -> Job:
    """Validate a submission (module docstring) and add it to ``store`` as a queued job; returns it."""
    options = parse_options_text(factory, method, options_text)
    pixels = image_pixels(image.data)
    mask_pixels = image_pixels(mask.data) if mask is not None else 0
    decoding = decode_bytes(min(pixels or limits.max_pixels, limits.max_pixels))
    decoding += decode_bytes(min(mask_pixels or 0, limits.max_pixels))
    if budget is not None:
        try:
            if pixels is not None:
                budget.check(job_bytes(pixels, options), "this job")
            budget.check(decoding, "checking these images")
        except OverBudget as error:
            raise HTTPException(
                413, f"{error}; use a smaller texture_size or crop_size, or a smaller photo"
            ) from None
    with _DECODE_SLOTS, budget.reserve(decoding, "image check") if budget is not None else nullcontext():
        _check_images(image, mask, limits)
    staging = store.staging_dir()
    try:
        (staging / IMAGE_FILE).write_bytes(image.data)
        if mask is not None:
            (staging / MASK_FILE).write_bytes(mask.data)
        if mesh is not None:
            (staging / MESH_FILE).write_bytes(mesh.data)
            _check_mesh(staging / MESH_FILE)
        job = Job(
            id=new_job_id(),
            method=method,
            options=options,
            image_name=sanitize_name(image.filename),
            has_mask=mask is not None,
            has_mesh=mesh is not None,
        )
        return store.add(job, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when add renamed it


def _check_images(image: Upload, mask: Upload | None, limits: Limits) -> None:
    photo = _checked(
        "image", lambda: load_image(image.data, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels)
    )
    if mask is not None:
        # load_mask decodes with the default limits, so the server's own limits are checked first.
        _checked(
            "mask", lambda: load_image(mask.data, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels)
        )
        _checked("mask", lambda: load_mask(mask.data, photo.size))
    elif photo.alpha is not None:  # the alpha channel will be the mask: check it now, like a mask file
        alpha = photo.alpha
        _checked("image", lambda: check_mask_coverage(alpha > 0.5, "the image's alpha channel"))


def image_error_status(error: ImageError) -> int:
    """The HTTP status for a bad image or mask: 415 unsupported, 413 too large, 422 otherwise."""
    if isinstance(error, UnsupportedImageError):
        return 415
    if isinstance(error, ImageTooLargeError):
        return 413
    return 422


def _checked(what: str, decode: Callable[[], _T]) -> _T:
    try:
        return decode()
    except ImageError as error:
        raise HTTPException(image_error_status(error), f"{what}: {error}") from None


def _check_mesh(path: Path) -> None:
    from backend.geometry.io import load_glb

    try:
        load_glb(path)
    except (ValueError, TypeError, IndexError, KeyError, OSError) as error:
        message = str(error).replace(str(path), "the mesh")
        raise HTTPException(422, f"mesh: not a usable GLB file: {message}") from None
