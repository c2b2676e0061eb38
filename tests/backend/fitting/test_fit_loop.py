"""The fitting loop's fast paths against the plain ones they replace (issue 19), and what the loop reads
back from the device.

- ``CameraVariables.project`` is ``camera().project`` (same arithmetic, no ``Camera`` built);
- rendering the projected points through ``ndc_camera`` gives the renderer's own silhouette and faces;
- ``chamfer_mask_loss`` (nearest vertex chosen without autograd, then only those pairs differentiated)
  has the value and gradient of the all-pairs ``min`` it replaces;
- ``SymmetricOffsets`` (index and signs read off ``symmetrize_vertices`` once) is ``symmetrize_vertices``;
- ``RowLaplacian`` (padded rows, gathered) gives ``laplacian_loss``'s value and gradient;
- selecting a hypothesis by a device tensor equals selecting it by its int;
- the steps of ``optimise`` read nothing back to the host (no ``item``, ``tolist``, ``bool(tensor)``...
  from ``backend/fitting``: the count does not grow with the iterations);
- a template fit gives the same bits for 1 and 3 CPU threads.
"""

from __future__ import annotations

import collections
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from backend.fitting import targets
from backend.fitting.camera import CameraVariables, as_view_points, initial_cameras, ndc_camera
from backend.fitting.optimise import FitSettings, FitState
from backend.fitting.shape import RowLaplacian, SymmetricOffsets, fit_template
from backend.fitting.targets import chamfer_mask_loss, nearest_vertex, outside_distance
from backend.geometry.ops import laplacian_loss, uniform_laplacian
from backend.geometry.templates import icosphere_template, symmetrize_vertices
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from tests.backend.methods.test_fit import ellipsoid_mask


def random_cameras(count: int, seed: int = 0) -> CameraVariables:
    generator = torch.Generator().manual_seed(seed)
    start = initial_cameras(torch.rand(32, 32, generator=generator), count, 1.2)
    return CameraVariables(
        start.log_scale + 0.1 * torch.randn(count, generator=generator),
        start.translation + 0.1 * torch.randn(count, 2, generator=generator),
        start.rotation + 0.2 * torch.randn(count, 4, generator=generator),
    )


def test_project_is_the_camera_projection() -> None:
    cameras = random_cameras(3)
    points = torch.randn(3, 50, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(cameras.project(points), cameras.camera().project(points), rtol=1e-6, atol=0)


def test_rendering_through_the_ndc_camera_is_rendering_through_the_camera() -> None:
    template = icosphere_template()
    vertices = template.mesh.vertices * torch.tensor([0.6, 0.8, 1.0])
    cameras = random_cameras(2, seed=3)
    batch = vertices.expand(2, -1, -1)
    settings = RasterSettings(48)
    direct = render(batch, template.mesh.faces, cameras.camera(), settings)
    projected = cameras.project(batch)
    through = render(as_view_points(projected), template.mesh.faces, ndc_camera(2, "cpu"), settings)
    assert direct.mask.sum() > 100  # the mesh is in view
    torch.testing.assert_close(through.alpha, direct.alpha, rtol=0, atol=1e-6)
    assert torch.equal(through.face_index, direct.face_index)
    # x and y reach the renderer unchanged; depth within rounding
    shown = ndc_camera(2, "cpu").project(as_view_points(projected))
    assert torch.equal(shown[..., :2], projected[..., :2])
    torch.testing.assert_close(shown[..., 2], projected[..., 2])


def all_pairs_chamfer(projected: torch.Tensor, distance: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The loss as it was: the (B, M, V) squared distances, ``min`` over V with autograd."""
    grid = torch.stack([projected[..., 0], -projected[..., 1]], dim=-1)[:, None]
    field = distance[None, None].expand(projected.shape[0], 1, -1, -1).to(projected.dtype)
    to_mask = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
    overshoot = (projected.abs() - 1).clamp_min(0).norm(dim=-1)
    vertex_term = (to_mask[:, 0, 0] + overshoot).pow(2).mean(dim=1)
    squared = (points[None, :, None, :] - projected[:, None, :, :]).pow(2).sum(-1)  # (B, M, V)
    return vertex_term + squared.min(dim=2).values.mean(dim=1)


def test_chamfer_matches_the_all_pairs_minimum() -> None:
    mask = np.zeros((40, 40), bool)
    mask[8:30, 5:25] = True
    distance = outside_distance(mask)
    generator = torch.Generator().manual_seed(2)
    points = torch.rand(120, 2, generator=generator) * 2 - 1
    projected = (torch.rand(3, 90, 2, generator=generator) * 2.4 - 1.2).requires_grad_(True)
    fast = chamfer_mask_loss(projected, distance, points)
    (fast_grad,) = torch.autograd.grad(fast.sum(), projected)
    slow = all_pairs_chamfer(projected, distance, points)
    (slow_grad,) = torch.autograd.grad(slow.sum(), projected)
    assert torch.equal(fast, slow)  # the same squared distances, the same minimum
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-5, atol=1e-9)
    # brute force with Python loops for one batch item
    item = projected.detach()[1]
    expected = [min(float(((q - p) ** 2).sum()) for p in item) for q in points]
    nearest = nearest_vertex(projected.detach(), points)[1]
    for m, q in enumerate(points):
        assert np.isclose(float(((q - item[nearest[m]]) ** 2).sum()), expected[m], rtol=1e-6, atol=1e-12)


def test_symmetric_offsets_are_symmetrize_vertices() -> None:
    template = icosphere_template()
    vertices_of = SymmetricOffsets.of(template)
    offsets = torch.randn(3, template.num_free, 3, generator=torch.Generator().manual_seed(4))
    offsets.requires_grad_(True)
    fast = vertices_of(offsets)
    slow = symmetrize_vertices(vertices_of.base_free + offsets, template)
    assert torch.equal(fast, slow)
    assert torch.equal(fast[:, template.left_index, 0], -fast[:, template.right_index, 0])
    assert torch.equal(fast[:, template.plane_index, 0], torch.zeros(3, len(template.plane_index)))
    weights = torch.randn(fast.shape, generator=torch.Generator().manual_seed(5))
    (fast_grad,) = torch.autograd.grad((fast * weights).sum(), offsets)
    (slow_grad,) = torch.autograd.grad((slow * weights).sum(), offsets)
    torch.testing.assert_close(fast_grad, slow_grad)


def test_row_laplacian_is_the_sparse_laplacian() -> None:
    mesh = icosphere_template(2).mesh
    laplacian = uniform_laplacian(mesh.faces, mesh.num_vertices)
    rows = RowLaplacian.of(laplacian)
    assert rows.columns.shape[0] == mesh.num_vertices and rows.columns.shape[1] >= 6  # valence + 1
    vertices = torch.randn(2, mesh.num_vertices, 3, dtype=torch.float64, requires_grad=True)
    fast, slow = rows.loss(vertices), laplacian_loss(vertices, mesh.faces, laplacian=laplacian)
    torch.testing.assert_close(fast, slow)
    (fast_grad,) = torch.autograd.grad(fast.sum(), vertices)
    (slow_grad,) = torch.autograd.grad(slow.sum(), vertices)
    torch.testing.assert_close(fast_grad, slow_grad)
    # a hand example: the uniform Laplacian of a tetrahedron, v_i - mean of the other three
    tetrahedron = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    faces = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    small = RowLaplacian.of(uniform_laplacian(faces, 4))
    expected = (tetrahedron - (tetrahedron.sum(0) - tetrahedron) / 3).pow(2).sum(-1).mean()
    torch.testing.assert_close(small.loss(tetrahedron[None])[0], expected)


def test_select_by_device_tensor_equals_select_by_int() -> None:
    state = FitState(torch.randn(3, 5, 3), random_cameras(3))
    by_int, by_tensor = state.select(2), state.select(torch.tensor([2]))
    assert torch.equal(by_int.offsets, state.offsets[2:3])
    assert torch.equal(by_tensor.offsets, by_int.offsets)
    for first, second in zip(by_int.cameras.tensors(), by_tensor.cameras.tensors(), strict=True):
        assert torch.equal(first, second) and first.shape[0] == 1 and not first.requires_grad


SYNCS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero"}


class HostReads(TorchFunctionMode):
    """Counts the calls that read a tensor back to the host, made directly from ``backend/fitting``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        name = getattr(func, "__name__", "")
        if name in SYNCS:
            caller = traceback.extract_stack(limit=2)[0]
            if "backend/fitting/" in caller.filename.replace("\\", "/"):
                self.calls[f"{name} {caller.filename.rsplit('/', 1)[-1]}:{caller.lineno}"] += 1
        return func(*args, **(kwargs or {}))


def test_the_steps_read_nothing_back_to_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # the path a CUDA fit takes: the numba loops (CPU tensors only, where a read is no synchronisation)
    # hand numpy views of each step's tensors to compiled code
    monkeypatch.setattr(targets, "numba_problem", lambda: "the path of other devices")
    _, mask = ellipsoid_mask(64)
    counts = []
    for iterations in (4, 10):
        reads = HostReads()
        with reads:
            fit_template(
                icosphere_template(), mask, FitSettings(iterations=iterations, resolution=32, hypotheses=2),
                lambda fraction, stage: None,
            )  # fmt: skip
        counts.append(reads.calls)
    assert counts[0] == counts[1], counts  # a fixed number of reads, before and after the loop


def test_a_template_fit_does_not_depend_on_the_thread_count() -> None:
    _, mask = ellipsoid_mask(96)
    settings = FitSettings(iterations=12, resolution=48, hypotheses=2)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            results.append(fit_template(icosphere_template(), mask, settings, lambda fraction, stage: None))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0].vertices, results[1].vertices)
    assert results[0].hypothesis_losses == results[1].hypothesis_losses
    assert results[0].final_loss == results[1].final_loss
