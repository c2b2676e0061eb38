"""Run the triton render path in Triton's CPU interpreter beside the packed PyTorch path; print JSON.

``python -m tests.backend.render.triton_interpret_checks`` sets ``TRITON_INTERPRET=1`` before anything
imports ``triton`` (which is why this runs in its own process, for ``test_triton_path.py``), renders
small scenes with ``backend="torch"`` and ``backend="triton"``, and prints one JSON object: per case,
the largest absolute difference of each image and gradient and their scale, plus the facts the tests
check (overflow counts, op and synchronisation counts, the backend selection). Importing this module
does nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

SYNC_OPS = ("aten::nonzero", "aten::item", "aten::_local_scalar_dense", "aten::_unique2", "aten::unique")


def _diff(a: Any, b: Any) -> dict[str, float]:
    a, b = a.detach().double(), b.detach().double()
    return {"max": float((a - b).abs().max()), "scale": float(a.abs().max())}


def _render_case(torch: Any, backend: str, case: dict[str, Any]) -> dict[str, Any]:
    from backend.render import RasterSettings, render

    settings = RasterSettings(
        image_size=case["size"], sigma=case["sigma"], backend=backend, soft=case.get("soft", True),
        max_band_faces=case.get("k", 64),
    )  # fmt: skip
    leaves = {name: value.clone().requires_grad_() for name, value in case["leaves"].items()}
    camera = case["camera"](leaves)
    out = render(
        leaves["vertices"], case["faces"], camera, settings, uvs=case.get("uvs"),
        face_uvs=case.get("face_uvs"), texture=leaves.get("texture"),
        vertex_colors=case.get("vertex_colors"), lighting=case.get("lighting"),
    )  # fmt: skip
    weights = torch.linspace(0.5, 1.5, out.rgb.numel(), dtype=out.rgb.dtype).reshape(out.rgb.shape)
    loss = (out.rgb * weights).sum() + 3 * out.alpha.sum() + 0.1 * out.depth.sum()
    loss = loss + 0.2 * out.barycentrics.sum()
    loss.backward()
    images = {
        "rgb": out.rgb, "alpha": out.alpha, "mask": out.mask, "depth": out.depth,
        "face_index": out.face_index, "barycentrics": out.barycentrics,
    }  # fmt: skip
    grads = {f"grad_{name}": leaf.grad for name, leaf in leaves.items()}
    return {"images": images, "grads": grads, "fragments": out.fragments, "backend": backend}


def _compare(torch: Any, case: dict[str, Any]) -> dict[str, Any]:
    reference = _render_case(torch, "torch", case)
    torch.use_deterministic_algorithms(case.get("deterministic", False))
    try:
        triton = _render_case(torch, "triton", case)
    finally:
        torch.use_deterministic_algorithms(False)
    result: dict[str, Any] = {}
    for group in ("images", "grads"):
        for name, value in reference[group].items():
            other = triton[group][name]
            if value is None or other is None:
                result[name] = {"reference_none": value is None, "triton_none": other is None}
                continue
            result[name] = _diff(value, other)
            result[name]["finite"] = bool(torch.isfinite(other).all())
    fragments = triton["fragments"]
    result["dense"] = fragments.covered is not None
    if fragments.band_count is not None:
        result["max_band_count"] = int(fragments.band_count.max())
        result["overflow_pixels"] = int((fragments.band_count > case.get("k", 64)).sum())
    result["covered_pixels"] = int(reference["images"]["mask"].sum())
    return result


def _scene(torch: Any, level: int, batch: int, seed: int = 0) -> dict[str, Any]:
    from backend.geometry.templates import icosphere_template

    mesh = icosphere_template(level).mesh
    generator = torch.Generator().manual_seed(seed)
    bumps = 1 + 0.08 * torch.rand(mesh.num_vertices, 1, generator=generator, device="cpu")
    return {
        "vertices": mesh.vertices * bumps * 0.8,
        "faces": mesh.faces,
        "uvs": mesh.uvs,
        "face_uvs": mesh.face_uvs,
        "texture": torch.rand(8, 16, 3, generator=generator, device="cpu"),
        "colors": torch.rand(batch, mesh.num_vertices, 3, generator=generator, device="cpu"),
    }


def _look_at(torch: Any, azimuth: list[float]) -> Callable[[dict[str, Any]], Any]:
    from backend.geometry import Camera

    return lambda leaves: Camera.look_at(
        leaves["distance"], 25.0, torch.tensor(azimuth, dtype=leaves["distance"].dtype, device="cpu")
    )


def _weak(torch: Any) -> Callable[[dict[str, Any]], Any]:
    from backend.geometry import Camera

    rotation = torch.tensor([[0.9, 0.1, 0.3, 0.0], [0.7, -0.2, 0.5, 0.1]], device="cpu")
    return lambda leaves: Camera.weak_perspective(leaves["scale"], leaves["translation"], rotation)


def _cases(torch: Any) -> dict[str, dict[str, Any]]:
    from backend.render import Lighting

    scene = _scene(torch, 2, 2)
    textured = {
        "faces": scene["faces"], "uvs": scene["uvs"], "face_uvs": scene["face_uvs"],
        "lighting": Lighting(ambient=0.5, diffuse=0.5),
    }  # fmt: skip
    look_at_leaves = {
        "vertices": scene["vertices"], "texture": scene["texture"],
        "distance": torch.tensor([3.6, 4.2], device="cpu"),
    }  # fmt: skip
    weak_leaves = {
        "vertices": scene["vertices"],
        "scale": torch.tensor([0.9, 1.1], device="cpu"),
        "translation": torch.tensor([[0.0, 0.1], [0.05, 0.0]], device="cpu"),
    }
    small = _scene(torch, 1, 1)
    return {
        "look_at": {**textured, "size": 24, "sigma": 2e-4, "leaves": look_at_leaves,
                    "camera": _look_at(torch, [30.0, -110.0])},
        "weak": {"faces": scene["faces"], "vertex_colors": scene["colors"], "size": 20, "sigma": 3e-4,
                 "leaves": weak_leaves, "camera": _weak(torch)},
        "deterministic": {**textured, "size": 16, "sigma": 2e-4, "deterministic": True,
                          "leaves": look_at_leaves, "camera": _look_at(torch, [30.0, -110.0])},
        "hard": {**textured, "size": 16, "sigma": 2e-4, "soft": False, "leaves": look_at_leaves,
                 "camera": _look_at(torch, [30.0, -110.0])},
        "float64": {**textured, "size": 16, "sigma": 2e-4,
                    "leaves": {k: v.double() for k, v in look_at_leaves.items()},
                    "camera": _look_at(torch, [30.0, -110.0])},
        "off_screen": {"faces": small["faces"], "size": 16, "sigma": 2e-4,
                       "leaves": {"vertices": small["vertices"] + torch.tensor([9.0, 0.0, 0.0], device="cpu"),
                                  "distance": torch.tensor([3.0], device="cpu")},
                       "camera": _look_at(torch, [20.0])},
        "overflow": {**textured, "size": 16, "sigma": 2e-3, "k": 2, "leaves": look_at_leaves,
                     "camera": _look_at(torch, [30.0, -110.0])},
    }  # fmt: skip


def count_ops(torch: Any, backend: str, size: int, batch: int) -> dict[str, Any]:
    """Aten ops and host synchronisations of one render + backward (the benchmark's step)."""
    from backend.bench.render import count_render_ops

    return count_render_ops(backend, size, batch, torch.device("cpu"))


def _selection() -> dict[str, Any]:
    from backend.render.backends import select_backend

    auto, triton = select_backend("cpu", "auto"), select_backend("cpu", "triton")
    return {"auto": [auto.name, auto.reason], "triton": [triton.name, triton.reason]}


def main() -> None:
    os.environ["TRITON_INTERPRET"] = "1"
    import torch

    torch.set_num_threads(1)
    report: dict[str, Any] = {"cases": {}, "selection": _selection()}
    for name, case in _cases(torch).items():
        report["cases"][name] = _compare(torch, case)
    report["ops"] = {backend: count_ops(torch, backend, 16, 4) for backend in ("torch", "triton")}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
