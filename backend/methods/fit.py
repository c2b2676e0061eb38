"""The embedded default method ``fit``: a symmetric template fitted to the mask by test-time optimisation.

No checkpoint (unless a category prior is asked for, below), no download; seconds on a laptop CPU.
Given the square crop and its object mask:

1. **Shape** (stage "shape"): the 642-vertex symmetric icosphere (``icosphere_template``) deformed by
   mirrored per-vertex offsets, with a weak-perspective camera, fitted to the mask
   (``backend.fitting.shape.fit_template``: SoftRas soft IoU, MeshInversion's Chamfer mask loss,
   Laplacian, flatten and deformation regularisers, optionally the thickness prior
   ``backend.fitting.thickness``; ``hypotheses`` (8) camera azimuths, from ``start_elevation`` (20)
   degrees above, run together at ``selection_resolution`` (32) pixels for the first
   ``selection_fraction`` of the steps; the one with the lowest full-resolution loss continues).
2. **Texture** (stage "texture"): the photo projected onto the visible, camera-facing surface, the
   hidden side filled from the mirrored visible side, the rest inpainted
   (``backend.fitting.texture.texture_from_photo``).

**Refinement** (``init_mesh`` given, e.g. an artist's edit): topology and UVs kept; the camera is fitted
with the mesh frozen, then offsets held near the given shape except where the photo's outline
contradicts it (``backend.fitting.shape.fit_refinement``; ``keep_shape_weight``, ``outline_keep_weight``,
``depth_weight``, ``keep_symmetry``); texels whose surface moved less than ``texture_keep_distance``
keep the given texture, the photo is projected onto visible texels that moved (``methods.fitted.
refine_given_mesh``).

**Category prior** (option ``prior``, ``init_mesh`` not given): instead of the icosphere, start from the
shape a learned method for the object's category predicts (``PRIOR_METHODS``: softras, adaptive-flow,
mesh-inversion, pointcloud-poisson), with the checkpoint ``prior_checkpoint`` (empty: the newest
installed one of that method, ``backend.checkpoints.default_checkpoint``):

1. **Prior** (stage "shape", first ``PRIOR_SHARE``; timed "prior"): that method runs on the same crop and
   mask, on the same device, with its own default options but ``crop_size`` (fit's) and
   ``PRIOR_OPTIONS``; its mesh and camera are kept, the rest of its result is dropped (but a Poisson
   mesh's texture, step 3). The instance is cached per (method, checkpoint file) in the ``FitMethod``
   (at most ``PRIOR_CACHE_SIZE``), so a server loads it once.
2. **Shape** (rest of "shape"): the predicted mesh refined against the mask by the engine
   (``fit_refinement`` from the method's camera, then offsets held near the prediction except on the
   outline), with fit's options (``iterations``, ``resolution``, ``keep_shape_weight``,
   ``outline_keep_weight``, ``depth_weight``, ``keep_symmetry``): under ``keep_symmetry="auto"`` the offsets
   are mirror-tied exactly when the predicted vertices are x -> -x symmetric (adaptive-flow's always are,
   softras's when trained with ``symmetric``); a pointcloud-poisson mesh (screened Poisson) has no mirror
   pairs and is refined untied ("on" ties its mutually nearest mirror vertices).
3. **Texture**: as for the template (``textured_result``, ``texture_from_photo``). The template layouts
   (``icosphere-642``, ``uvsphere-482``) map x -> -x to u -> 1 - u, so the hidden side is mirrored from the
   visible one; a Poisson mesh's xatlas atlas is not mirror-symmetric, so its hidden texels keep the
   prior's own texture (``unseen="given"``).

The result has the prediction's topology and UVs (the report's template is the prior's). ``prior="auto"``
takes the newest installed checkpoint of the ``PRIOR_METHODS`` whose metadata names its training dataset
(``meta.dataset``: a name or categories) and whose method can run here (its packages installed), else the
template. Errors are ``MethodError``s naming the fix: no checkpoint installed (``mono2mesh-train
<method>`` or ``prior_checkpoint``), a file that does not load, a checkpoint of another method, a
``prior_checkpoint`` with ``prior`` template or auto.

The world frame of the result is the template's: Y up, the object's symmetry plane x = 0 (with a prior,
the prior's canonical frame). The report's extra holds the chosen hypothesis, every hypothesis' loss, the
final loss, ``refined``, ``shape`` ("template", "prior" or "refine") and, except for a refinement,
``prior``: ``{"method": "template"}`` or ``{"method", "checkpoint" (path), "shape": "predicted+refined",
"template", "mirror_tied", "predicted_iou"}``, with ``"picked": "auto"`` and ``"reason"`` under
``prior="auto"``; timings add "prior". Bit-reproducible on one machine with one thread count: see
``backend.fitting.optimise``.

What a silhouette can and cannot give (issue 20, ``mono2mesh-train bench-novel-view``, docs/BENCHMARKS.md):
the input view is matched closely (IoU ~0.84 on synthetic birds, cars and chairs, 0.91-0.97 on the bird
photos), but depth is a guess: the chosen azimuth decides how deep the symmetric template becomes, thin
parts (legs, tails) merge into the body and holes (a chair's back) are filled. Turned by 90 degrees the
template matches the true object at IoU ~0.55; a category prior does better where its checkpoint is good.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from backend.checkpoints import CheckpointError, checkpoint_root, default_checkpoint, installed_checkpoints
from backend.checkpoints import read_meta as read_checkpoint_meta
from backend.fitting.optimise import FitSettings
from backend.fitting.refine_terms import mirror_pairs
from backend.fitting.shape import fit_refinement, fit_template
from backend.fitting.texture import TextureSettings
from backend.geometry.mesh import TexturedMesh
from backend.geometry.templates import SymmetricTemplate, icosphere_template
from backend.methods.base import (
    BaseMethod,
    Method,
    MethodError,
    MethodOptions,
    ProgressCallback,
    Reconstruction,
    Stopwatch,
)
from backend.methods.fit_options import FittingOptions, Hypotheses, TemplateFitOptions
from backend.methods.fitted import refine_with_options, textured_result
from backend.methods.registry import create_method, method_spec, parse_options
from backend.progress import within

TEMPLATE_ID = "icosphere-642"

PRIOR_METHODS = ("softras", "adaptive-flow", "mesh-inversion", "pointcloud-poisson")
"""The learned methods whose predicted object mesh (and camera) can start ``fit`` (module docstring)."""
MIRRORED_UV_TEMPLATES = frozenset({TEMPLATE_ID, "uvsphere-482"})
"""Topology ids whose UV layout maps x -> -x to u -> 1 - u (``geometry.templates``): the hidden side of
their texture is mirrored from the visible one; any other layout keeps the prior's texture there."""
PRIOR_OPTIONS: dict[str, dict[str, Any]] = {"softras": {"texture_size": 16}}
"""Options a prior method runs with beside its defaults and fit's ``crop_size``: softras's texture is
dropped (a template layout is re-textured from the photo), so it makes the smallest one."""
PRIOR_SHARE = 0.3
"""Share of the "shape" stage's progress given to the prior method's run."""
PRIOR_CACHE_SIZE = 4
"""Prior method instances (method, checkpoint) a ``FitMethod`` keeps loaded, the least recent dropped."""

Prior = Literal["template", "auto", "softras", "adaptive-flow", "mesh-inversion", "pointcloud-poisson"]


class FitOptions(FittingOptions, TemplateFitOptions):  # the template's own after laplacian_weight
    """Options of the ``fit`` method (defaults: about five seconds per photo on a 2-core CPU)."""

    # 8, not the engine methods' 4, declared here: ``FittingOptions`` (first base) carries the shared 4
    hypotheses: Hypotheses = 8

    prior: Prior = Field(
        default="template",
        description="start shape: the symmetric icosphere (template), or the mesh a learned method "
        "predicts from this photo with its trained checkpoint (softras, adaptive-flow, mesh-inversion, "
        "pointcloud-poisson: the category prior), refined to the mask; auto: the newest installed "
        "checkpoint of those that names its dataset, else the template",
    )
    prior_checkpoint: str = Field(
        default="",
        max_length=4096,
        description="with a learned prior: its checkpoint (.safetensors or .json path); empty: the newest "
        "installed checkpoint of that method",
    )

    def fit_settings(self) -> FitSettings:
        """The engine's settings of the shape (and camera) fit, the template fit's own included."""
        return self.template_settings(super().fit_settings())


@dataclasses.dataclass(frozen=True)
class PriorChoice:
    """The prior a fit starts from: ``method`` ("template" or one of ``PRIOR_METHODS``), its checkpoint
    (None for the template) and, under ``prior="auto"``, why it was picked."""

    method: str
    checkpoint: Path | None = None
    reason: str | None = None

    def report(self) -> dict[str, Any]:
        """The report's ``extra["prior"]`` entries that name the choice."""
        entry: dict[str, Any] = {"method": self.method}
        if self.checkpoint is not None:
            entry["checkpoint"] = str(self.checkpoint)
        if self.reason is not None:
            entry["picked"] = "auto"
            entry["reason"] = self.reason
        return entry


def _runnable(method: str) -> bool:
    """Whether ``method``'s optional packages are installed (its checkpoint aside)."""
    return not any(package.missing() for package in method_spec(method).requires)


def auto_prior() -> PriorChoice:
    """``prior="auto"``: the newest installed checkpoint of the ``PRIOR_METHODS`` whose metadata names its
    training dataset (a name or categories) and whose method can run here, else the template."""
    for info in installed_checkpoints():
        dataset = info.meta.dataset
        named = dataset.get("name") or dataset.get("categories")
        if info.meta.method in PRIOR_METHODS and named and _runnable(info.meta.method):
            categories = dataset.get("categories")
            trained = f"{dataset.get('name', 'a dataset')}" + (
                f", categories {categories}" if categories else ""
            )
            return PriorChoice(
                info.meta.method,
                info.path,
                f"the newest installed checkpoint of a learned object method names its dataset ({trained})",
            )
    return PriorChoice(
        "template",
        reason=f"no installed checkpoint of {', '.join(PRIOR_METHODS)} in {checkpoint_root()} names its "
        "dataset",
    )


def choose_prior(options: FitOptions) -> PriorChoice:
    """The prior ``options`` ask for, its checkpoint resolved; ``MethodError`` naming the fix when none is
    installed, the given file does not load, or it is another method's checkpoint."""
    if options.prior == "auto":
        if options.prior_checkpoint:
            raise MethodError("prior_checkpoint needs a named prior (e.g. prior=softras), not prior=auto")
        return auto_prior()
    if options.prior == "template":
        if options.prior_checkpoint:
            raise MethodError("prior_checkpoint is given but prior is template; set prior to its method")
        return PriorChoice("template")
    method = options.prior
    if not options.prior_checkpoint:
        path = default_checkpoint(method)
        if path is None:
            raise MethodError(
                f"prior {method}: no {method} checkpoint installed in {checkpoint_root()}; train one with "
                f"`mono2mesh-train {method}` (or install one there), give prior_checkpoint, or use "
                "prior=template"
            )
        return PriorChoice(method, path.resolve())
    path = Path(options.prior_checkpoint).expanduser()
    try:
        meta = read_checkpoint_meta(path)
    except CheckpointError as error:
        raise MethodError(
            f"prior_checkpoint {path} does not load: {error}; give a {method} checkpoint "
            f"(<name>.safetensors + <name>.json, e.g. from `mono2mesh-train {method}`)"
        ) from None
    if meta.method != method:
        raise MethodError(
            f"prior_checkpoint {path} is a checkpoint of method {meta.method!r}, not of the prior "
            f"{method!r}; set prior={meta.method} or give a {method} checkpoint"
        )
    return PriorChoice(method, path.resolve())


class FitMethod(BaseMethod[FitOptions]):
    """The ``fit`` method (module docstring); one instance per device. It keeps the prior methods it has
    loaded (``PRIOR_CACHE_SIZE``); ``reconstruct`` keeps no other state between calls."""

    name = "fit"
    Options = FitOptions

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.template: SymmetricTemplate = icosphere_template().to(self.device)
        self._priors: OrderedDict[tuple[str, str], Method] = OrderedDict()
        self._priors_lock = threading.Lock()

    def prior_method(self, choice: PriorChoice) -> Method:
        """The loaded instance of the prior ``choice`` on this device (cached per method and checkpoint)."""
        assert choice.checkpoint is not None
        key = (choice.method, str(choice.checkpoint))
        with self._priors_lock:
            method = self._priors.get(key)
            if method is None:
                method = create_method(choice.method, self.device, str(choice.checkpoint))
                self._priors[key] = method
                while len(self._priors) > PRIOR_CACHE_SIZE:
                    self._priors.popitem(last=False)
            self._priors.move_to_end(key)
            return method

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction:
        opts = self.options_of(options)
        self.check_inputs(image, mask)
        with self.threads(opts.cpu_threads):
            if init_mesh is not None:  # an artist's mesh: the prior has nothing to add
                return refine_with_options(self, opts, init_mesh, image, mask, progress)
            choice = choose_prior(opts)
            if choice.method != "template":
                return self.fit_prior(choice, opts, image, mask, progress)
            watch = Stopwatch()
            with watch.stage("shape"):
                fitted = fit_template(self.template, mask, opts.fit_settings(), progress)
            extra = {**fitted.summary(), "refined": False, "shape": "template", "prior": choice.report()}
            return textured_result(
                self, opts, fitted, self.template.mesh, image, mask, progress,
                watch=watch, texture=opts.texture_settings(), resolution=opts.resolution,
                template=TEMPLATE_ID, extra=extra,
            )  # fmt: skip

    def fit_prior(
        self,
        choice: PriorChoice,
        opts: FitOptions,
        image: np.ndarray,
        mask: np.ndarray,
        progress: ProgressCallback,
    ) -> Reconstruction:
        """The category prior's path (module docstring): predict, refine to the mask, texture."""
        watch = Stopwatch()
        method = self.prior_method(choice)
        prior_options = parse_options(
            choice.method, {**PRIOR_OPTIONS.get(choice.method, {}), "crop_size": opts.crop_size}
        )

        def prior_progress(fraction: float, stage: str) -> None:  # its shape, then texture: fit's "shape"
            share = 0.5 * fraction if stage == "shape" else 0.5 + 0.5 * fraction
            progress(PRIOR_SHARE * share, "shape")

        progress(0.0, "shape")
        with watch.stage("prior"):
            predicted = method.reconstruct(image, mask, prior_options, prior_progress)
        layout = predicted.mesh  # the prediction: its topology, UVs and (for unseen texels) texture
        settings, refine = opts.fit_settings(), opts.refine_settings()
        tied = refine.keep_symmetry == "on" or (
            refine.keep_symmetry == "auto" and mirror_pairs(layout.vertices) is not None
        )
        with watch.stage("shape"):
            fitted = fit_refinement(
                layout.to(self.device), mask, settings, refine,
                within(progress, PRIOR_SHARE, 1 - PRIOR_SHARE), camera=predicted.camera.to(self.device),
            )  # fmt: skip
        template = predicted.report.template or TEMPLATE_ID
        texture = opts.texture_settings()
        if template not in MIRRORED_UV_TEMPLATES:
            texture = TextureSettings(texture.size, unseen="given")
        extra = {
            **fitted.summary(),
            "refined": False,
            "shape": "prior",
            "prior": {
                **choice.report(),
                "shape": "predicted+refined",
                "template": template,
                "mirror_tied": tied,
                "predicted_iou": predicted.report.silhouette_iou,
            },
        }
        return textured_result(
            self, opts, fitted, layout, image, mask, progress,
            watch=watch, texture=texture, resolution=opts.resolution, template=template, extra=extra,
        )  # fmt: skip


SPEC = FitMethod.spec(
    "Fit a symmetric sphere to the object's mask by optimisation and texture it from the photo "
    "(no checkpoint; a few seconds on a CPU)"
)
