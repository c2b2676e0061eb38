"""Photo in, files out: the steps every front end (CLI, server, benchmarks) runs around a method.

``reconstruct_photo(method, image, mask=..., options=..., mask_model=None)``:
  decode the photo (``backend.imaging``), choose its mask (given file > alpha channel > salient-object
  model > GrabCut), crop a square around it at the method's ``crop_size``, run ``method.reconstruct``
  and return a ``PhotoReconstruction`` holding the result, the photo, the mask at photo resolution and
  the crop. The salient model is looked up only for a photo with neither a mask file nor an alpha
  channel, when the job runs: ``mask_model`` (a path), else ``$MONO2MESH_MASK_MODEL``, else the newest
  file of the cache folder (``backend.imaging.salient.find_mask_model``; nothing is downloaded). With no
  model anywhere, GrabCut runs as it always did and the report is unchanged; with one, the report's
  ``photo`` gains ``mask_model`` ({"name", "path"}) and, when the model could not be used (a missing or
  corrupt file, onnxruntime missing, an empty segmentation) and GrabCut was used instead, ``mask_note``
  saying why. A model never makes the job fail.
  A method whose ``automatic_mask`` is False (``unsup3d``: it reads tightly framed photos, where GrabCut
  finds nothing or an eye) gets, for a photo with neither a mask file nor an alpha channel, the whole
  photo as its object (mask source "whole": the square around the photo, no padding).
``export(result, out_dir, stem)``:
  writes ``<stem>.glb``, ``<stem>.obj`` + ``.mtl`` + ``_texture.png``, ``<stem>_preview.png``,
  ``<stem>_mask.png`` (photo resolution) and ``<stem>.json`` (the report), and returns their paths.

Progress: the caller's ``progress(fraction, stage)`` gets the fraction of the *whole* job (0..1, never
decreasing), with the stage name ("mask", "shape", "texture", "export"); methods report per-stage
fractions and ``StagedProgress`` maps them onto ``STAGE_SPANS``. A ``Cancelled`` raised by the
caller's callback propagates out of ``reconstruct_photo``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend.geometry.io import save_glb, save_obj
from backend.geometry.mesh import TexturedMesh
from backend.imaging import (
    CropResult,
    DecodedImage,
    MaskModelError,
    SalientModel,
    compute_mask,
    crop_to_mask,
    find_mask_model,
    load_cached,
    load_image,
    load_mask,
)
from backend.imaging.decode import ImageSource
from backend.methods.base import (
    Method,
    MethodOptions,
    ProgressCallback,
    Reconstruction,
    cpu_threads,
    no_progress,
)
from backend.methods.preview import make_preview

STAGE_SPANS: dict[str, tuple[float, float]] = {
    "mask": (0.0, 0.05),
    "shape": (0.05, 0.8),
    "texture": (0.8, 0.9),
    "export": (0.9, 1.0),
}
"""The part of the whole job's progress bar each stage fills."""

DEFAULT_MAX_BYTES = 32 * 2**20
DEFAULT_MAX_PIXELS = 40_000_000


class StagedProgress:
    """Wraps an overall ``progress(fraction, stage)`` callback into the per-stage one methods call."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._last = 0.0

    def __call__(self, fraction: float, stage: str) -> None:
        start, end = STAGE_SPANS.get(stage, (self._last, self._last))
        overall = start + (end - start) * min(max(float(fraction), 0.0), 1.0)
        self._last = max(self._last, overall)
        self._callback(self._last, stage)


@dataclass
class PhotoReconstruction:
    """A reconstruction with the photo it came from.

    Attributes:
        reconstruction: the method's result (mesh, crop camera, crop mask, report).
        photo: the decoded photo.
        photo_mask: (H, W) bool, the mask used, at the photo's resolution.
        mask_source: "given", "alpha", "salient", "grabcut" or "whole" (no segmentation:
            ``automatic_mask`` False).
        crop: the square crop the method saw and its transform to photo pixels.
        timings: stage -> seconds for the whole job ("mask", the method's stages, later "export").
        mask_model: {"name", "path"} of the salient-object model found for this photo, or None (none
            found, or not needed: a mask file or an alpha channel).
        mask_note: why that model was not used (GrabCut was), or None.
    """

    reconstruction: Reconstruction
    photo: DecodedImage
    photo_mask: np.ndarray
    mask_source: str
    crop: CropResult
    timings: dict[str, float]
    mask_model: dict[str, str] | None = None
    mask_note: str | None = None

    @property
    def mesh(self) -> TexturedMesh:
        return self.reconstruction.mesh

    def report(self) -> dict[str, Any]:
        """The JSON report: the method's report, the camera, the crop box and the photo."""
        report = self.reconstruction.report.to_dict()
        report["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        report["timings"]["total"] = round(sum(self.timings.values()), 4)
        transform = self.crop.transform
        report["camera"] = {
            **self.reconstruction.camera.to_dict(),
            "frame": "crop NDC: x right, y up, -1..1 over the crop box below",
        }
        report["crop_box"] = {"x0": transform.x0, "y0": transform.y0, "side": transform.side}
        report["photo"] = {
            "width": self.photo.size[0],
            "height": self.photo.size[1],
            "format": self.photo.format,
            "mask_source": self.mask_source,
        }
        if self.mask_model is not None:
            report["photo"]["mask_model"] = dict(self.mask_model)
        if self.mask_note is not None:
            report["photo"]["mask_note"] = self.mask_note
        return report


def reconstruct_photo(
    method: Method,
    image: ImageSource,
    *,
    mask: ImageSource | None = None,
    options: MethodOptions,
    progress: ProgressCallback = no_progress,
    init_mesh: TexturedMesh | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mask_model: str | Path | None = None,
) -> PhotoReconstruction:
    """Decode, mask, crop and reconstruct one photo (module docstring); image errors raise ``ImageError``.

    ``mask_model``: the salient-object model file to use for a photo without mask or alpha (default:
    ``$MONO2MESH_MASK_MODEL``, else the cache folder); a missing or broken one falls back to GrabCut.
    """
    staged = StagedProgress(progress)
    started = time.perf_counter()
    staged(0.0, "mask")
    photo = load_image(image, max_bytes=max_bytes, max_pixels=max_pixels)
    given = load_mask(mask, photo.size) if mask is not None else None
    model_info: dict[str, str] | None = None
    note: str | None = None
    if given is None and not _has_alpha(photo) and not getattr(method, "automatic_mask", True):
        object_mask, source = np.ones(photo.rgb.shape[:2], dtype=bool), "whole"  # the framed photo itself
        crop = crop_to_mask(photo.rgb, object_mask, method.crop_size(options), padding=0.0)
    else:
        salient = None
        if given is None and not _has_alpha(photo):
            salient, model_info, note = _salient_model(mask_model)
        chosen = compute_mask(photo.rgb, photo.alpha, given, salient=salient)
        object_mask, source, note = chosen.mask, chosen.source, chosen.note or note
        crop = crop_to_mask(photo.rgb, object_mask, method.crop_size(options))
    timings = {"mask": time.perf_counter() - started}
    staged(1.0, "mask")
    result = method.reconstruct(crop.rgb, crop.mask > 0.5, options, staged, init_mesh=init_mesh)
    timings.update(result.report.timings)
    return PhotoReconstruction(result, photo, object_mask, source, crop, timings, model_info, note)


def _salient_model(
    explicit: str | Path | None,
) -> tuple[SalientModel | None, dict[str, str] | None, str | None]:
    """(the loaded model or None, its {"name", "path"} or None, why it is not used or None).

    Nothing asked for and nothing in the cache: (None, None, None), GrabCut as before.
    """
    lookup = find_mask_model(explicit)
    if not lookup.configured:
        return None, None, None
    info = {"name": lookup.name, "path": str(lookup.path if lookup.path else lookup.searched[0])}
    if lookup.path is None or lookup.reason is not None:
        return None, info, f"the mask model was not used: {lookup.reason}; GrabCut was used instead"
    try:
        return load_cached(lookup.path), info, None
    except MaskModelError as error:
        return None, info, f"the mask model could not be loaded ({error}); GrabCut was used instead"


def _has_alpha(photo: DecodedImage) -> bool:
    """Whether the photo has a real alpha channel (some pixel below 1), which ``compute_mask`` uses."""
    return photo.alpha is not None and float(photo.alpha.min()) < 1.0


def export(
    result: PhotoReconstruction,
    out_dir: str | Path,
    stem: str,
    progress: ProgressCallback = no_progress,
) -> dict[str, Path]:
    """Write every output file of ``result`` into ``out_dir`` (created if missing); returns kind -> path.

    Kinds: glb, obj, mtl, texture, preview, mask, report. Each file is written to a temporary name and
    renamed, so a reader never sees half a file.
    """
    staged = StagedProgress(progress)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged(0.0, "export")
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{stem}-") as scratch:
        scratch_dir = Path(scratch)
        written = {"glb": save_glb(result.mesh, scratch_dir / f"{stem}.glb")}
        staged(0.3, "export")
        obj, mtl, texture = save_obj(result.mesh, scratch_dir / f"{stem}.obj")
        written.update(obj=obj, mtl=mtl, texture=texture)
        staged(0.5, "export")
        with cpu_threads(1):  # a few small renders: one thread is fastest (see base.cpu_threads)
            preview = make_preview(result.crop.rgb, result.crop.mask > 0.5, result.reconstruction)
        written["preview"] = scratch_dir / f"{stem}_preview.png"
        Image.fromarray(preview).save(written["preview"])
        written["mask"] = scratch_dir / f"{stem}_mask.png"
        Image.fromarray(result.photo_mask.astype(np.uint8) * 255).save(written["mask"])
        staged(0.9, "export")
        result.timings["export"] = time.perf_counter() - started
        written["report"] = scratch_dir / f"{stem}.json"
        written["report"].write_text(json.dumps(result.report(), indent=2) + "\n")
        for kind, path in written.items():
            target = out_dir / path.name
            os.replace(path, target)
            paths[kind] = target
    staged(1.0, "export")
    return paths
