"""``mono2mesh bench render``: forward + backward cost of the renderer, side by side with DEODR.

The workload is the 642-vertex / 1280-face symmetric icosphere with its 128 x 256 UV texture, seen by
a SoftRas look-at camera (distance 2.732, elevation 30, azimuth 45, half angle 15 degrees, radius 0.5
so it fills about a third of the image). One step renders the textured RGB image and the soft
silhouette, sums both and back-propagates to the vertices and the texture. ``sigma`` scales as
``1e-4 * (64 / S)^2`` so that the soft band is about one pixel wide at every size, as in SoftRas's
64 x 64 recipe (``--sigma`` fixes it instead).

DEODR (C++, optional dependency ``deodr``) renders the same mesh, UVs and texture from the same
camera with its anti-aliased edges and back-propagates an all-ones image gradient; it has no batch,
so a batch of B is B calls. Figures are per image: the minimum over ``repeats`` timed runs after one
warm-up, which is the least noisy estimate on a shared machine.

Raster backends (``RasterSettings.backend``): each timed row says which one ran (``raster_backend``)
and why (``backend_reason``); ``backends`` ("auto", "torch", "triton", "numba") asks for rows of each,
so a CUDA machine can compare the packed PyTorch path with the Triton one and a CPU the packed path with
the numba one. ``silhouette`` adds, per case, a row of the step the fit loop takes (``step``
"silhouette": the soft silhouette rendered alone, ``outputs="alpha"``, summed and back-propagated to the
vertices); those rows have no DEODR ratio (DEODR renders the colours too). ``count_render_ops`` (``--ops``)
reports, per backend, the aten operations and host synchronisations of one step as the CPU profiler
sees them (the launch-bound cost on a GPU); it runs the triton backend on CUDA, or on the CPU under
``TRITON_INTERPRET=1`` (Triton's interpreter: slow, but the counts are those of the CUDA path).
"""

from __future__ import annotations

import resource
import time
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from backend.bench.machine import machine_info
from backend.geometry import Camera
from backend.geometry.camera import SOFTRAS_VIEWING_ANGLE
from backend.geometry.templates import icosphere_template
from backend.render import RasterSettings, render
from backend.render.backends import interpreter_enabled, select_backend

CAMERA = {"distance": 2.732, "elevation": 30.0, "azimuth": 45.0, "viewing_angle": SOFTRAS_VIEWING_ANGLE}
RADIUS = 0.5


@dataclass(frozen=True)
class Workload:
    vertices: torch.Tensor  # (V, 3)
    faces: torch.Tensor  # (F, 3)
    uvs: torch.Tensor  # (T, 2)
    face_uvs: torch.Tensor  # (F, 3)
    texture: torch.Tensor  # (H, W, 3)


def make_workload(seed: int = 0) -> Workload:
    """The icosphere template at radius 0.5 with a random (reproducible) texture."""
    mesh = icosphere_template().mesh
    generator = torch.Generator().manual_seed(seed)  # a CPU generator; time_* move the workload
    texture = torch.rand(mesh.texture.shape, generator=generator, device="cpu")
    return Workload(mesh.vertices * RADIUS, mesh.faces, mesh.uvs, mesh.face_uvs, texture)


def default_sigma(size: int) -> float:
    return 1e-4 * (64.0 / size) ** 2


SYNC_OPS = ("aten::nonzero", "aten::item", "aten::_local_scalar_dense", "aten::_unique2", "aten::unique")
"""Aten operations that wait for the device (their result decides a shape or a Python value)."""

TRITON_SCOPES = ("triton_search_kernel", "triton_geometry_forward", "triton_geometry_backward")
"""The profiler scopes of the triton backend's kernel launches (``triton_search``, ``dense``)."""

OPAQUE_SCOPES = (*TRITON_SCOPES, "aten::_assert_async")
"""Profiler scopes counted as one operation, without their children: the Triton launches (whose
interpreter issues aten operations of its own on the CPU) and ``_assert_async`` (which reads its
flag on the CPU, but not on CUDA, where it is a device-side assertion)."""


NO_KERNEL_OPS = frozenset(
    "aten::" + name
    for name in (
        "as_strided", "view", "_reshape_alias", "_unsafe_view", "reshape", "expand", "expand_as", "permute",
        "unsqueeze", "squeeze", "select", "slice", "narrow", "transpose", "t", "unbind", "split",
        "split_with_sizes", "chunk", "alias", "detach", "detach_", "lift_fresh", "empty", "empty_strided",
        "empty_like", "resolve_conj", "resolve_neg", "flatten", "unflatten", "movedim", "to", "result_type",
    )
)  # fmt: skip
"""Aten operations that, without aten children of their own, launch no device kernel: views, layout and
allocation (``compute_ops`` leaves them out)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(
    work: Workload,
    settings: RasterSettings,
    batch: int,
    device: torch.device,
    silhouette_only: bool = False,
) -> Any:
    """One benchmark step (render, sum, backward) as a closure, on ``device``."""
    camera = Camera.look_at(
        torch.full((batch,), CAMERA["distance"], device=device),
        torch.full((batch,), CAMERA["elevation"], device=device),
        torch.full((batch,), CAMERA["azimuth"], device=device),
        CAMERA["viewing_angle"],
    )
    vertices = work.vertices.to(device).clone().requires_grad_(True)
    texture = work.texture.to(device).clone().requires_grad_(True)
    uvs, face_uvs, faces = work.uvs.to(device), work.face_uvs.to(device), work.faces.to(device)

    def step() -> None:
        if silhouette_only:
            render(vertices, faces, camera, settings, outputs="alpha").alpha.sum().backward()
        else:
            out = render(vertices, faces, camera, settings, uvs=uvs, face_uvs=face_uvs, texture=texture)
            (out.rgb.sum() + out.alpha.sum()).backward()

    return step


def time_ours(
    work: Workload,
    size: int,
    batch: int,
    device: torch.device,
    repeats: int,
    sigma: float | None = None,
    silhouette_only: bool = False,
    backend: str = "auto",
) -> dict[str, Any]:
    """Per-image forward + backward milliseconds of our renderer (and peak memory on CUDA)."""
    settings = RasterSettings(image_size=size, sigma=sigma or default_sigma(size), backend=backend)
    choice = select_backend(device, backend)
    step = _step(work, settings, batch, device, silhouette_only)
    step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    result: dict[str, Any] = {
        "renderer": "mono2mesh",
        "device": str(device),
        "size": size,
        "batch": batch,
        "sigma": settings.sigma,
        "step": "silhouette" if silhouette_only else "rgb+silhouette",
        "raster_backend": choice.name,
        "backend_reason": choice.reason,
        "ms_per_image": 1000.0 * min(times) / batch,
        "images_per_s": batch / min(times),
    }
    if device.type == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _inside(event: Any, names: tuple[str, ...]) -> bool:
    while event is not None:
        if event.name in names:
            return True
        event = event.cpu_parent
    return False


def count_render_ops(
    backend: str, size: int = 128, batch: int = 16, device: torch.device | None = None
) -> dict[str, Any]:
    """Aten operations and host synchronisations of one benchmark step on the CPU profiler.

    The step is the timed one (render rgb + soft silhouette, sum, backward), run once to warm up and
    once under ``torch.profiler``. ``aten_ops`` counts every aten event (nested ones too, as the
    dispatcher runs each), ``top_level_aten_ops`` only those not called by another aten operation;
    the ``OPAQUE_SCOPES`` count as one operation each. ``compute_ops`` counts the innermost aten
    operations (no aten children) that are not views or allocations (``NO_KERNEL_OPS``), plus the
    opaque scopes: about one device kernel each on a GPU. ``host_syncs`` counts ``SYNC_OPS`` events.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = make_workload()
    settings = RasterSettings(image_size=size, sigma=default_sigma(size), backend=backend)
    choice = select_backend(device, backend)
    settings = replace(settings, backend=choice.name)
    step = _step(work, settings, batch, device)
    step()
    _sync(device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        step()
        _sync(device)
    events = [
        event
        for event in profiler.events()
        if (event.name.startswith("aten::") or event.name in TRITON_SCOPES)
        and not _inside(event.cpu_parent, OPAQUE_SCOPES)
    ]
    top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    syncs = Counter(e.name for e in events if e.name in SYNC_OPS)
    compute = [
        e
        for e in events
        if e.name in OPAQUE_SCOPES
        or (
            e.name not in NO_KERNEL_OPS
            and not any(child.name.startswith("aten::") for child in e.cpu_children)
        )
    ]
    return {
        "raster_backend": choice.name,
        "backend_reason": choice.reason,
        "device": str(device),
        "size": size,
        "batch": batch,
        "aten_ops": len(events),
        "top_level_aten_ops": len(top),
        "compute_ops": len(compute),
        "host_syncs": sum(syncs.values()),
        "sync_ops": dict(syncs),
    }


def ops_backends(device: torch.device) -> list[str]:
    """The backends ``--ops`` reports on ``device``: torch, and triton where it can run."""
    if device.type == "cuda" or (device.type == "cpu" and interpreter_enabled()):
        try:
            select_backend(device, "triton")
        except RuntimeError:
            return ["torch"]
        return ["torch", "triton"]
    return ["torch"]


def time_deodr(work: Workload, size: int, batch: int, repeats: int) -> dict[str, Any]:
    """Per-image forward + backward milliseconds of DEODR on the CPU (B sequential renders)."""
    from deodr.differentiable_renderer import PerspectiveCamera, Scene3D
    from deodr.triangulated_mesh import ColoredTriMesh

    texture = work.texture.double().numpy()
    height, width = texture.shape[:2]
    uv_pixels = np.column_stack([work.uvs[:, 0].numpy() * width, (1.0 - work.uvs[:, 1].numpy()) * height])
    mesh = ColoredTriMesh(
        work.faces.numpy().astype(np.int32),
        vertices=work.vertices.double().numpy(),
        faces_uv=work.face_uvs.numpy().astype(np.int32),
        uv=uv_pixels,
        texture=texture,
    )
    scene = Scene3D(sigma=1.0)
    scene.set_mesh(mesh)
    scene.set_light(light_directional=None, light_ambient=1.0)
    scene.set_background_color(np.zeros(3))
    camera_ours = Camera.look_at(
        CAMERA["distance"], CAMERA["elevation"], CAMERA["azimuth"], CAMERA["viewing_angle"]
    ).to("cpu", torch.float64)
    rotation, translation = camera_ours.view_transform()
    # DEODR's camera looks down +Z with y down in the image: flip our y and z view axes
    flip = np.diag([1.0, -1.0, -1.0])
    rot = flip @ rotation[0].double().numpy()
    centre = -(rotation[0].double().numpy().T @ translation[0].double().numpy())
    camera = PerspectiveCamera(size, size, 2 * CAMERA["viewing_angle"], centre, rot)

    def one() -> None:
        # Scene3D.render_backward mishandles textured meshes in deodr 0.2.3 (it looks for vertex-colour
        # state), so run its two backward stages directly: image -> 2D vertices and texture -> 3D.
        image = scene.render(camera)
        scene._render_2d_backward(np.ones_like(image))
        camera.project_points_backward(scene.scene_2d.ij_b, store_backward=scene.store_backward_current)

    times = []
    with warnings.catch_warnings():  # deodr 0.2.3 calls np.cross on 2-vectors, deprecated in NumPy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        one()
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(batch):
                one()
            times.append(time.perf_counter() - start)
    return {
        "renderer": "deodr",
        "device": "cpu",
        "size": size,
        "batch": batch,
        "ms_per_image": 1000.0 * min(times) / batch,
        "images_per_s": batch / min(times),
    }


def run(
    sizes: list[int],
    batches: list[int],
    devices: list[str],
    repeats: int,
    with_deodr: bool,
    sigma: float | None = None,
    backends: list[str] | None = None,
    ops: tuple[int, int] | None = None,
    silhouette: bool = False,
) -> dict[str, Any]:
    """Run every (device, backend, size, batch) case, DEODR beside ours, and return the JSON-ready report.

    ``backends`` defaults to ``["auto"]``; a backend that cannot run on a device is listed under
    ``skipped`` with the reason. ``ops`` = (size, batch) adds the ``ops`` section: ``count_render_ops``
    for each of ``ops_backends`` on each device. ``silhouette`` adds a silhouette-alone row per case.
    """
    work = make_workload()
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for name in devices:
        device = torch.device(name)
        for backend in backends or ["auto"]:
            try:
                select_backend(device, backend)
            except RuntimeError as error:
                skipped.append({"device": name, "backend": backend, "reason": str(error)})
                continue
            for size in sizes:
                for batch in batches:
                    rows.append(time_ours(work, size, batch, device, repeats, sigma, backend=backend))
                    if silhouette:
                        rows.append(
                            time_ours(work, size, batch, device, repeats, sigma, True, backend=backend)
                        )
            if device.type == "cuda" and not silhouette:
                rows.append(
                    time_ours(work, 64, 64, device, repeats, sigma, silhouette_only=True, backend=backend)
                )
    deodr_rows: list[dict[str, Any]] = []
    cases = {(size, batch) for size in sizes for batch in batches}
    if with_deodr:
        for size in sizes:
            for batch in batches:
                deodr_rows.append(time_deodr(work, size, batch, repeats))
        for row in rows:
            if (
                row["device"] == "cpu"
                and row["step"] != "silhouette"
                and (row["size"], row["batch"]) in cases
            ):
                peer = next(d for d in deodr_rows if d["size"] == row["size"] and d["batch"] == row["batch"])
                row["ratio_to_deodr"] = row["ms_per_image"] / peer["ms_per_image"]
    report: dict[str, Any] = {
        "benchmark": "render",
        "workload": {
            "vertices": int(work.vertices.shape[0]),
            "faces": int(work.faces.shape[0]),
            "texture": list(work.texture.shape),
            "camera": CAMERA,
            "step": "render rgb (uv texture) + soft silhouette, sum, backward to vertices and texture",
        },
        "machine": machine_info(),
        "results": rows + deodr_rows,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if skipped:
        report["skipped"] = skipped
    if ops is not None:
        report["ops"] = [
            count_render_ops(backend, ops[0], ops[1], torch.device(name))
            for name in devices
            for backend in ops_backends(torch.device(name))
        ]
    return report


def format_table(report: dict[str, Any]) -> str:
    """One line per case of a ``run`` report, for people."""
    lines = []
    for row in report["results"]:
        ratio = f"  ({row['ratio_to_deodr']:.1f}x DEODR)" if "ratio_to_deodr" in row else ""
        backend = f" [{row['raster_backend']}]" if "raster_backend" in row else ""
        backend += " silhouette alone" if row.get("step") == "silhouette" else ""
        lines.append(
            f"{row['renderer']:>9} {row['device']:>5} {row['size']:>4}^2 batch {row['batch']:>2}: "
            f"{row['ms_per_image']:8.2f} ms/image{ratio}{backend}"
        )
    for skip in report.get("skipped", []):
        lines.append(f"  skipped backend {skip['backend']} on {skip['device']}: {skip['reason']}")
    for row in report.get("ops", []):
        lines.append(
            f"   ops {row['raster_backend']:>6} {row['device']:>5} {row['size']:>4}^2 "
            f"batch {row['batch']:>2}: "
            f"{row['aten_ops']} aten ops ({row['top_level_aten_ops']} top-level, "
            f"{row['compute_ops']} compute), "
            f"{row['host_syncs']} host syncs {row['sync_ops']}"
        )
    return "\n".join(lines)
