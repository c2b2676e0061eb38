"""training.evaluation: ground truth of an item, the one mean (non-finite values left out and counted), the
metric tables of the trainers."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from backend.geometry.mesh import TexturedMesh
from training.evaluation import (
    category_metrics,
    finite_mean,
    ground_truth_mesh,
    ground_truth_surface,
    mean_metrics,
)


class _Meshes(Dataset[Any]):
    """Item 0 has a ground-truth mesh (float64 vertices), item 1 has none."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> Any:
        return index

    def ground_truth_mesh(self, index: int) -> TexturedMesh | None:
        if index:
            return None
        vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
        faces = torch.tensor([[0, 1, 2]])
        uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        return TexturedMesh(vertices, faces, uvs, faces.clone(), torch.full((2, 2, 3), 0.5))


def test_ground_truth_of_an_item() -> None:
    dataset = _Meshes()
    mesh = ground_truth_mesh(dataset, 0)
    assert mesh is not None and mesh.num_faces == 1
    surface = ground_truth_surface(dataset, 0)
    assert surface is not None and surface[0].dtype == torch.float32 and surface[1].tolist() == [[0, 1, 2]]
    assert ground_truth_mesh(dataset, 1) is None and ground_truth_surface(dataset, 1) is None
    assert ground_truth_surface(torch.utils.data.TensorDataset(torch.zeros(2)), 0) is None  # no meshes at all


def test_the_mean_leaves_non_finite_values_out_and_counts_them() -> None:
    values = [0.1, 0.7, 0.25, 1e-3]
    exact = finite_mean(values)
    assert exact.value == sum(values) / len(values) and (exact.count, exact.dropped) == (4, 0)  # bit for bit
    mixed = finite_mean([1.0, math.nan, 3.0, math.inf, -math.inf])
    assert (mixed.value, mixed.count, mixed.dropped) == (2.0, 2, 3)
    empty = finite_mean([])
    assert math.isnan(empty.value) and (empty.count, empty.dropped) == (0, 0)
    assert math.isnan(finite_mean([math.nan]).value)


def test_mean_metrics_report_what_they_left_out() -> None:
    metrics = mean_metrics({"ssim": [0.5, 0.7], "iou": [1.0, math.nan], "none": []})
    assert metrics["ssim"] == (0.5 + 0.7) / 2 and metrics["iou"] == 1.0 and math.isnan(metrics["none"])
    assert metrics["non_finite/iou"] == 1.0 and "non_finite/ssim" not in metrics
    assert list(mean_metrics({"a": [1.0], "b": [2.0]})) == ["a", "b"]


def test_category_metrics_average_each_category_then_the_categories() -> None:
    """A loop: SoftRas's table, each category once in the headline mean however many samples it has."""
    per_category = {"plane": [50.0, 70.0, 30.0], "car": [80.0], "chair": [math.nan, 20.0]}
    metrics = category_metrics("iou3d", per_category)
    assert list(metrics)[:3] == ["iou3d/car", "iou3d/chair", "iou3d/plane"]  # sorted
    expected = {"car": 80.0, "chair": 20.0, "plane": 50.0}
    for category, value in expected.items():
        assert metrics[f"iou3d/{category}"] == value
    assert metrics["iou3d"] == (50.0 + 80.0 + 20.0) / 3  # in the categories' order of arrival
    assert metrics["non_finite/iou3d"] == 1.0
    assert math.isnan(category_metrics("chamfer", {})["chamfer"])
