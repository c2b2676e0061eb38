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

The shared novel-view evaluator (``mono2mesh-train bench-novel-view``, and the alignment of
``bench-mesh-inversion``):

- ``ray_aligned(vertices, camera, camera_true, centre_true, centre)``: ``to_ground_truth_frame``, except
  that a look-at (perspective) true camera is honoured: every vertex keeps its crop position and is put
  on the true camera's ray through it, at its depth (its depth relative to ``centre`` scaled like the
  crop, shifted so ``centre`` lands at ``centre_true``'s depth). A prediction that its weak-perspective
  camera projects exactly onto the photo's silhouette then projects onto it through the true camera too
  (for a weak-perspective true camera this is ``to_ground_truth_frame`` itself).
- ``GroundTruth.of(mesh, camera, mask, turns, samples, generator, axis)``: one item's truth, scored against
  once per prediction: the mesh, its true camera (batch of one), the (S, S) bool input mask, its
  area-weighted centroid, ``samples`` surface points and its silhouettes at each turn (hard renders at
  ``SILHOUETTE_SUPERSAMPLE`` times the side averaged down, a pixel in when more than half covered: how
  the synthetic sets' masks are made).
- ``turned_about(vertices, camera, centre, turns, axis)``: (T, V, 3) the vertices turned by each turn
  (degrees) about the camera's vertical (view-space y) axis through ``centre`` (``axis`` "view", the
  default: the photo's own up, as if the camera circled the object in its tilted orbit plane), or about
  the world's Y axis through it ("world": the object's up, the camera circling at its elevation); a
  positive turn is right-handed: the side on the camera's right moves away from it.
- ``flat_cutout(vertices, camera, centre)``: the vertices flattened to zero thickness along the camera's
  view axis, each moved along its camera ray to ``centre``'s depth: the same input-view silhouette, no
  depth at all (the baseline a reconstruction must beat at novel views).
- ``align_reconstruction(result, camera_true, centre_true)``: a method's ``Reconstruction`` mesh brought
  into the truth's frame (``ray_aligned``; its depth set so that its area-weighted surface centroid,
  once aligned, is at the depth of the truth's); ``surface_chamfer``: Chamfer x 100 of
  a mesh's surface samples against the truth's.
- ``score_aligned(vertices, faces, truth, samples, generator)``: ``input_iou`` (hard silhouette of the
  aligned mesh through the true camera against the input mask), ``novel_iou_<turn>`` (hard silhouette
  IoU against the truth's, both turned as ``turned_about`` about the truth's centroid),
  ``novel_iou_mean`` (their mean) and ``chamfer`` (Chamfer x 100 between ``samples`` surface points of
  the aligned mesh and the truth's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.geometry.metrics import chamfer_distance, mask_iou, ssim
from backend.geometry.ops import face_areas
from backend.geometry.sampling import sample_surface
from backend.render.renderer import Lighting, RenderOutput, render, render_mesh
from backend.render.settings import RasterSettings

if TYPE_CHECKING:
    from backend.methods.base import Reconstruction

NON_FINITE = "non_finite"
"""Prefix of the metrics counting the values a mean left out: ``non_finite/<name>``."""

NOVEL_TURNS = (90.0, 180.0, 270.0)
"""Azimuths (degrees) of the novel views of the evaluations."""

VIEW_TURNS = (45.0, 90.0, 135.0, 180.0)
"""Turns (degrees) about the camera's vertical axis of the shared novel-view evaluator (``score_aligned``)."""

SILHOUETTE_SUPERSAMPLE = 2
"""The evaluator's silhouettes are rendered this many times larger and averaged (as the synthetic sets')."""

CENTROID_STEPS = 3
"""Steps of ``align_reconstruction`` putting a mesh's centroid at the truth's depth on a look-at camera."""

TurnAxis = Literal["view", "world"]
TURN_AXES: tuple[TurnAxis, ...] = ("view", "world")
"""The novel views turn the object about the true camera's vertical axis ("view", the default) or the
world's ("world", the object's own up), either through the truth's centroid (``turned_about``)."""

MIN_DEPTH_SHARE = 0.05
"""``ray_aligned`` keeps every vertex at least this share of the centre's depth in front of the camera."""

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


def ray_aligned(
    vertices: Tensor, camera: Camera, camera_true: Camera, centre_true: Tensor, centre: Tensor
) -> Tensor:
    """(V, 3) vertices of a mesh that ``camera`` (weak perspective, batch of one) projects onto the crop,
    in the object frame of ``camera_true`` (batch of one), each on the true camera's ray through its crop
    position (module docstring); ``centre`` (3,) lands at the depth of ``centre_true`` (3,).

    A weak-perspective ``camera_true`` gives ``to_ground_truth_frame``. For a look-at one, with d_c the
    depth of ``centre_true`` and ``t = tan(viewing_angle)``: a vertex whose weak-perspective depth lies
    ``r`` behind ``centre``'s gets depth ``d = d_c + r * scale * d_c * t`` (the crop's units at d_c; at
    least ``MIN_DEPTH_SHARE * d_c``) and view position ``(x_ndc * d * t, y_ndc * d * t, -d)``.
    """
    if camera_true.kind != "look_at":
        return to_ground_truth_frame(vertices, camera, camera_true, centre_true, centre)
    rotation_true, translation_true = camera_true.view_transform()  # (1, 3, 3), (1, 3)
    tan = torch.tan(torch.deg2rad(camera_true.orbit.viewing_angle))[0]
    projected = camera.project(torch.cat([vertices, centre[None]]))[0]  # (V + 1, 3): x_ndc, y_ndc, depth
    behind = projected[:-1, 2] - projected[-1, 2]  # (V,) weak-perspective depth behind the centre
    depth_centre = -(centre_true @ rotation_true[0].T + translation_true[0])[2]
    depth = depth_centre * (1 + behind * camera.weak.scale[0] * tan)  # (V,)
    depth = depth.clamp(min=MIN_DEPTH_SHARE * depth_centre)
    view = torch.stack(
        [projected[:-1, 0] * depth * tan, projected[:-1, 1] * depth * tan, -depth], dim=1
    )  # (V, 3)
    return (view - translation_true[0]) @ rotation_true[0]


def _turn_rotations(camera: Camera, turns: Sequence[float], axis: TurnAxis, like: Tensor) -> Tensor:
    """(T, 3, 3) world rotations by each of ``turns`` degrees about ``camera``'s view up axis ("view") or
    the world's Y axis ("world"), right-handed; ``like``'s dtype and device."""
    if axis not in TURN_AXES:
        raise ValueError(f"axis must be one of {TURN_AXES}, got {axis!r}")
    angles = torch.deg2rad(torch.tensor(list(turns), dtype=like.dtype, device=like.device))  # (T,)
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(angles), torch.ones_like(angles)
    rows = [cos, zero, sin, zero, one, zero, -sin, zero, cos]
    spin = torch.stack(rows, dim=1).reshape(-1, 3, 3)  # (T, 3, 3) about y, right-handed
    if axis == "world":
        return spin
    view = camera.view_transform()[0][0].to(like.dtype)  # (3, 3) world -> view
    return view.T @ spin @ view


def turned_about(
    vertices: Tensor, camera: Camera, centre: Tensor, turns: Sequence[float], axis: TurnAxis = "view"
) -> Tensor:
    """(T, V, 3): the (V, 3) ``vertices`` turned by each of ``turns`` (degrees) about the axis through
    ``centre`` (3,) along the view-space up axis of ``camera`` (batch of one; ``axis`` "view") or along the
    world's Y axis ("world"). A positive turn is right-handed about that axis: what lies on the camera's
    right moves away from it. For a camera at elevation 0 both axes are one, and with the centre on the
    world's Y axis ``camera`` sees the turned vertices as ``camera.turned(turn)`` sees the untouched ones."""
    rotations = _turn_rotations(camera, turns, axis, vertices)  # (T, 3, 3)
    return torch.einsum("tij,vj->tvi", rotations, vertices - centre) + centre


def flat_cutout(vertices: Tensor, camera: Camera, centre: Tensor) -> Tensor:
    """(V, 3) the (V, 3) ``vertices`` flattened onto the plane through ``centre`` (3,) facing ``camera``
    (batch of one): each moved along its camera ray (along the view axis for a weak-perspective camera) to
    the centre's depth, so the camera sees the same silhouette."""
    rotation, translation = camera.view_transform()  # (1, 3, 3), (1, 3)
    view = vertices @ rotation[0].T + translation[0]  # (V, 3); the camera looks along -z
    z_centre = (centre @ rotation[0].T + translation[0])[2]  # the centre's view z (< 0 in front)
    if camera.kind == "look_at":
        flat = view * (z_centre / view[:, 2:3])  # (V, 3), on each vertex's ray
    else:
        flat = torch.cat([view[:, :2], z_centre.expand(view.shape[0], 1)], dim=1)
    return (flat - translation[0]) @ rotation[0]


@dataclass(frozen=True)
class GroundTruth:
    """One item's truth for ``score_aligned`` (module docstring; ``GroundTruth.of`` makes it).

    Attributes:
        mesh: the ground-truth mesh (float32, CPU).
        camera: the true camera (batch of one, look-at or weak perspective).
        mask: (S, S) bool, the input mask (S: the renders' side).
        centre: (3,) the truth's area-weighted surface centroid: the turns' axis goes through it.
        points: (N, 3) samples of the truth's surface.
        turns: the turns (degrees) of the novel views.
        views: (T, S, S) bool, the truth's silhouettes at each turn.
        axis: the turns' axis ("view" or "world": ``turned_about``).
    """

    mesh: TexturedMesh
    camera: Camera
    mask: Tensor
    centre: Tensor
    points: Tensor
    turns: tuple[float, ...]
    views: Tensor
    axis: TurnAxis = "view"

    @staticmethod
    def of(
        mesh: TexturedMesh,
        camera: Camera,
        mask: np.ndarray | Tensor,
        turns: Sequence[float] = VIEW_TURNS,
        samples: int = 4096,
        generator: torch.Generator | None = None,
        axis: TurnAxis = "view",
    ) -> GroundTruth:
        """The truth of an item: ``mesh`` seen by ``camera`` (batch of one) as the (S, S) ``mask``."""
        array = mask if isinstance(mask, Tensor) else np.asarray(mask)
        mask_tensor = torch.as_tensor(array, device="cpu").bool()  # the evaluator runs on the CPU
        if mask_tensor.dim() != 2 or mask_tensor.shape[0] != mask_tensor.shape[1]:
            raise ValueError(f"mask must be (S, S), got {tuple(mask_tensor.shape)}")
        if camera.batch_size != 1:
            raise ValueError(f"the true camera must be a batch of one, got {camera.batch_size}")
        mesh = mesh.to("cpu")
        mesh = mesh.with_vertices(mesh.vertices.float())
        camera = camera.to("cpu", torch.float32)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        centre = surface_centroid(mesh.vertices, mesh.faces)
        points = sample_surface(mesh.vertices, mesh.faces, samples, generator)
        turned = turned_about(mesh.vertices, camera, centre, turns, axis)  # (T, V, 3)
        views = _silhouettes(turned, mesh.faces, camera, mask_tensor.shape[0])
        return GroundTruth(mesh, camera, mask_tensor, centre, points, tuple(turns), views, axis)


def _silhouettes(vertices: Tensor, faces: Tensor, camera: Camera, size: int) -> Tensor:
    """(B, S, S) bool silhouettes of B meshes (B, V, 3) sharing ``faces``, all seen by ``camera`` (batch of
    one), S = ``size``: hard renders at ``SILHOUETTE_SUPERSAMPLE`` times the side, a pixel in when over
    half of it is covered (how the synthetic sets' masks are made: their alpha > 0.5)."""
    count, factor = vertices.shape[0], SILHOUETTE_SUPERSAMPLE
    settings = RasterSettings(image_size=size * factor, soft=False)
    with torch.no_grad():
        output = render(vertices, faces, Camera.cat([camera] * count), settings, outputs="alpha")
    coverage = output.alpha[..., 0].reshape(count, size, factor, size, factor).mean((2, 4))  # (B, S, S)
    return coverage > 0.5


def align_reconstruction(result: Reconstruction, camera_true: Camera, centre_true: Tensor) -> Tensor:
    """(V, 3) float32 CPU vertices of ``result``'s mesh in the frame of the object that ``camera_true``
    (batch of one) sees: ``ray_aligned``, at the depth that puts the aligned mesh's area-weighted surface
    centroid at the depth of ``centre_true`` (3,) (the truth's: ``surface_centroid``,
    ``GroundTruth.centre``). For a weak-perspective true camera: ``to_ground_truth_frame`` with the
    mesh's centroid as its centre; for a look-at one the rays distort the mesh (its centroid moves), so
    the reference point is moved along the weak camera's view axis until the aligned centroid is there
    (``CENTROID_STEPS`` Newton steps)."""
    vertices = result.mesh.vertices.detach().to("cpu", torch.float32)
    faces = result.mesh.faces.to("cpu")
    camera = result.camera.to("cpu", torch.float32).detach()
    camera_true = camera_true.to("cpu", torch.float32)
    centre = surface_centroid(vertices, faces)
    aligned = ray_aligned(vertices, camera, camera_true, centre_true, centre)
    if camera_true.kind != "look_at":
        return aligned  # a similarity: the aligned mesh's centroid is the image of ``centre``
    # On rays the mesh is distorted, so its centroid moves: put the aligned mesh's own centroid at the
    # truth's depth, moving the reference point along the weak camera's view axis (a few Newton steps).
    rotation_true, translation_true = camera_true.view_transform()  # (1, 3, 3), (1, 3)
    backward = camera.view_transform()[0][0, 2]  # (3,) the weak camera's view z axis (depth decreases)
    depth_true = -(centre_true @ rotation_true[0, 2] + translation_true[0, 2])
    tan = torch.tan(torch.deg2rad(camera_true.orbit.viewing_angle))[0]
    per_unit = camera.weak.scale[0] * depth_true * tan  # depth change per weak-perspective depth unit
    for _ in range(CENTROID_STEPS):
        depth = -(surface_centroid(aligned, faces) @ rotation_true[0, 2] + translation_true[0, 2])
        centre = centre - (depth - depth_true) / per_unit * backward
        aligned = ray_aligned(vertices, camera, camera_true, centre_true, centre)
    return aligned


def surface_chamfer(
    vertices: Tensor, faces: Tensor, truth_points: Tensor, samples: int, generator: torch.Generator
) -> float:
    """Chamfer x 100 between ``samples`` points drawn (with ``generator``) on the surface of a mesh (V, 3),
    (F, 3) and the truth's surface points (N, 3)."""
    points = sample_surface(vertices, faces, samples, generator)  # (samples, 3)
    return float(chamfer_distance(points, truth_points).total)


def novel_iou_key(turn: float) -> str:
    """The name of the novel-view IoU at ``turn`` degrees: ``novel_iou_45`` for 45."""
    return f"novel_iou_{turn:g}"


def score_aligned(
    vertices: Tensor,
    faces: Tensor,
    truth: GroundTruth,
    samples: int = 4096,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """``input_iou``, ``novel_iou_<turn>`` per turn, ``novel_iou_mean`` and ``chamfer`` of a mesh (V, 3),
    (F, 3) in the truth's frame (module docstring)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    vertices = vertices.detach().to("cpu", torch.float32)
    faces = faces.to("cpu")
    turned = turned_about(vertices, truth.camera, truth.centre, (0.0, *truth.turns), truth.axis)
    views = _silhouettes(turned, faces, truth.camera, truth.mask.shape[0])  # (1 + T, S, S)
    scores = {"input_iou": float(mask_iou(views[0].float(), truth.mask.float(), soft=False))}
    novel = mask_iou(views[1:].float(), truth.views.float(), soft=False)  # (T,)
    for turn, iou in zip(truth.turns, novel.tolist(), strict=True):
        scores[novel_iou_key(turn)] = float(iou)
    scores["novel_iou_mean"] = float(novel.mean())
    scores["chamfer"] = surface_chamfer(vertices, faces, truth.points, samples, generator)
    return scores
