"""Salient-object masks from a segmentation network run with onnxruntime (U^2-Net, IS-Net, BiRefNet).

Contract:

- ``SalientModel.load(path, spec=None)`` opens an ONNX file with onnxruntime (the CPU provider; CUDA first
  when onnxruntime offers it) and reads its first input's name and size from the graph: the input must be
  float, rank 4 (N, 3, h, w); a fixed (h, w) is used as it is, a dynamic one falls back to
  ``spec.input_size``. ``spec`` defaults to the known model named like the file (``u2netp.onnx`` ->
  ``KNOWN_MODELS["u2netp"]``), else to ``generic_spec`` (U^2-Net's processing).
- ``preprocess(rgb)``: (H, W, 3) float in [0, 1] -> (1, 3, h, w) float32: resized to the model's input
  (area average when shrinking, bilinear otherwise), divided by its maximum (U^2-Net's reference
  ``ToTensorLab`` and rembg do so for every model listed here), then ``(x - mean) / std`` per channel.
- ``postprocess(output, (H, W))``: the first output, squeezed to (h, w), mapped to [0, 1] by
  ``spec.output``: "minmax" (``(p - min) / (max - min)``, U^2-Net's reference and IS-Net, whose outputs are
  already sigmoid probabilities; a constant map gives zeros) or "sigmoid" (BiRefNet, whose output is
  logits), then resized (bilinear) to (H, W).
- ``segment(rgb)``: (H, W) bool, the probability above 0.5 cleaned by ``backend.imaging.mask.clean_mask``
  (open/close, largest component, holes filled). It may be empty; ``compute_mask`` checks it.
- Every failure (no file, not ONNX, wrong input, onnxruntime missing or failing at run time) raises a
  ``MaskModelError`` (a ``ValueError``) naming the problem. ``compute_mask`` falls back to GrabCut on it.

Where the model lives (``find_mask_model(explicit)``), first match decides:

1. ``explicit`` (``mono2mesh reconstruct --mask-model PATH``, ``mono2mesh serve --mask-model PATH``);
2. else ``$MONO2MESH_MASK_MODEL`` (``MODEL_ENV``) when set and not empty;
3. else the cache folder ``backend.paths.mask_model_dir()`` = ``<data dir>/models/mask``: its newest
   ``<name>.onnx`` (the one downloaded last).

A configured path (1 or 2) that is missing is reported as such (``reason``), never skipped. Nothing is
ever downloaded unless asked: ``download_model`` (``mono2mesh mask-model download``,
``POST /v1/mask-model/download``) fetches with urllib to a temporary name in the cache folder, checks the
registry's checksum and that onnxruntime loads the file, then renames it to ``<name>.onnx``.
``mask_model_status`` is the JSON of ``mono2mesh mask-model status`` and ``GET /v1/mask-model``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from backend.imaging.mask import clean_mask
from backend.paths import mask_model_dir

MODEL_ENV = "MONO2MESH_MASK_MODEL"
"""Environment variable naming a mask model file (used when no explicit path is given)."""

DEFAULT_MODEL = "u2netp"
"""The model ``mono2mesh mask-model download`` fetches by default: U^2-Net's small variant, ~4.6 MB."""

REMBG_RELEASE = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
"""Public ONNX exports of the known models (the rembg project's release files)."""

THRESHOLD = 0.5
"""Probability above which a pixel belongs to the object."""

MAX_DOWNLOAD_BYTES = 2 * 2**30
"""Largest file a download accepts (the largest known model is ~225 MB)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OutputKind = Literal["minmax", "sigmoid"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class MaskModelError(ValueError):
    """The mask model cannot be used: missing file, not ONNX, wrong input or output, failing run."""


class MaskModelRuntimeMissing(MaskModelError):
    """onnxruntime cannot be imported."""


class MaskModelDownloadError(MaskModelError):
    """A download failed: unreachable URL, too large, checksum mismatch, or a file onnxruntime refuses."""


@dataclass(frozen=True)
class ModelSpec:
    """How to run one model and where to get it.

    Attributes:
        name: registry name; the cached file is ``<name>.onnx``.
        file_name: the file name under ``REMBG_RELEASE`` (the download URL is base + file name).
        input_size: (h, w) side used when the graph's input size is dynamic.
        mean, std: per-channel normalisation after the division by the image's maximum.
        output: "minmax" (probabilities, min-max normalised) or "sigmoid" (logits).
        checksum: "md5:<hex>" or "sha256:<hex>" of the published file, or None (not checked).
        size_mb: approximate download size, for messages.
    """

    name: str
    file_name: str
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output: OutputKind = "minmax"
    checksum: str | None = None
    size_mb: float = 0.0


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # U^2-Net small (Qin et al. 2020): 320 x 320, ImageNet mean/std, sigmoid output min-max normalised.
        ModelSpec("u2netp", "u2netp.onnx", 320, checksum="md5:8e83ca70e441ab06c318d82300c84806", size_mb=4.6),
        ModelSpec("u2net", "u2net.onnx", 320, checksum="md5:60024c5c889badc19c04ad937298a77b", size_mb=176),
        # IS-Net (DIS, Qin et al. 2022): 1024 x 1024, mean subtracted, std 1.
        ModelSpec(
            "isnet-general-use",
            "isnet-general-use.onnx",
            1024,
            std=(1.0, 1.0, 1.0),
            checksum="md5:fc16ebd8b0c10d971d3513d564d01e29",
            size_mb=179,
        ),
        # BiRefNet (Zheng et al. 2024), Swin-T backbone: 1024 x 1024, ImageNet mean/std, logits out.
        ModelSpec(
            "birefnet-general-lite",
            "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
            1024,
            output="sigmoid",
            checksum="md5:4fab47adc4ff364be1713e97b7e66334",
            size_mb=224,
        ),
    )
}
"""The models with a public ONNX export, by name; ``DEFAULT_MODEL`` first."""


def generic_spec(name: str) -> ModelSpec:
    """The spec of a model file of unknown ``name``: U^2-Net's processing (320 when the size is dynamic)."""
    return ModelSpec(name, f"{name}.onnx", 320)


def spec_for(name: str) -> ModelSpec:
    """``KNOWN_MODELS[name]``, else ``generic_spec(name)``."""
    return KNOWN_MODELS.get(name) or generic_spec(name)


def check_model_name(name: str) -> str:
    """``name`` if it is a usable file stem (letters, digits, ``.``, ``_``, ``-``); else MaskModelError."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".onnx"):
        raise MaskModelError(
            "a mask model name is letters, digits, '.', '_' and '-' (at most 100, no .onnx), "
            f"got {str(name)[:100]!r}"
        )
    return name


def runtime_problem() -> str | None:
    """Why onnxruntime cannot be used (not installed, broken), or None when it imports."""
    try:
        import onnxruntime  # noqa: F401
    except Exception as error:  # ImportError, or a broken native library
        return f"onnxruntime is not installed or does not load ({error}); pip install onnxruntime"
    return None


class SalientModel:
    """One loaded ONNX salient-object model (module docstring). Thread-safe: ``run`` is."""

    def __init__(self, session: Any, path: Path, spec: ModelSpec, input_name: str, size: tuple[int, int]):
        self._session = session
        self.path = path
        self.spec = spec
        self.input_name = input_name
        self.input_size = size
        """(h, w) of the network's input."""

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def load(cls, path: str | Path, spec: ModelSpec | None = None) -> SalientModel:
        """Open the ONNX file at ``path`` (module docstring); ``MaskModelError`` naming what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise MaskModelError(f"mask model file not found: {path}")
        if path.stat().st_size == 0:
            raise MaskModelError(f"the mask model file {path} is empty")
        spec = spec if spec is not None else spec_for(path.stem)
        problem = runtime_problem()
        if problem is not None:
            raise MaskModelRuntimeMissing(problem)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on stderr for every job
        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            raise MaskModelError(f"{path} is not a usable ONNX model: {_first_line(error)}") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise MaskModelError(
                f"{path}: a mask model has one input and at least one output, "
                f"this one has {len(inputs)} inputs and {len(outputs)} outputs"
            )
        first = inputs[0]
        if first.type != "tensor(float)":
            raise MaskModelError(f"{path}: the input must be float32 ({first.type} found)")
        shape = list(first.shape) if first.shape is not None else []
        if len(shape) != 4:
            raise MaskModelError(f"{path}: the input must be (N, 3, h, w), rank 4; its shape is {shape}")
        if isinstance(shape[1], int) and shape[1] != 3:
            raise MaskModelError(f"{path}: the input must have 3 channels (N, 3, h, w); it is {shape}")
        if isinstance(shape[0], int) and shape[0] != 1:
            raise MaskModelError(f"{path}: the input batch must be 1 or dynamic; it is {shape}")
        height, width = shape[2], shape[3]
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            size = (height, width)
        else:  # a dynamic side: the known model's size
            size = (spec.input_size, spec.input_size)
        return cls(session, path, spec, first.name, size)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float in [0, 1] -> (1, 3, h, w) float32 network input (module docstring)."""
        _check_rgb(rgb)
        height, width = self.input_size
        image: np.ndarray = np.asarray(rgb, dtype=np.float32)
        if image.shape[:2] != (height, width):
            shrink = height <= image.shape[0] and width <= image.shape[1]
            interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            image = cv2.resize(image, (width, height), interpolation=interpolation)  # (h, w, 3)
        image = image / max(float(image.max()), 1e-6)
        mean = np.asarray(self.spec.mean, dtype=np.float32)
        std = np.asarray(self.spec.std, dtype=np.float32)
        normalised = (image - mean) / std  # (h, w, 3)
        return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], dtype=np.float32)

    def run(self, network_input: np.ndarray) -> np.ndarray:
        """The first output of the network for a (1, 3, h, w) float32 input, as float32 (any shape)."""
        try:
            outputs = self._session.run(None, {self.input_name: network_input})
        except Exception as error:
            raise MaskModelError(f"the mask model {self.path} failed: {_first_line(error)}") from None
        return np.asarray(outputs[0], dtype=np.float32)

    def postprocess(self, output: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The network's first output -> (H, W) = ``size`` float32 object probability in [0, 1]."""
        plane = np.squeeze(np.asarray(output, dtype=np.float32))
        if plane.ndim != 2 or plane.size == 0:
            raise MaskModelError(
                f"the mask model {self.path} gave an output of shape {np.shape(output)}; "
                "expected one (h, w) map, e.g. (1, 1, h, w)"
            )
        if not np.isfinite(plane).all():
            raise MaskModelError(f"the mask model {self.path} gave non-finite values")
        probability: np.ndarray
        if self.spec.output == "sigmoid":
            probability = 1.0 / (1.0 + np.exp(-np.clip(plane, -60.0, 60.0)))
        else:
            low, high = float(plane.min()), float(plane.max())
            if high - low <= 1e-12:
                probability = np.zeros_like(plane)  # a constant map: no object stands out
            else:
                probability = (plane - low) / (high - low)
        height, width = size
        resized = cv2.resize(probability.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(resized, 0.0, 1.0).reshape(height, width)

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32 object probability of the (H, W, 3) photo."""
        return self.postprocess(self.run(self.preprocess(rgb)), rgb.shape[:2])

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) bool object mask of the (H, W, 3) photo: probability > 0.5, cleaned (``clean_mask``)."""
        return clean_mask(self.probability(rgb) > THRESHOLD)


_LOADED: dict[tuple[str, int, int], SalientModel] = {}
_LOADED_LOCK = threading.Lock()


def load_cached(path: str | Path) -> SalientModel:
    """``SalientModel.load(path)``, kept while the file's size and modification time stay the same."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise MaskModelError(f"mask model file not found: {path}") from None
    key = (str(path.absolute()), stat.st_mtime_ns, stat.st_size)
    with _LOADED_LOCK:
        model = _LOADED.get(key)
        if model is None:
            model = SalientModel.load(path)
            _LOADED.clear()  # one model at a time: a replaced file frees the old session
            _LOADED[key] = model
        return model


@dataclass(frozen=True)
class ModelLookup:
    """Where the mask model was looked for and what was found (``find_mask_model``).

    Attributes:
        name: the model's name (the file's stem), or ``DEFAULT_MODEL`` when none was found.
        path: the model file, or None.
        source: "option", "environment" or "cache" (where ``path`` came from), or None.
        searched: the places looked at, in order (a file, or ``<cache folder>/*.onnx``).
        reason: why no model can be used (None when one can).
    """

    name: str
    path: Path | None
    source: str | None
    searched: tuple[str, ...]
    reason: str | None

    @property
    def available(self) -> bool:
        return self.path is not None and self.reason is None

    @property
    def configured(self) -> bool:
        """Whether a model was asked for (an option or the variable) or a cached file was found."""
        return self.source is not None


def find_mask_model(explicit: str | Path | None = None, *, check_runtime: bool = True) -> ModelLookup:
    """Find the mask model (module docstring); never downloads. ``check_runtime``: a found file is only
    ``available`` when onnxruntime imports too."""
    if explicit is not None and str(explicit) != "":
        return _configured(Path(explicit).expanduser(), "option", "the --mask-model file", check_runtime)
    variable = os.environ.get(MODEL_ENV, "")
    if variable:
        return _configured(Path(variable).expanduser(), "environment", f"${MODEL_ENV}", check_runtime)
    folder = mask_model_dir()
    searched = (str(folder / "*.onnx"),)
    found = _newest_model(folder)
    if found is None:
        missing = f"no mask model in {folder}; run `mono2mesh mask-model download`"
        return ModelLookup(DEFAULT_MODEL, None, None, searched, missing)
    reason = runtime_problem() if check_runtime else None
    return ModelLookup(found.stem, found, "cache", searched, reason)


def _configured(path: Path, source: str, what: str, check_runtime: bool) -> ModelLookup:
    if not path.is_file():
        return ModelLookup(
            path.stem or DEFAULT_MODEL, None, source, (str(path),), f"{what} {path} is missing"
        )
    reason = runtime_problem() if check_runtime else None
    return ModelLookup(path.stem, path, source, (str(path),), reason)


def _newest_model(folder: Path) -> Path | None:
    """The most recently modified ``*.onnx`` file in ``folder`` (ties: by name), or None."""
    try:
        candidates = [
            p for p in folder.iterdir() if p.suffix == ".onnx" and not p.name.startswith(".") and p.is_file()
        ]
    except OSError:
        return None
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name))


def download_url(name: str = DEFAULT_MODEL, base_url: str | None = None) -> str:
    """The URL ``download_model(name)`` fetches: ``base_url`` (default ``REMBG_RELEASE``) + file name."""
    spec = KNOWN_MODELS.get(check_model_name(name))
    if spec is None:
        known = ", ".join(KNOWN_MODELS)
        raise MaskModelError(f"unknown mask model {name!r} (known: {known}); give its URL to download it")
    return (base_url or REMBG_RELEASE).rstrip("/") + "/" + spec.file_name


def mask_model_status(explicit: str | Path | None = None, base_url: str | None = None) -> dict[str, Any]:
    """The status JSON: ``{"available", "path", "name", "source", "searched", "reason", "download_url"}``.

    ``download_url`` is what a download of ``DEFAULT_MODEL`` would fetch.
    """
    lookup = find_mask_model(explicit)
    return {
        "available": lookup.available,
        "path": None if lookup.path is None else str(lookup.path),
        "name": lookup.name,
        "source": lookup.source,
        "searched": list(lookup.searched),
        "reason": lookup.reason,
        "download_url": download_url(DEFAULT_MODEL, base_url),
    }


def download_model(
    name: str = DEFAULT_MODEL,
    url: str | None = None,
    *,
    base_url: str | None = None,
    folder: str | Path | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    timeout: float = 60.0,
) -> Path:
    """Download model ``name`` into ``folder`` (default ``mask_model_dir()``) as ``<name>.onnx``.

    The URL is ``url`` when given (http, https or file), else ``download_url(name, base_url)``. The
    file is written to a temporary name, its checksum checked when ``KNOWN_MODELS`` has one for
    ``name`` (also with ``url``), opened with onnxruntime, and only then renamed; on any failure nothing
    is left behind.

    Raises:
        MaskModelError: a bad or unknown name (without ``url``) or URL scheme.
        MaskModelRuntimeMissing: onnxruntime is missing (the file could not be checked).
        MaskModelDownloadError: the download, the checksum or the load check failed.
    """
    check_model_name(name)
    if url is None:
        url = download_url(name, base_url)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise MaskModelError(f"a mask model URL is http, https or file; got {url!r}")
    problem = runtime_problem()
    if problem is not None:
        raise MaskModelRuntimeMissing(f"cannot check a downloaded model: {problem}")
    spec = KNOWN_MODELS.get(name)
    target_dir = Path(folder) if folder is not None else mask_model_dir()
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MaskModelDownloadError(f"cannot create the mask model folder {target_dir}: {error}") from None
    target = target_dir / f"{name}.onnx"
    temporary = target_dir / f".{name}.{secrets.token_hex(6)}.part"
    try:
        digests = _fetch(url, temporary, max_bytes, timeout)
        if spec is not None and spec.checksum is not None:
            algorithm, _, expected = spec.checksum.partition(":")
            if digests.get(algorithm) != expected.lower():
                raise MaskModelDownloadError(
                    f"checksum mismatch for {url}: expected {algorithm} {expected}, got "
                    f"{digests.get(algorithm)}; the file was not kept"
                )
        try:
            SalientModel.load(temporary, spec=spec if spec is not None else generic_spec(name))
        except MaskModelError as error:
            raise MaskModelDownloadError(
                f"the file from {url} is not a usable mask model ({error}); it was not kept"
            ) from None
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _fetch(url: str, destination: Path, max_bytes: int, timeout: float) -> dict[str, str]:
    """Copy ``url`` to ``destination``; returns {"md5", "sha256"} hex digests of the bytes."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    total = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
            while chunk := response.read(1 << 20):
                total += len(chunk)
                if total > max_bytes:
                    raise MaskModelDownloadError(f"{url} is larger than {max_bytes} bytes; not kept")
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
    except MaskModelDownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise MaskModelDownloadError(f"could not download {url}: {reason}") from None
    if total == 0:
        raise MaskModelDownloadError(f"{url} is empty; not kept")
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        shape = getattr(rgb, "shape", type(rgb).__name__)
        raise ValueError(f"rgb must be an (H, W, 3) numpy array, got {shape}")
