"""From a fit of the engine (``backend.fitting``) to a method's ``Reconstruction``, and the refinement of
a given mesh that every method accepting ``init_mesh`` runs the same way.

- ``textured_result(method, options, fitted, layout, image, mask, progress, ...)``: stage "texture"
  (``texture_from_photo`` onto ``layout``'s UVs with the fitted vertices), the silhouette IoU at the
  fitted camera, and the method's ``Reconstruction`` with its report.
- ``refine_given_mesh(method, options, mesh, image, mask, progress, fit=, refine=, texture=)``: a result
  to refine, e.g. an artist's edit (``fit_refinement``: camera, then offsets held near ``mesh``), textured
  with ``mesh``'s own texture where the photo does not see it or the surface stayed; the report's template
  is ``topology_id(mesh)`` and its extra the fit's summary with ``refined: True, shape: "refine"``;
  ``refine_with_options(method, options, mesh, image, mask, progress)`` runs it with the settings of a
  ``fit_options.FittingOptions`` (``fit``, ``softras``).

All run in the caller's thread settings (``BaseMethod.threads``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from backend.fitting.optimise import FitSettings, ShapeFit
from backend.fitting.report import reprojection_iou, topology_id
from backend.fitting.shape import RefineSettings, fit_refinement
from backend.fitting.texture import TextureSettings, fitted_mesh, texture_from_photo
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import BaseMethod, MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.fit_options import FittingOptions

OptionsT = TypeVar("OptionsT", bound=MethodOptions)
FittingT = TypeVar("FittingT", bound=FittingOptions)


def textured_result(
    method: BaseMethod[OptionsT],
    options: OptionsT,
    fitted: ShapeFit,
    layout: TexturedMesh,
    image: np.ndarray,
    mask: np.ndarray,
    progress: ProgressCallback,
    *,
    watch: Stopwatch,
    texture: TextureSettings,
    resolution: int,
    template: str,
    extra: Mapping[str, Any],
) -> Reconstruction:
    """Texture the fitted mesh (``layout``'s faces and UVs at ``fitted.vertices``) from the crop ``image``
    (S, S, 3) and ``mask`` (S, S), timed as "texture" in ``watch``; its silhouette IoU at ``resolution``;
    the ``Reconstruction`` with ``watch.timings``, ``template`` and ``extra`` in the report."""
    with watch.stage("texture"):
        progress(0.0, "texture")
        colours = texture_from_photo(layout, fitted.vertices, fitted.camera, image, mask, texture)
        mesh = fitted_mesh(layout, fitted.vertices, colours)
        progress(1.0, "texture")
    faces = layout.faces.to(method.device)
    iou = reprojection_iou(fitted.vertices, faces, fitted.camera, mask, resolution)
    return method.result(
        options, mesh, fitted.camera, mask,
        timings=watch.timings, silhouette_iou=iou, template=template, extra=extra,
    )  # fmt: skip


def refine_given_mesh(
    method: BaseMethod[OptionsT],
    options: OptionsT,
    mesh: TexturedMesh,
    image: np.ndarray,
    mask: np.ndarray,
    progress: ProgressCallback,
    *,
    fit: FitSettings,
    refine: RefineSettings,
    texture: TextureSettings,
) -> Reconstruction:
    """``mesh`` refined against the crop (module docstring); topology, UVs and vertex order kept."""
    watch = Stopwatch()
    with watch.stage("shape"):
        fitted = fit_refinement(mesh.to(method.device), mask, fit, refine, progress)
    return textured_result(
        method, options, fitted, mesh, image, mask, progress,
        watch=watch, texture=texture, resolution=fit.resolution, template=topology_id(mesh),
        extra={**fitted.summary(), "refined": True, "shape": "refine"},
    )  # fmt: skip


def refine_with_options(
    method: BaseMethod[FittingT],
    options: FittingT,
    mesh: TexturedMesh,
    image: np.ndarray,
    mask: np.ndarray,
    progress: ProgressCallback,
) -> Reconstruction:
    """``refine_given_mesh`` with the fit, refinement and texture settings of ``options``."""
    return refine_given_mesh(
        method, options, mesh, image, mask, progress,
        fit=options.fit_settings(), refine=options.refine_settings(),
        texture=options.texture_settings(refinement=True),
    )  # fmt: skip
