"""The hand-written pieces of the packed rasterizer's fast path, each against a plain oracle.

``segment_sq_dist_rows`` (hand-written backward) and ``barycentric_depth`` (flat columns) against
direct formulas, gradcheck and thread counts; the search's band pairs (nearest edge, inside flag)
against a brute-force loop over all edges; the whole render's outputs bit for bit across threads.
"""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry import Camera
from backend.geometry.ops import barycentric_depth, segment_sq_dist_rows
from backend.geometry.templates import icosphere_template
from backend.render import RasterSettings, render
from backend.render.search import search
from tests.backend.render.numba_param import NUMBA


def _segment_oracle(sx: float, sy: float, ex: float, ey: float, px: float, py: float) -> float:
    """Squared distance from a point to a segment, by sampling-free geometry in plain floats."""
    dx, dy = ex - sx, ey - sy
    length_sq = dx * dx + dy * dy
    t = 0.0 if length_sq == 0 else min(1.0, max(0.0, ((px - sx) * dx + (py - sy) * dy) / length_sq))
    return (px - sx - t * dx) ** 2 + (py - sy - t * dy) ** 2


def _segments(count: int, rows: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, generator=generator, dtype=dtype) * 2 - 1
    y = torch.rand(rows, generator=generator, dtype=dtype) * 2 - 1
    start = torch.randint(0, rows, (count,), generator=generator)
    end = (start + 1 + torch.randint(0, rows - 1, (count,), generator=generator)) % rows  # never start
    px = torch.rand(count, generator=generator, dtype=dtype) * 2 - 1
    py = torch.rand(count, generator=generator, dtype=dtype) * 2 - 1
    negate = torch.rand(count, generator=generator) < 0.5
    return x, y, start, end, px, py, negate


def test_segment_sq_dist_rows_matches_the_formula_with_signs() -> None:
    x, y, start, end, px, py, negate = _segments(200, 15, 0, torch.float64)
    got = segment_sq_dist_rows(x, y, start, end, px, py, negate)
    for i in range(200):
        s, e = int(start[i]), int(end[i])
        expected = _segment_oracle(
            float(x[s]), float(y[s]), float(x[e]), float(y[e]), float(px[i]), float(py[i])
        )
        assert math.isclose(float(got[i]), -expected if negate[i] else expected, rel_tol=1e-12, abs_tol=1e-15)


def test_segment_sq_dist_rows_gradient_matches_finite_differences() -> None:
    x, y, start, end, px, py, negate = _segments(60, 8, 1, torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b: segment_sq_dist_rows(a, b, start, end, px, py, negate),
        (x.requires_grad_(), y.requires_grad_()),
    )


def test_segment_sq_dist_rows_gradient_is_the_same_bits_for_any_thread_count() -> None:
    x, y, start, end, px, py, negate = _segments(200_000, 5000, 2, torch.float32)
    weights = torch.rand(200_000, generator=torch.Generator().manual_seed(3))

    def gradients() -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
        (segment_sq_dist_rows(a, b, start, end, px, py, negate) * weights).sum().backward()
        assert a.grad is not None and b.grad is not None
        return a.grad, b.grad

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        reference = gradients()
        for count in (2, 4):
            torch.set_num_threads(count)
            got = gradients()
            assert torch.equal(got[0], reference[0]) and torch.equal(got[1], reference[1]), count
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("perspective", [False, True])
def test_barycentric_depth_matches_a_linear_solve(perspective: bool) -> None:
    generator = torch.Generator().manual_seed(4)
    corners = torch.rand(50, 3, 2, generator=generator, dtype=torch.float64) * 2 - 1  # (N, 3, 2)
    depth = 1 + torch.rand(50, 3, generator=generator, dtype=torch.float64) * 3  # (N, 3)
    point = torch.rand(50, 2, generator=generator, dtype=torch.float64) * 2 - 1  # (N, 2)
    columns = [corners[:, k, 0] for k in range(3)], [corners[:, k, 1] for k in range(3)]
    bary, got_depth = barycentric_depth(
        *columns, [depth[:, k] for k in range(3)], point[:, 0], point[:, 1], perspective
    )
    # oracle: screen barycentrics l solve [x; y; 1] l = [px; py; 1]
    system = torch.cat([corners.transpose(1, 2), torch.ones(50, 1, 3, dtype=torch.float64)], dim=1)
    rhs = torch.cat([point, torch.ones(50, 1, dtype=torch.float64)], dim=1)
    screen = torch.linalg.solve(system, rhs)  # (N, 3)
    if perspective:
        weighted = screen / depth
        expected, expected_depth = weighted / weighted.sum(1, keepdim=True), 1 / weighted.sum(1)
    else:
        expected, expected_depth = screen, (screen * depth).sum(1)
    torch.testing.assert_close(bary, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got_depth, expected_depth, rtol=1e-9, atol=1e-9)
    corner_x = [c.clone().requires_grad_() for c in columns[0]]
    assert torch.autograd.gradcheck(
        lambda a, b, c: torch.cat(
            [
                t.flatten()
                for t in barycentric_depth(
                    [a, b, c],
                    columns[1],
                    [depth[:, k] for k in range(3)],
                    point[:, 0],
                    point[:, 1],
                    perspective,
                )
            ]
        ),
        tuple(corner_x),
    )


def _soup(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(count, 1, 2, generator=generator, dtype=torch.float64) * 1.6 - 0.8
    corners = centres + (torch.rand(count, 3, 2, generator=generator, dtype=torch.float64) - 0.5) * 0.6
    depth = 1.0 + torch.rand(count, 3, 1, generator=generator, dtype=torch.float64)
    return torch.cat([corners, depth], dim=2)[None], torch.arange(3 * count).reshape(count, 3)


def test_band_pairs_have_their_nearest_edge_and_inside_flag() -> None:
    """Every band pair's edge is the nearest of the face's three (brute force), its flag says whether
    the pixel centre is inside, and its distance lies within the band."""
    tri, _ = _soup(30, 5)
    size = 40
    settings = RasterSettings(image_size=size, sigma=2e-3, dist_eps=1e-6)
    found = search(tri, settings)
    assert found.band_face.numel() > 500
    band_px_sq = settings.band_sq_ndc * (size / 2) ** 2
    col = (tri[0, ..., 0] + 1) * size / 2 - 0.5  # (F, 3) corner columns in pixel-centre units
    row = (1 - tri[0, ..., 1]) * size / 2 - 0.5
    for i in range(0, found.band_face.numel(), 7):
        f, edge = int(found.band_face[i]), int(found.band_edge[i])
        px, py = float(found.band_col[i]), float(found.band_row[i])
        assert int(found.band_pixel[i]) == int(py) * size + int(px)
        distances = [
            _segment_oracle(
                float(col[f, k]),
                float(row[f, k]),
                float(col[f, (k + 1) % 3]),
                float(row[f, (k + 1) % 3]),
                px,
                py,
            )
            for k in range(3)
        ]
        assert distances[edge] <= min(distances) + 1e-9
        assert distances[edge] <= band_px_sq + 1e-9
        # inside <=> the point is on the inner side of all three edges (either orientation)
        sides = [
            (col[f, (k + 1) % 3] - col[f, k]) * (py - row[f, k])
            - (row[f, (k + 1) % 3] - row[f, k]) * (px - col[f, k])
            for k in range(3)
        ]
        inside = all(float(s) >= 0 for s in sides) or all(float(s) <= 0 for s in sides)
        assert bool(found.band_inside[i]) == inside


@pytest.mark.parametrize("backend", ["torch", NUMBA])
def test_render_is_the_same_bits_for_any_thread_count(backend: str) -> None:
    """Forward outputs, fragments and gradients of a batch large enough for parallel kernels."""
    mesh = icosphere_template(level=3).mesh
    azimuth = torch.arange(8, dtype=torch.float32) * 45.0
    camera = Camera.look_at(torch.full((8,), 2.732), torch.tensor([30.0, -30.0] * 4), azimuth, 15.0)
    texture = torch.rand(64, 128, 3, generator=torch.Generator().manual_seed(6))

    def run() -> list[torch.Tensor]:
        vertices = (mesh.vertices * 0.5).requires_grad_()
        out = render(
            vertices, mesh.faces, camera, RasterSettings(image_size=96, backend=backend), uvs=mesh.uvs,
            face_uvs=mesh.face_uvs, texture=texture,
        )  # fmt: skip
        (out.rgb.sum() + out.alpha.sum()).backward()
        fragments = out.fragments
        assert vertices.grad is not None
        return [
            out.rgb.detach(), out.alpha.detach(), fragments.band_pixel, fragments.band_face,
            fragments.band_signed_sq_dist.detach(), fragments.saturated, fragments.pixel, vertices.grad,
        ]  # fmt: skip

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
