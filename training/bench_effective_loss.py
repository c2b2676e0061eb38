"""``mono2mesh-train bench-effective-loss``: the effective loss vs. a soft-rasterised silhouette loss (JSON).

The seed paper's claim (Table 3): its loss, computed from point projections alone, makes a training step
cheaper than rendering does. This times the loss part of one training step, forward and backward to the
geometry, on the same batch (B objects x G views, SoftRas look-at cameras at 30 degrees elevation and
evenly spaced azimuths) and image size:

- ``effective``: ``training.losses.effective.effective_loss`` (eq. 6, both terms, the module's defaults)
  of N points per object, projected into the G views; the distance fields (eq. 2) are computed from the
  masks inside the step, as a trainer that does not cache them would.
- ``effective_local`` (with ``--cutoff C``): the same with the neighbour-limited second term
  (``cutoff=C``, pairs farther apart than C theta dropped, each below ``exp(-C)`` of the kernel's peak),
  summed by the blocked neighbour-grid path (``training.ops.neighbour_grid``: Triton kernels on CUDA
  where Triton runs, blocked PyTorch elsewhere; ``local_implementation`` in the JSON says which).
- ``effective_local_reference`` (with ``--cutoff C``): the same loss with the reference formulation, every
  pair truncated at the cutoff (``pairs="reference"``, O(N^2)); ``local_check`` gives the largest
  differences of the loss and of the points' gradient between the two (one untimed step).
- ``effective_local_torch`` (with ``--cutoff C``, when ``effective_local`` runs Triton): the PyTorch
  grid path on the same device.
- ``effective_first_term``: the same with ``beta = 0`` (M1 only, eq. 3; the O(N^2) pairs are skipped).
- ``distance_field``: eq. 2's processed silhouettes of the B x G masks alone (a cacheable part of the
  above).
- ``softras_<V>``: ``backend.render.renderer.render`` (soft silhouette, ``RasterSettings(image_size,
  sigma)``) of an icosphere of V vertices in the G views and ``1 - soft IoU``
  (``training.losses.silhouette.iou_loss``) against the masks, as ``softras`` trains: the 642-vertex
  template the softras model uses, and the icosphere whose vertex count is closest to N.

The target masks are hard renders of an ellipsoid; the points fill it and the meshes approximate it, so
both losses work on realistic, mostly-covered silhouettes. Variants run interleaved (one step of each per
round, after one warm-up round); medians in milliseconds and the ratios ``softras / effective`` are
reported, and ``over_softras_642``: each effective variant's time over the softras template's (below 1:
the effective loss is cheaper). Machine and date come with the figures
(``backend.bench.machine.machine_info``).
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from backend.bench.machine import machine_info
from backend.config import Config
from backend.geometry.camera import Camera
from backend.geometry.templates import MAX_ICOSPHERE_LEVEL, icosphere_template
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from training.commands import BenchSpec
from training.losses.effective import (
    DEFAULT_BETA,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_THETA,
    PairsImplementation,
    distance_field,
    effective_loss,
)
from training.losses.silhouette import iou_loss
from training.ops.triton_kernel_sum import triton_available

ELLIPSOID = (0.42, 0.3, 0.36)
"""Semi-axes of the target shape (the unit box of the meshes is [-0.5, 0.5]^3)."""

SOFTRAS_TEMPLATE_LEVEL = 3
"""Icosphere level of the softras model's template (642 vertices)."""


class BenchEffectiveLossOptions(Config):
    """The options of ``mono2mesh-train bench-effective-loss``."""

    points: PositiveInt = 8000
    """Points per object."""
    views: PositiveInt = 4
    """Views per object."""
    batch_size: PositiveInt = 2
    """Objects per step."""
    image_size: PositiveInt = 64
    """Silhouette side in pixels."""
    repeats: PositiveInt = 5
    """Timed rounds, medians reported."""
    chunk_size: PositiveInt = DEFAULT_CHUNK_SIZE
    """Pairwise rows per block."""
    sigma: float = 1e-4
    """SoftRas sigma."""
    device: str = "cpu"
    """Torch device."""
    threads: PositiveInt = 2
    """Torch CPU threads."""
    cutoff: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Also time the neighbour-limited second term with this cutoff (units of theta), as effective_local."""
    seed: int = 0
    """Seed of the points."""


def run(args: BenchEffectiveLossOptions) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    batch, views, size = args.batch_size, args.views, args.image_size
    cameras = _cameras(batch, views, device)  # B * G cameras, object-major
    settings = RasterSettings(image_size=size, sigma=args.sigma)
    masks = _target_masks(cameras, size).view(batch, views, size, size)  # (B, G, S, S)
    points = _ellipsoid_points(batch, args.points, device)  # (B, N, 3)
    levels = sorted({SOFTRAS_TEMPLATE_LEVEL, _closest_level(args.points)})
    meshes = {level: _ellipsoid_mesh(level, batch, device) for level in levels}

    def effective_value(
        beta: float, cutoff: float | None = None, pairs: PairsImplementation = "auto"
    ) -> tuple[Tensor, Tensor]:
        leaf = points.detach().requires_grad_(True)
        per_view = leaf.repeat_interleave(views, dim=0)  # (B * G, N, 3)
        points_ndc = cameras.project(per_view)[..., :2].view(batch, views, -1, 2)  # (B, G, N, 2)
        loss = effective_loss(
            points_ndc, masks, beta=beta, chunk_size=args.chunk_size, cutoff=cutoff, pairs=pairs
        )
        loss.total.backward()
        assert leaf.grad is not None
        return loss.total.detach(), leaf.grad  # (), (B, N, 3)

    def effective_step(
        beta: float, cutoff: float | None = None, pairs: PairsImplementation = "auto"
    ) -> Callable[[], None]:
        def step() -> None:
            effective_value(beta, cutoff, pairs)

        return step

    def softras_step(level: int) -> Callable[[], None]:
        vertices, faces = meshes[level]

        def step() -> None:
            leaf = vertices.detach().requires_grad_(True)
            per_view = leaf.repeat_interleave(views, dim=0)  # (B * G, V, 3)
            alpha = render(per_view, faces, cameras, settings).alpha[..., 0]  # (B * G, S, S)
            iou_loss(alpha, masks.flatten(0, 1)).mean().backward()

        return step

    def field_step() -> None:
        distance_field(masks.flatten(0, 1))

    local: dict[str, Callable[[], None]] = {}
    local_check: dict[str, float] = {}
    implementation = "triton" if triton_available(points) else "torch"
    if args.cutoff is not None:
        local["effective_local"] = effective_step(DEFAULT_BETA, args.cutoff)
        if implementation == "triton":
            local["effective_local_torch"] = effective_step(DEFAULT_BETA, args.cutoff, "torch")
        local["effective_local_reference"] = effective_step(DEFAULT_BETA, args.cutoff, "reference")
        new_total, new_grad = effective_value(DEFAULT_BETA, args.cutoff)
        old_total, old_grad = effective_value(DEFAULT_BETA, args.cutoff, "reference")
        local_check = {
            "total": float(new_total),
            "total_abs_difference": float((new_total - old_total).abs()),
            "grad_max_abs": float(old_grad.abs().max()),
            "grad_max_abs_difference": float((new_grad - old_grad).abs().max()),
        }
    steps: dict[str, Callable[[], None]] = {
        "effective": effective_step(DEFAULT_BETA),
        **local,
        "effective_first_term": effective_step(0.0),
        "distance_field": field_step,
        **{f"softras_{meshes[level][0].shape[1]}": softras_step(level) for level in levels},
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(args.repeats + 1):
        for name, step in steps.items():
            seconds = _timed(step, device)
            if round_index > 0:  # the first round warms up
                times[name].append(seconds)
    median_ms = {name: round(1000 * statistics.median(values), 3) for name, values in times.items()}
    ratios = {
        f"{name}_over_{reference}": round(median_ms[name] / median_ms[reference], 3)
        for name in steps
        if name.startswith("softras_")
        for reference in ("effective", "effective_local", "effective_local_reference", "effective_first_term")
        if reference in steps
    }
    template = f"softras_{meshes[SOFTRAS_TEMPLATE_LEVEL][0].shape[1]}"
    over_softras = {
        name: round(median_ms[name] / median_ms[template], 3)
        for name in steps
        if name.startswith("effective")
    }
    results: dict[str, Any] = {
        "benchmark": "effective-loss",
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "device": str(device),
        "points": args.points,
        "views": views,
        "batch_size": batch,
        "image_size": size,
        "repeats": args.repeats,
        "chunk_size": args.chunk_size,
        "theta": DEFAULT_THETA,
        "beta": DEFAULT_BETA,
        "sigma": args.sigma,
        "cutoff": args.cutoff,
        "local_implementation": None if args.cutoff is None else implementation,
        "local_check": local_check or None,
        "meshes": {
            f"softras_{v.shape[1]}": {"vertices": int(v.shape[1]), "faces": int(f.shape[0])}
            for v, f in meshes.values()
        },
        "median_ms": median_ms,
        "ratios": ratios,
        f"over_{template}": over_softras,
    }
    print(json.dumps(results, indent=2))
    return 0


def _timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call of ``step`` (synchronised on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _cameras(batch: int, views: int, device: torch.device) -> Camera:
    """B * G SoftRas look-at cameras (object-major): elevation 30, azimuths 360 k / G (+ 15 per object)."""
    azimuths = [360.0 * k / views + 15.0 * b for b in range(batch) for k in range(views)]
    azimuth = torch.tensor(azimuths, device=device)
    return Camera.look_at(2.732, torch.full_like(azimuth, 30.0), azimuth)


def _target_masks(cameras: Camera, size: int) -> Tensor:
    """(B * G, S, S) hard silhouettes of the ellipsoid in every view."""
    vertices, faces = _ellipsoid_mesh(4, 1, cameras.device)
    hard = RasterSettings(image_size=size, soft=False)
    with torch.no_grad():
        alpha = render(vertices[0], faces, cameras, hard).alpha[..., 0]  # (B * G, S, S)
    return (alpha > 0.5).float()


def _ellipsoid_points(batch: int, count: int, device: torch.device) -> Tensor:
    """(B, N, 3) points uniform in the ellipsoid, drawn from the global CPU generator (the same on every
    device), on ``device``."""
    direction = torch.nn.functional.normalize(torch.randn(batch, count, 3, device="cpu"), dim=-1)
    radius = torch.rand(batch, count, 1, device="cpu") ** (1 / 3)
    return (direction * radius).to(device) * torch.tensor(ELLIPSOID, device=device)


def _ellipsoid_mesh(level: int, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Icosphere of ``level`` scaled to the ellipsoid, slightly perturbed per object: (B, V, 3), (F, 3)."""
    mesh = icosphere_template(level).mesh  # on the CPU
    vertices = mesh.vertices.to(device).float() * torch.tensor(ELLIPSOID, device=device)  # (V, 3)
    noise = torch.randn(batch, *vertices.shape, device="cpu").to(device)  # the global CPU generator's draws
    return vertices + 0.005 * noise, mesh.faces.to(device)  # (B, V, 3), (F, 3)


def _closest_level(count: int) -> int:
    """Icosphere level whose vertex count ``10 * 4**level + 2`` is closest to ``count`` (in ratio)."""
    levels = range(MAX_ICOSPHERE_LEVEL + 1)
    return min(levels, key=lambda level: abs(math.log((10 * 4**level + 2) / count)))


COMMAND = BenchSpec(
    "bench-effective-loss",
    "time the effective loss (eq. 6) against a soft-rasterised silhouette loss (JSON)",
    __doc__, BenchEffectiveLossOptions, run,
)  # fmt: skip
"""``mono2mesh-train bench-effective-loss``: one flag per field of ``BenchEffectiveLossOptions``."""
