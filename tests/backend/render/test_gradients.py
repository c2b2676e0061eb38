"""Gradients of the renderer checked against finite differences (torch.autograd.gradcheck, float64), on
the packed PyTorch path and on the CPU's numba path."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.geometry import Camera
from backend.geometry.templates import icosphere_template
from backend.render import Lighting, RasterSettings, render
from tests.backend.render.numba_param import NUMBA

SETTINGS = RasterSettings(image_size=10, sigma=3e-2, dist_eps=1e-12)

# every test runs on the packed PyTorch path (the reference) and on the CPU's numba path
pytestmark = pytest.mark.parametrize("backend", ["torch", NUMBA])


def _settings(backend: str) -> RasterSettings:
    return replace(SETTINGS, backend=backend)


def _octahedron() -> tuple[torch.Tensor, torch.Tensor]:
    vertices = torch.tensor(
        [[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float64
    )
    faces = torch.tensor(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    )
    # an irregular shape, so no pixel centre sits on an edge
    return vertices * torch.tensor([0.62, 0.55, 0.47], dtype=torch.float64) + 0.013, faces


def _camera() -> Camera:
    rotation = torch.tensor([[0.95, 0.2, 0.25, 0.05]], dtype=torch.float64)
    return Camera.weak_perspective(
        torch.tensor([1.05], dtype=torch.float64),
        torch.tensor([[0.03, -0.02]], dtype=torch.float64),
        rotation,
    )


def _weights(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_soft_silhouette_gradient_to_vertices(backend: str) -> None:
    vertices, faces = _octahedron()
    weights = _weights(1, 10, 10, 1)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return (render(v, faces, _camera(), _settings(backend)).alpha * weights).sum()

    assert torch.autograd.gradcheck(loss, (vertices.requires_grad_(),), eps=1e-6, atol=1e-5)


def test_textured_rgb_gradient_to_vertices_and_texture(backend: str) -> None:
    vertices, faces = _octahedron()
    uvs = _weights(6, 2) * 0.8 + 0.1
    texture = _weights(5, 7, 3)
    weights = _weights(1, 10, 10, 3)

    def loss(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = render(v, faces, _camera(), _settings(backend), uvs=uvs, face_uvs=faces, texture=t)
        return (out.rgb * weights).sum()

    inputs = (vertices.requires_grad_(), texture.requires_grad_())
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5)


def test_lit_vertex_colour_gradient_to_vertices_and_colours(backend: str) -> None:
    vertices, faces = _octahedron()
    colors = _weights(6, 3)
    weights = _weights(1, 10, 10, 3)
    lighting = Lighting(ambient=0.4, diffuse=0.6, light_direction=(0.3, 0.5, 1.0))

    def loss(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = render(v, faces, _camera(), _settings(backend), vertex_colors=c, lighting=lighting)
        return (out.rgb * weights).sum()

    inputs = (vertices.requires_grad_(), colors.requires_grad_())
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5)


def test_gradient_to_weak_perspective_camera(backend: str) -> None:
    vertices, faces = _octahedron()
    weights = _weights(1, 10, 10, 1)

    def loss(scale: torch.Tensor, translation: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        camera = Camera.weak_perspective(scale, translation, rotation)
        return (render(vertices, faces, camera, _settings(backend)).alpha * weights).sum()

    params = _camera().tensors()
    inputs = tuple(params[k].clone().requires_grad_() for k in ("scale", "translation", "rotation"))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5)


def test_gradient_to_look_at_camera_and_depth(backend: str) -> None:
    vertices, faces = _octahedron()
    weights = _weights(1, 10, 10, 1)

    def loss(distance: torch.Tensor, elevation: torch.Tensor, azimuth: torch.Tensor) -> torch.Tensor:
        out = render(vertices, faces, Camera.look_at(distance, elevation, azimuth, 20.0), _settings(backend))
        return (out.alpha * weights).sum() + (out.depth * weights).sum()

    inputs = tuple(
        torch.tensor([value], dtype=torch.float64, requires_grad=True) for value in (2.6, 23.0, 37.0)
    )
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5)


def test_only_the_soft_silhouette_carries_silhouette_gradients(backend: str) -> None:
    vertices, faces = _octahedron()
    vertices = vertices.clone().requires_grad_()
    out = render(vertices, faces, _camera(), RasterSettings(backend=backend, image_size=32, sigma=1e-4))
    out.alpha.sum().backward()
    assert vertices.grad is not None and vertices.grad.abs().sum() > 0
    hard = render(vertices, faces, _camera(), RasterSettings(backend=backend, image_size=32, soft=False))
    assert not hard.alpha.requires_grad  # the hard mask carries no gradient
    assert torch.equal(hard.alpha, out.mask)


def test_gradients_are_the_same_bits_for_any_thread_count(backend: str) -> None:
    """On a CPU with 3+ threads the backward of advanced indexing (``index_put_`` with accumulate) adds
    with racing atomics; the renderer's gathers go through ``gather_rows``, so its gradients repeat
    bit for bit, whatever the thread count."""
    mesh = icosphere_template(level=3).mesh
    azimuth = torch.arange(8, dtype=torch.float32) * 45.0
    camera = Camera.look_at(torch.full((8,), 2.732), torch.tensor([30.0, -30.0] * 4), azimuth, 15.0)
    weights = torch.rand(8, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    colours = torch.rand(mesh.num_vertices, 3, generator=torch.Generator().manual_seed(1))
    lighting = Lighting(ambient=0.5, diffuse=0.5)

    def gradients() -> tuple[torch.Tensor, torch.Tensor]:
        vertices, colors = (mesh.vertices * 0.5).requires_grad_(), colours.clone().requires_grad_()
        out = render(
            vertices,
            mesh.faces,
            camera,
            RasterSettings(backend=backend, image_size=64),
            vertex_colors=colors,
            lighting=lighting,
        )
        ((out.rgb * weights).sum() + (out.alpha * weights[..., :1]).sum()).backward()
        assert vertices.grad is not None and colors.grad is not None
        return vertices.grad, colors.grad

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        reference = gradients()
        for count in (16, 16, 2):
            torch.set_num_threads(count)
            vertex_grad, colour_grad = gradients()
            assert torch.equal(vertex_grad, reference[0]), f"{count} threads"
            assert torch.equal(colour_grad, reference[1]), f"{count} threads"
    finally:
        torch.set_num_threads(previous)
