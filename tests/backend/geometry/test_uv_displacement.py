"""Tests for backend.geometry.uv_displacement: a naive per-vertex oracle, round trips, symmetry, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry.templates import icosphere_template, uv_sphere_template
from backend.geometry.uv_displacement import UvDisplacement
from tests.devices import DEVICES


@pytest.fixture(scope="module")
def mapping() -> UvDisplacement:
    return UvDisplacement(uv_sphere_template(), map_size=32)


def _naive_vertices(positions: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Per-vertex loop in Python floats: spherical topo position, hand bilinear sample, hand frame."""
    size = displacement.shape[-1]
    out = []
    for x, y, z in positions.tolist():
        pole = abs(x) < 1e-6 and abs(z) < 1e-6
        u = 0.5 if pole else (0.5 + math.atan2(x, z) / (2 * math.pi)) % 1.0
        if abs(x) < 1e-6 and z < -1e-6:
            u = 0.0  # the back seam
        v = 0.5 + math.asin(max(-1.0, min(1.0, y))) / math.pi
        column = u * size - 0.5
        row = min(max((1 - v) * size - 0.5, 0.0), size - 1.0)
        c0, r0 = math.floor(column), min(math.floor(row), size - 2)
        fx, fy = column - c0, row - r0
        sample = [0.0, 0.0, 0.0]
        for dr, dc, w in (
            (0, 0, (1 - fy) * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)),
            (1, 1, fy * fx),
        ):
            for channel in range(3):
                sample[channel] += w * float(displacement[channel, r0 + dr, (c0 + dc) % size])
        norm = math.sqrt(x * x + y * y + z * z)
        n = (x / norm, y / norm, z / norm)
        t = (-n[2], 0.0, n[0])  # n x (0, 1, 0)
        length = math.hypot(t[0], t[2])
        t = (1.0, 0.0, 0.0) if length < 1e-8 else (t[0] / length, 0.0, t[2] / length)
        b = (n[1] * t[2] - n[2] * t[1], n[2] * t[0] - n[0] * t[2], n[0] * t[1] - n[1] * t[0])
        out.append(
            [p + sample[0] * n[k] + sample[1] * t[k] + sample[2] * b[k] for k, p in enumerate((x, y, z))]
        )
    return torch.tensor(out, dtype=torch.float64)


def _smooth_vertices(base: torch.Tensor) -> torch.Tensor:
    """(1, V, 3) a smooth, asymmetric deformation of the unit sphere ``base`` (V, 3)."""
    x, y, z = base.unbind(dim=1)
    return torch.stack([1.5 * x + 0.1 * y, 0.8 * y + 0.1 * x**2, 1.2 * z + 0.2 * y * z], dim=1)[None]


def test_zero_map_gives_the_template_exactly(mapping: UvDisplacement) -> None:
    vertices = mapping.vertices(torch.zeros(2, 3, 32, 32))
    assert vertices.shape == (2, 482, 3)
    assert torch.equal(vertices[1], mapping.template.mesh.vertices)


def test_vertices_match_a_naive_per_vertex_loop(mapping: UvDisplacement) -> None:
    displacement = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = _naive_vertices(mapping.template.mesh.vertices.double(), displacement[0])
    torch.testing.assert_close(
        mapping.vertices(displacement)[0], expected, atol=2e-5, rtol=0
    )  # float32 frame


def test_topo_positions_follow_the_reference_uv_convention(mapping: UvDisplacement) -> None:
    positions = mapping.template.mesh.vertices.double()
    v = torch.asin(positions[:, 1].clamp(-1, 1)) / math.pi + 0.5
    torch.testing.assert_close(mapping.topo[:, 1], v, atol=1e-6, rtol=0)
    assert mapping.topo[0].tolist() == [0.5, 1.0]  # north pole
    seam = (positions[:, 0].abs() < 1e-6) & (positions[:, 2] < -1e-6)
    assert int(seam.sum()) == 15 and bool((mapping.topo[seam, 0] == 0).all())
    frame = mapping.frame.double()
    gram = torch.einsum("cvk,dvk->vcd", frame, frame)
    torch.testing.assert_close(gram, torch.eye(3, dtype=torch.float64).expand_as(gram), atol=1e-6, rtol=0)


def test_to_map_round_trips_smooth_vertices(mapping: UvDisplacement) -> None:
    target = _smooth_vertices(mapping.template.mesh.vertices)
    displacement = mapping.to_map(target)
    assert displacement.shape == (1, 3, 32, 32)
    torch.testing.assert_close(mapping.vertices(displacement), target, atol=1e-3, rtol=0)
    # a map that came from vertices() comes back from to_map(vertices(map)) up to unread texels
    again = mapping.to_map(mapping.vertices(displacement))
    torch.testing.assert_close(mapping.vertices(again), mapping.vertices(displacement), atol=1e-4, rtol=0)


def test_unread_texels_stay_finite_and_bounded(mapping: UvDisplacement) -> None:
    target = _smooth_vertices(mapping.template.mesh.vertices)
    displacement = mapping.to_map(target)
    offsets = (target - mapping.template.mesh.vertices).norm(dim=-1)
    assert bool(torch.isfinite(displacement).all())
    assert float(displacement.abs().max()) <= float(offsets.max()) * 1.5


def test_symmetric_maps_give_symmetric_vertices(mapping: UvDisplacement) -> None:
    template = mapping.template
    displacement = mapping.symmetrize(torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(mapping.symmetrize(displacement), displacement)  # a projection
    vertices = mapping.vertices(displacement)  # (3, V, 3)
    mirrored = vertices[:, template.mirror_index] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(vertices, mirrored, atol=1e-5, rtol=0)
    assert float(vertices[:, template.plane_index, 0].abs().max()) < 1e-5


def test_mirror_map_gives_the_mirrored_mesh(mapping: UvDisplacement) -> None:
    displacement = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    vertices = mapping.vertices(displacement)[0]
    mirrored = mapping.vertices(mapping.mirror(displacement))[0]
    expected = vertices[mapping.template.mirror_index] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirrored, expected, atol=1e-5, rtol=0)


def test_symmetric_vertices_map_to_a_nearly_symmetric_map(mapping: UvDisplacement) -> None:
    target = _smooth_vertices(mapping.template.mesh.vertices)
    symmetric = (target + target[:, mapping.template.mirror_index] * torch.tensor([-1.0, 1.0, 1.0])) / 2
    displacement = mapping.to_map(symmetric)
    torch.testing.assert_close(mapping.symmetrize(displacement), displacement, atol=1e-4, rtol=0)


def test_gradcheck_in_float64_on_a_tiny_map() -> None:
    tiny = UvDisplacement(uv_sphere_template(segments=4, rings=3), map_size=4)
    displacement = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tiny.vertices, (displacement,))
    assert torch.autograd.gradcheck(tiny.symmetrize, (displacement,))
    vertices = torch.randn(2, tiny.num_vertices, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tiny.to_map, (vertices,))


def test_other_templates_and_sizes_work() -> None:
    mapping = UvDisplacement(icosphere_template(2), map_size=16)
    assert mapping.num_vertices == 162 and mapping.map_size == 16
    target = _smooth_vertices(mapping.template.mesh.vertices)
    error = (mapping.vertices(mapping.to_map(target)) - target).abs().max()
    assert float(error) < 0.02


def test_bad_arguments_are_refused(mapping: UvDisplacement) -> None:
    with pytest.raises(ValueError, match="map_size"):
        UvDisplacement(uv_sphere_template(), map_size=1)
    with pytest.raises(ValueError, match="smoothness"):
        UvDisplacement(uv_sphere_template(), smoothness=0.0)
    with pytest.raises(ValueError, match=r"displacement must have shape \(B, 3, 32, 32\)"):
        mapping.vertices(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"vertices must have shape \(B, 482, 3\)"):
        mapping.to_map(torch.zeros(482, 3))


@pytest.mark.parametrize("device", DEVICES)
def test_moves_to_a_device(mapping: UvDisplacement, device: str) -> None:
    moved = mapping.to(device)
    assert moved.device.type == device and moved.template.mesh.vertices.device.type == device
    displacement = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)).to(device)
    vertices = moved.vertices(displacement)
    assert vertices.device.type == device
    torch.testing.assert_close(vertices.cpu(), mapping.vertices(displacement.cpu()), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        moved.to_map(vertices).cpu(), mapping.to_map(vertices.cpu()), atol=1e-4, rtol=0
    )
