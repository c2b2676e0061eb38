"""What the trainers' ``evaluate`` methods share: ground truth of an item, one mean, metric tables.

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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from backend.geometry.mesh import TexturedMesh

NON_FINITE = "non_finite"
"""Prefix of the metrics counting the values a mean left out: ``non_finite/<name>``."""


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
