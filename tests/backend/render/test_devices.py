"""The renderer and cameras on every device: values and gradients against a float64 CPU reference, and
rendering under ``torch.autocast`` (float32 images, gradients reaching half-precision inputs)."""

from __future__ import annotations

import pytest
import torch

from backend.geometry import Camera
from backend.geometry.templates import icosphere_template
from backend.render import Lighting, RasterSettings, render
from tests.devices import AUTOCAST_DTYPES, CUDA, DEVICES

SETTINGS = RasterSettings(image_size=48, sigma=2e-4)
LIGHT = Lighting(ambient=0.5, diffuse=0.5)


def _scene(device: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A textured, slightly irregular icosphere (V = 642) and a random texture, on ``device``."""
    template = icosphere_template()
    generator = torch.Generator().manual_seed(0)
    mesh = template.mesh
    bumps = 1 + 0.08 * torch.rand(mesh.num_vertices, 1, generator=generator, device="cpu")
    texture = torch.rand(16, 32, 3, generator=generator, device="cpu")
    values = {
        "vertices": mesh.vertices * bumps * 0.8,
        "faces": mesh.faces,
        "uvs": mesh.uvs,
        "face_uvs": mesh.face_uvs,
        "texture": texture,
        "distance": torch.tensor([3.6, 4.2], device="cpu"),
    }
    floats = ("vertices", "uvs", "texture", "distance")
    return {k: v.to(device=device, dtype=dtype if k in floats else v.dtype) for k, v in values.items()}


def _render_with_grads(
    scene: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    leaves = {k: scene[k].clone().requires_grad_() for k in ("vertices", "texture", "distance")}
    camera = Camera.look_at(
        leaves["distance"], 25.0, torch.tensor([30.0, -110.0], device=leaves["distance"].device)
    )
    out = render(
        leaves["vertices"], scene["faces"], camera, SETTINGS, uvs=scene["uvs"], face_uvs=scene["face_uvs"],
        texture=leaves["texture"], lighting=LIGHT,
    )  # fmt: skip
    weights = torch.linspace(0.5, 1.5, out.rgb.numel(), device=out.rgb.device, dtype=out.rgb.dtype)
    loss = (out.rgb.flatten() * weights).sum() + (out.alpha * 3).sum() + out.depth.sum()
    loss.backward()
    images = {"rgb": out.rgb, "alpha": out.alpha, "face_index": out.face_index}
    return images, {k: v.grad for k, v in leaves.items() if v.grad is not None}


@pytest.mark.parametrize("device", DEVICES)
def test_render_on_the_device_matches_a_float64_cpu_reference(device: str) -> None:
    reference, reference_grads = _render_with_grads(_scene("cpu", torch.float64))
    images, grads = _render_with_grads(_scene(device, torch.float32))
    for name, image in images.items():
        assert image.device.type == device, name
    assert images["rgb"].dtype == torch.float32 and images["alpha"].dtype == torch.float32
    # the visible face differs only where two faces meet at a pixel centre (ties at float32 precision)
    same_face = (images["face_index"].cpu() == reference["face_index"]).float().mean()
    assert same_face > 0.998, same_face
    assert (images["rgb"].cpu().double() - reference["rgb"]).abs().max() < 5e-3
    assert (images["alpha"].cpu().double() - reference["alpha"]).abs().max() < 2e-3
    for name, expected in reference_grads.items():
        got = grads[name].cpu().double()
        assert got.device.type == "cpu" and grads[name].device.type == device
        relative = (got - expected).norm() / expected.norm()
        assert relative < 5e-3, (name, float(relative))


@pytest.mark.parametrize(("device", "dtype"), AUTOCAST_DTYPES)
def test_render_under_autocast_gives_float32_images_and_gradients(device: str, dtype: torch.dtype) -> None:
    scene = _scene(device, torch.float32)
    layer = torch.nn.Linear(3, 3).to(device)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(3, device=device))
        layer.bias.zero_()
    camera = Camera.look_at(2.6, 25.0, 30.0).to(device)
    plain = render(scene["vertices"], scene["faces"], camera, SETTINGS, uvs=scene["uvs"],
                   face_uvs=scene["face_uvs"], texture=scene["texture"])  # fmt: skip
    with torch.autocast(device, dtype=dtype):
        vertices = layer(scene["vertices"])  # half precision under autocast
        assert vertices.dtype == dtype
        texture = scene["texture"].to(dtype)
        out = render(vertices, scene["faces"], camera, SETTINGS, uvs=scene["uvs"], face_uvs=scene["face_uvs"],
                     texture=texture)  # fmt: skip
        loss = out.alpha.mean() + out.rgb.mean()
    assert (
        out.rgb.dtype == torch.float32
        and out.alpha.dtype == torch.float32
        and out.depth.dtype == torch.float32
    )
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert layer.weight.grad.abs().sum() > 0
    # the vertices were rounded to half precision once; the renderer itself adds no low-precision error
    tolerance = 0.1 if dtype == torch.bfloat16 else 0.02
    assert (out.alpha - plain.alpha).abs().mean() < tolerance * 0.1
    assert (out.rgb - plain.rgb).abs().mean() < tolerance


@pytest.mark.parametrize("device", DEVICES)
def test_cameras_put_their_float_parameters_on_the_device_of_their_tensors(device: str) -> None:
    distance = torch.tensor([2.0, 3.0], device=device)
    camera = Camera.look_at(distance, 30.0, torch.tensor([0.0, 90.0], device=device))
    assert {v.device.type for v in camera.tensors().values()} == {device}
    projected = camera.project(torch.zeros(2, 5, 3, device=device))
    assert projected.device.type == device and torch.isfinite(projected).all()
    weak = Camera.weak_perspective(
        0.8, torch.zeros(1, 2, device=device), torch.tensor([[1.0, 0, 0, 0]], device=device)
    )
    assert weak.weak.scale.device.type == device
    restored = Camera.from_dict(camera.to_dict(), device=device)
    assert restored.orbit.viewing_angle.device.type == device
    if device == "cuda" or not CUDA:
        return
    with pytest.raises(ValueError, match="different devices"):
        Camera.look_at(torch.tensor([2.0], device="cuda"), torch.tensor([30.0]), 0.0)
