"""``render(..., outputs="alpha")`` on the packed (torch) path: the same silhouette (bits and gradients)
as a full render, and a clear error for every image it did not make; the packed soft silhouette against
the direct ``1 - prod(1 - sigmoid)`` oracle. (On the CPU ``backend="auto"`` renders a soft silhouette
alone with the numba kernel: ``test_cpu_raster``.)"""

from __future__ import annotations

import pytest
import torch

from backend.geometry import Camera
from backend.geometry.templates import icosphere_template
from backend.render import RasterSettings, render
from backend.render.rasterize import rasterize


def _scene(batch: int) -> tuple[torch.Tensor, torch.Tensor, Camera]:
    mesh = icosphere_template(level=2).mesh
    azimuth = torch.arange(batch, dtype=torch.float32) * (360.0 / batch)
    camera = Camera.look_at(torch.full((batch,), 2.732), torch.full((batch,), 20.0), azimuth, 15.0)
    return mesh.vertices * 0.6, mesh.faces, camera


@pytest.mark.parametrize("soft", [True, False])
def test_alpha_only_gives_the_full_renders_alpha_and_gradient(soft: bool) -> None:
    vertices, faces, camera = _scene(3)
    settings = RasterSettings(image_size=48, soft=soft, backend="torch")
    results = []
    for outputs in ("all", "alpha"):
        points = vertices.clone().requires_grad_()
        alpha = render(points, faces, camera, settings, outputs=outputs).alpha
        weights = torch.linspace(0.5, 1.5, alpha.numel()).reshape(alpha.shape)
        if soft:  # the hard silhouette has no gradient
            (alpha * weights).sum().backward()
        results.append((alpha.detach(), points.grad))
    (alpha_all, grad_all), (alpha_only, grad_only) = results
    assert alpha_all.shape == (3, 48, 48, 1)
    assert torch.equal(alpha_only, alpha_all)
    assert alpha_all.sum() > 100  # the sphere covers a good part of the image
    if soft:
        assert grad_all is not None and grad_only is not None
        assert torch.equal(grad_only, grad_all)
        assert grad_all.abs().sum() > 0


def test_alpha_only_render_refuses_the_images_it_did_not_make() -> None:
    vertices, faces, camera = _scene(1)
    out = render(vertices, faces, camera, RasterSettings(image_size=16, backend="torch"), outputs="alpha")
    for name in ("rgb", "mask", "depth", "face_index", "barycentrics"):
        with pytest.raises(RuntimeError, match=f"RenderOutput.{name} was not produced"):
            getattr(out, name)
    assert not out.fragments.has_visible
    assert out.fragments.pixel.numel() == 0 and out.fragments.bary.shape == (0, 3)
    full = render(vertices, faces, camera, RasterSettings(image_size=16))
    assert full.fragments.has_visible and full.rgb.shape == (1, 16, 16, 3)


def test_render_rejects_unknown_outputs() -> None:
    vertices, faces, camera = _scene(1)
    with pytest.raises(ValueError, match="outputs must be one of"):
        render(vertices, faces, camera, RasterSettings(image_size=8), outputs="rgb")


def test_visible_free_rasterize_keeps_the_band_and_saturation() -> None:
    vertices, faces, camera = _scene(2)
    settings = RasterSettings(image_size=40, perspective_correct=True)
    ndc = camera.project(vertices.expand(2, -1, -1))
    full = rasterize(ndc, faces, settings)
    lean = rasterize(ndc, faces, settings, visible=False)
    for name in ("band_pixel", "band_face", "band_signed_sq_dist", "saturated"):
        assert torch.equal(getattr(lean, name), getattr(full, name)), name
    assert full.pixel.numel() > 0 and lean.pixel.numel() == 0


def test_soft_silhouette_matches_the_sigmoid_product_oracle() -> None:
    """The packed path's log-space sum against ``1 - prod_j (1 - sigmoid(x_j))`` summed directly."""
    vertices, faces, camera = _scene(1)
    settings = RasterSettings(image_size=32, backend="torch")
    out = render(
        vertices.double(), faces, camera.to(torch.device("cpu"), torch.float64), settings, outputs="alpha"
    )
    fragments = out.fragments
    coverage = torch.sigmoid(fragments.band_signed_sq_dist / settings.sigma)  # (E,)
    uncovered = torch.ones(fragments.num_pixels, dtype=torch.float64)
    for pixel, value in zip(fragments.band_pixel.tolist(), coverage.tolist(), strict=True):
        uncovered[pixel] *= 1.0 - min(value, 1.0 - 1e-7)
    expected = torch.where(fragments.saturated, 1.0, 1.0 - uncovered).reshape(1, 32, 32, 1)
    torch.testing.assert_close(out.alpha, expected, rtol=0, atol=1e-12)
    assert 0 < int((expected > 0.5).sum()) < 32 * 32


def test_alpha_only_render_is_the_same_bits_for_any_thread_count() -> None:
    """The fit's render (alpha alone) and its gradient do not depend on the thread count."""
    vertices, faces, camera = _scene(4)
    settings = RasterSettings(image_size=64)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        points = vertices.clone().requires_grad_()
        alpha = render(points, faces, camera, settings, outputs="alpha").alpha
        (alpha * alpha).sum().backward()
        assert points.grad is not None
        return alpha.detach(), points.grad

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        reference = run()
        for count in (2, 4):
            torch.set_num_threads(count)
            for got, expected in zip(run(), reference, strict=True):
                assert torch.equal(got, expected), count
    finally:
        torch.set_num_threads(previous)
