"""The numba CPU soft silhouette (``backend.render.cpu_raster``) against the packed PyTorch path
(the reference), against finite differences, and as ``render``'s choice for CPU silhouettes rendered
alone; the backend choice and its fallback reasons."""

from __future__ import annotations

import pytest
import torch

from backend.geometry import Camera
from backend.geometry.templates import icosphere_template
from backend.render import RasterSettings, render
from backend.render import cpu_raster as cpu
from backend.render.backends import select_backend
from backend.render.rasterize import rasterize
from backend.render.shade import soft_silhouette

pytestmark = pytest.mark.skipif(cpu.numba_problem() is not None, reason=f"{cpu.numba_problem()}")


def _meshes(batch: int, dtype: torch.dtype, awkward: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, 3) NDC vertices of jittered spheres, one partly off the image; with ``awkward`` one face
    behind ``near`` and one of zero area (a sliver under any move: not for finite differences); (F, 3)
    faces."""
    mesh = icosphere_template(level=2).mesh
    generator = torch.Generator().manual_seed(3)
    base = mesh.vertices.to(dtype) * 0.7
    jitter = 0.04 * torch.randn(batch, *base.shape, generator=generator, dtype=dtype)
    vertices = base + jitter
    vertices[..., 2] += 2.0
    vertices[0, :, 0] += 0.6  # off the right edge
    faces = mesh.faces
    if not awkward:
        return vertices, faces
    vertices[:, faces[5], 2] = -1.0  # a face (and its neighbours' corners) behind the camera
    vertices[:, faces[9, 1]] = vertices[:, faces[9, 0]]  # a face of zero area
    return vertices, faces


def _packed(vertices: torch.Tensor, faces: torch.Tensor, settings: RasterSettings) -> torch.Tensor:
    return soft_silhouette(rasterize(vertices, faces, settings, visible=False), settings.sigma)


@pytest.mark.parametrize("size", [24, 96])
def test_matches_the_packed_path_values_and_gradients(size: int) -> None:
    vertices, faces = _meshes(3, torch.float64)
    settings = RasterSettings(image_size=size)
    weights = torch.rand(3, size, size, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for kernel in (_packed, cpu.cpu_soft_silhouette):
        points = vertices.clone().requires_grad_()
        alpha = kernel(points, faces, settings)
        (alpha * weights).sum().backward()
        assert points.grad is not None
        results.append((alpha.detach(), points.grad))
    (reference, reference_grad), (alpha, grad) = results
    assert alpha.shape == (3, size, size, 1) and alpha.dtype == torch.float64
    torch.testing.assert_close(alpha, reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-9, atol=1e-9)
    assert 0.05 < float((reference > 0.5).double().mean()) < 0.9  # the scenes cover part of the images
    assert float(reference_grad[..., :2].abs().sum()) > 1.0 and bool((grad[..., 2] == 0).all())


def test_float32_within_rounding_and_the_same_bits_every_run() -> None:
    vertices, faces = _meshes(2, torch.float32)
    settings = RasterSettings(image_size=64)
    # the float64 packed path: the float32 one is off by up to 0.055 next to the face behind the camera
    # here, where the kernel (float64 inside) stays within 3e-8
    reference = _packed(vertices.double(), faces, settings).float()
    runs = []
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            points = vertices.clone().requires_grad_()
            alpha = cpu.cpu_soft_silhouette(points, faces, settings)
            alpha.sum().backward()
            runs.append((alpha.detach(), points.grad))
        finally:
            torch.set_num_threads(previous)
    assert runs[0][0].dtype == torch.float32
    torch.testing.assert_close(runs[0][0], reference, rtol=0, atol=1e-6)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_gradient_against_finite_differences() -> None:
    vertices, faces = _meshes(1, torch.float64, awkward=False)
    settings = RasterSettings(image_size=10, sigma=3e-2, dist_eps=1e-12)  # a wide band: smooth everywhere
    weights = torch.rand(1, 10, 10, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(moved: torch.Tensor) -> torch.Tensor:
        return (cpu.cpu_soft_silhouette(moved, faces, settings) * weights).sum()

    assert torch.autograd.gradcheck(loss, (vertices.requires_grad_(),), eps=1e-6, atol=1e-5)


def test_render_on_the_numba_backend_matches_the_packed_path() -> None:
    mesh = icosphere_template(level=2).mesh
    camera = Camera.look_at(torch.full((2,), 2.732), torch.full((2,), 20.0), torch.tensor([0.0, 90.0]), 15.0)
    texture = torch.rand(32, 64, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    results = {}
    for backend in ("torch", "numba"):
        points = (mesh.vertices * 0.6).double().requires_grad_()
        colours = texture.clone().requires_grad_()
        settings = RasterSettings(image_size=32, backend=backend)
        out = render(points, mesh.faces, camera.to("cpu", torch.float64), settings, uvs=mesh.uvs,
                     face_uvs=mesh.face_uvs, texture=colours)  # fmt: skip
        (out.rgb.sum() + 2 * out.alpha.sum()).backward()
        alone = render(
            points.detach(), mesh.faces, camera.to("cpu", torch.float64), settings, outputs="alpha"
        )
        results[backend] = (out, alone, points.grad, colours.grad)
    (packed, packed_alone, packed_grad, packed_texture), (fast, fast_alone, grad, texture_grad) = (
        results["torch"],
        results["numba"],
    )
    torch.testing.assert_close(fast.rgb, packed.rgb, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast.alpha, packed.alpha, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast_alone.alpha, packed_alone.alpha, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, packed_grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(texture_grad, packed_texture, rtol=1e-12, atol=1e-12)
    assert torch.equal(fast.face_index, packed.face_index) and torch.equal(fast.mask, packed.mask)
    torch.testing.assert_close(fast.depth, packed.depth, rtol=0, atol=1e-12)
    # the numba fragments hold the visible surface only; a silhouette rendered alone makes none
    assert fast.fragments.band_pixel.numel() == 0 and packed.fragments.band_pixel.numel() > 0
    assert fast_alone.raster is None and packed_alone.raster is not None
    with pytest.raises(RuntimeError, match="numba CPU kernel, which makes no fragments"):
        _ = fast_alone.fragments
    hard = RasterSettings(image_size=32, soft=False, backend="numba")
    hard_packed = RasterSettings(image_size=32, soft=False, backend="torch")
    assert torch.equal(
        render(mesh.vertices, mesh.faces, camera, hard).alpha,
        render(mesh.vertices, mesh.faces, camera, hard_packed).alpha,
    )
    with pytest.raises(ValueError, match="NaN or infinite"):
        render(
            mesh.vertices * float("nan"), mesh.faces, camera, RasterSettings(image_size=8), outputs="alpha"
        )


def test_visible_search_matches_the_packed_one_on_awkward_meshes() -> None:
    vertices, faces = _meshes(3, torch.float64)
    for perspective in (False, True):
        settings = RasterSettings(image_size=40, perspective_correct=perspective)
        packed = rasterize(vertices, faces, settings)
        fast = rasterize(vertices, faces, settings, compiled=True)
        assert torch.equal(fast.pixel, packed.pixel) and torch.equal(fast.face, packed.face)
        torch.testing.assert_close(fast.bary, packed.bary, rtol=0, atol=0)
        assert fast.band_pixel.numel() == 0 and not bool(fast.saturated.any())


def test_faces_far_outside_the_image_are_skipped_safely() -> None:
    """Corners at +-1e25 (beyond the int range in pixels) give clamped boxes, not wild indices."""
    vertices, faces = _meshes(1, torch.float64, awkward=False)
    settings = RasterSettings(image_size=24)
    for axis, offset in ((0, 1e25), (1, -1e25)):  # the whole mesh far off the image
        away = vertices.clone()
        away[..., axis] += offset
        assert not bool(cpu.cpu_soft_silhouette(away, faces, settings).any())
        assert rasterize(away, faces, settings, compiled=True).pixel.numel() == 0
    # faces stretched from the mesh to 1e25: their edge functions lose all precision (in both paths),
    # but the loops stay inside the image and give finite coverage
    stretched = vertices.clone()
    stretched[0, faces[3], 0] = 1e25
    stretched[0, faces[11]] = torch.tensor([-1e25, 1e25, 2.0], dtype=torch.float64)
    alpha = cpu.cpu_soft_silhouette(stretched, faces, settings)
    assert bool(torch.isfinite(alpha).all()) and float(alpha.min()) >= 0 and float(alpha.max()) <= 1
    found = rasterize(stretched, faces, settings, compiled=True)
    assert int(found.pixel.max()) < 24 * 24 and bool(torch.isfinite(found.bary).all())


def test_backend_choice_and_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    for requested, reason in (("auto", "CPU with numba"), ("numba", "requested")):
        choice = select_backend("cpu", requested)
        assert (choice.name, choice.reason) == ("numba", reason)
    assert select_backend("cpu", "torch").name == "torch"
    with pytest.raises(RuntimeError, match=r"backend 'numba' cannot run on cuda.*run on the CPU"):
        select_backend("cuda", "numba")
    monkeypatch.setattr(cpu, "numba_problem", lambda: "numba does not import (No module named 'numba')")
    choice = select_backend("cpu", "auto")
    assert (choice.name, choice.reason) == ("torch", "numba does not import (No module named 'numba')")
    with pytest.raises(RuntimeError, match="No module named 'numba'"):
        select_backend("cpu", "numba")


def test_refuses_what_it_cannot_render() -> None:
    vertices, faces = _meshes(1, torch.float32)
    with pytest.raises(ValueError, match="soft one"):
        cpu.cpu_soft_silhouette(vertices, faces, RasterSettings(image_size=8, soft=False))
    with pytest.raises(ValueError, match="CPU tensors"):
        cpu.cpu_soft_silhouette(vertices.to("meta"), faces, RasterSettings(image_size=8))
