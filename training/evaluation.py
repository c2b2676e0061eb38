"""What the trainers' ``evaluate`` methods and the benchmarks share: ground truth of an item, one mean,
metric tables, and comparing a reconstruction with the ground truth (below).

- ``ground_truth_mesh(dataset, index)``: the item's ground-truth mesh when the dataset has them (the
  synthetic sets' ``ground_truth_mesh``), else None; ``ground_truth_surface`` the same as
  ``(vertices (V, 3) float32, faces (F, 3))`` for surface sampling.
- ``finite_mean(values)``: THE mean of the evaluations. Non-finite values (NaN, +-inf: a diverged
  prediction, an undefined score) are left out and counted: the mean is over the finite values (NaN when
  there is none), and ``dropped`` says how many were left out, so one bad sample neither turns a whole
  metric into NaN nor disappears unnoticed.
- ``mean_metrics(values)``: {name: mean} of lists of per-sample values, plus ``non_finite/<name>``: the
  count of values left out, present only when some were.
- ``category_metrics(name, per_category)``: SoftRas's per-category table: ``<name>/<category>`` the mean
  over that category's samples (categories sorted), ``<name>`` the mean over categories (each category
  counts once, however many samples it has), ``non_finite/<name>`` as above (summed over categories).

For finite values every mean is ``sum(values) / len(values)`` in the given order, bit for bit what the
trainers computed before these helpers.

What the evaluations and benchmarks that compare a reconstruction with the ground truth share:

- ``camera_from_vector(vector)``: cameras from the CUB-layout sets' (B, 7) ``[scale, tx, ty, qw, qx, qy,
  qz]`` vectors (weak perspective).
- ``crop_input(image, mask, size)``: a dataset's (3, S, S) image and (S, S) mask as the (size, size, 3)
  float crop and bool mask a method's ``reconstruct`` takes.
- ``to_ground_truth_frame(vertices, camera, camera_true, centre_true, centre)``: a mesh that its own
  weak-perspective ``camera`` projects onto the crop, brought into the frame of the object that the true
  camera (weak perspective, or look-at treated as weak perspective at its distance: ``ndc_scale``) sees
  there; the depth along the view axis, which one view cannot tell, is set so the given centres agree
  (``surface_centroid``: a mesh's area-weighted centroid).
- ``novel_view_scores(render_ours, camera_ours, truth, camera_true, settings)``: hard silhouette IoU and
  SSIM (unlit, on white: ``WHITE``) of a prediction and the ground-truth mesh, each seen by its camera
  turned about the world's up axis by each of ``NOVEL_TURNS`` (90, 180, 270 degrees).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.geometry.metrics import mask_iou, ssim
from backend.geometry.ops import face_areas
from backend.render.renderer import Lighting, RenderOutput, render_mesh
from backend.render.settings import RasterSettings

NON_FINITE = "non_finite"
"""Prefix of the metrics counting the values a mean left out: ``non_finite/<name>``."""

NOVEL_TURNS = (90.0, 180.0, 270.0)
"""Azimuths (degrees) of the novel views of the evaluations."""

WHITE = Lighting(background=(1.0, 1.0, 1.0))
"""Unlit colours on a white background: how renders are compared with photos composited on white."""


def ground_truth_mesh(dataset: Dataset[Any], index: int) -> TexturedMesh | None:
    """The ground-truth mesh of item ``index`` of ``dataset`` (unwrapped from any Subset by the caller), or
    None when the dataset has none (no ``ground_truth_mesh`` method, or it returns None for the item)."""
    getter = getattr(dataset, "ground_truth_mesh", None)
    mesh: TexturedMesh | None = getter(index) if getter is not None else None
    return mesh


def ground_truth_surface(dataset: Dataset[Any], index: int) -> tuple[Tensor, Tensor] | None:
    """``(vertices (V, 3) float32, faces (F, 3))`` of item ``index``'s ground-truth mesh, or None."""
    mesh = ground_truth_mesh(dataset, index)
    return None if mesh is None else (mesh.vertices.float(), mesh.faces)


@dataclass(frozen=True)
class FiniteMean:
    """The mean of the finite values (NaN when none), how many were averaged and how many left out."""

    value: float
    count: int
    dropped: int


def finite_mean(values: Iterable[float]) -> FiniteMean:
    """Mean of the finite ``values``; non-finite ones are left out and counted (module docstring).

    >>> finite_mean([1.0, float("nan"), 2.0])
    FiniteMean(value=1.5, count=2, dropped=1)
    >>> math.isnan(finite_mean([]).value)
    True
    """
    numbers = [float(v) for v in values]
    finite = [v for v in numbers if math.isfinite(v)]
    value = float(sum(finite) / len(finite)) if finite else float("nan")
    return FiniteMean(value, len(finite), len(numbers) - len(finite))


def mean_metrics(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """{name: finite mean} for every name (NaN for an empty list), then ``non_finite/<name>`` counts.

    >>> mean_metrics({"ssim": [0.5, 0.7], "iou": [1.0, float("inf")]})
    {'ssim': 0.6, 'iou': 1.0, 'non_finite/iou': 1.0}
    """
    means = {name: finite_mean(numbers) for name, numbers in values.items()}
    metrics = {name: mean.value for name, mean in means.items()}
    metrics.update(
        {f"{NON_FINITE}/{name}": float(mean.dropped) for name, mean in means.items() if mean.dropped}
    )
    return metrics


def category_metrics(name: str, per_category: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``<name>/<category>`` means (sorted), ``<name>`` their mean, ``non_finite/<name>`` when any dropped.

    With no category at all, ``<name>`` is NaN.

    >>> category_metrics("iou3d", {"plane": [50.0, 70.0], "car": [80.0]})
    {'iou3d/car': 80.0, 'iou3d/plane': 60.0, 'iou3d': 70.0}
    """
    means = {category: finite_mean(per_category[category]) for category in sorted(per_category)}
    metrics = {f"{name}/{category}": mean.value for category, mean in means.items()}
    metrics[name] = finite_mean([metrics[f"{name}/{category}"] for category in per_category]).value
    dropped = sum(mean.dropped for mean in means.values())
    if dropped:
        metrics[f"{NON_FINITE}/{name}"] = float(dropped)
    return metrics


def camera_from_vector(vector: Tensor) -> Camera:
    """Weak-perspective cameras from (B, 7) ``[scale, tx, ty, qw, qx, qy, qz]`` vectors (the CUB-layout
    sets' and the pseudo ground truth's)."""
    if vector.dim() != 2 or vector.shape[1] != 7:
        raise ValueError(f"camera must have shape (B, 7), got {tuple(vector.shape)}")
    return Camera.weak_perspective(vector[:, 0], vector[:, 1:3], vector[:, 3:7])


def crop_input(image: Tensor, mask: Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A (3, S, S) image and (S, S) mask as the (size, size, 3) float32 crop in [0, 1] and (size, size) bool
    mask a method's ``reconstruct`` takes (bilinear resize; the mask thresholded at 0.5)."""
    rgb = cv2.resize(
        image.permute(1, 2, 0).numpy().astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR
    )
    alpha = cv2.resize(mask.numpy().astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(rgb, 0, 1).astype(np.float32), alpha > 0.5


def ndc_scale(camera: Camera) -> Tensor:
    """(B,) NDC units per world unit at the object: a weak-perspective camera's scale, a look-at camera's
    ``1 / (distance * tan(viewing_angle))`` (perspective at the object's distance, taken as weak)."""
    if camera.kind == "weak_perspective":
        return camera.weak.scale
    orbit = camera.orbit
    return 1 / (orbit.distance * torch.tan(torch.deg2rad(orbit.viewing_angle)))


def surface_centroid(vertices: Tensor, faces: Tensor) -> Tensor:
    """(3,) the area-weighted centroid of a mesh's surface (V, 3), (F, 3): where uniform surface samples
    average to, whatever the vertex density; the vertex mean for a mesh without area."""
    areas = face_areas(vertices, faces)  # (F,)
    if float(areas.sum()) <= 0:
        return vertices.mean(0)
    centres = vertices[faces].mean(1)  # (F, 3)
    return (areas[:, None] * centres).sum(0) / areas.sum()


def to_ground_truth_frame(
    vertices: Tensor,
    camera: Camera,
    camera_true: Camera,
    centre_true: Tensor,
    centre: Tensor | None = None,
) -> Tensor:
    """(V, 3) vertices of a mesh that ``camera`` (weak perspective, batch of one) projects onto the crop,
    in the frame of the object that ``camera_true`` (weak perspective or look-at, batch of one) sees there.

    Both cameras map the mesh to the same crop coordinates: the prediction's NDC position divided by the
    true camera's ``ndc_scale`` is its position in the true camera's view frame (x, y); depth is scaled
    alike and shifted so the mesh's ``centre`` (3,) (default: the vertex mean) lands at the depth of the
    truth's ``centre_true`` (3,): one view cannot tell the depth. Give both centres alike (e.g. both
    ``surface_centroid``) for an exact alignment of a mesh that is the truth up to that depth.
    """
    rotation, _ = camera.view_transform()  # (1, 3, 3)
    rotation_true, translation_true = camera_true.view_transform()
    scale = camera.weak.scale[0]
    scale_true = ndc_scale(camera_true)[0]
    view = scale / scale_true * (vertices @ rotation[0].T)  # (V, 3) in the true camera's view units
    view[:, :2] += camera.weak.translation[0] / scale_true
    middle = vertices.mean(0) if centre is None else centre
    depth = scale / scale_true * (middle @ rotation[0].T)[2]  # the centre's depth in those units
    depth_true = (centre_true @ rotation_true[0].T + translation_true[0])[2]
    view[:, 2] += depth_true - depth
    return (view - translation_true[0]) @ rotation_true[0]


def novel_view_scores(
    render_ours: Callable[[Camera], RenderOutput],
    camera_ours: Camera,
    truth: TexturedMesh,
    camera_true: Camera,
    settings: RasterSettings,
    turns: Sequence[float] = NOVEL_TURNS,
) -> dict[str, list[float]]:
    """``novel_iou`` and ``novel_ssim`` per turn: the prediction (``render_ours(camera)``: unlit on
    white, ``WHITE``) seen by ``camera_ours`` and the ground-truth mesh seen by ``camera_true`` (batches of
    one), each turned by ``turn`` degrees about the world's up axis; hard silhouette IoU and SSIM of the
    colours, rendered with ``settings`` (hard)."""
    values: dict[str, list[float]] = {"novel_iou": [], "novel_ssim": []}
    for turn in turns:
        azimuth = truth.vertices.new_tensor([turn])
        theirs = render_mesh(truth, camera_true.turned(azimuth), settings, WHITE)
        ours = render_ours(camera_ours.turned(azimuth))
        iou = mask_iou(ours.alpha[0, ..., 0], theirs.alpha[0, ..., 0], soft=False)
        values["novel_iou"].append(float(iou))
        values["novel_ssim"].append(float(ssim(ours.rgb, theirs.rgb)[0]))
    return values
