"""The vectorised rasterizer against the naive per-pixel loop, and its input checks."""

from __future__ import annotations

import pytest
import torch

from backend.geometry import Camera
from backend.render import RasterSettings, rasterize, render
from backend.render.shade import hard_silhouette, soft_silhouette, to_image
from tests.backend.render.naive import naive_rasterize


def _triangle_soup(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(count, 1, 2, generator=generator) * 1.6 - 0.8
    corners = centres + (torch.rand(count, 3, 2, generator=generator) - 0.5) * 0.9
    depth = 1.0 + torch.rand(count, 3, 1, generator=generator) * 2.0
    vertices = torch.cat([corners, depth], dim=2).reshape(-1, 3)  # (3 * count, 3)
    faces = torch.arange(3 * count).reshape(count, 3)
    return vertices, faces


def _octahedron() -> tuple[torch.Tensor, torch.Tensor]:
    vertices = torch.tensor(
        [[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float32
    )
    faces = torch.tensor(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    )
    return vertices * 0.7, faces


def _dense(fragments, settings):
    face_index = to_image(fragments, fragments.face[:, None].float(), -1.0)[0, ..., 0].long()
    return {
        "face_index": face_index,
        "bary": to_image(fragments, fragments.bary)[0],
        "depth": to_image(fragments, fragments.depth[:, None])[0, ..., 0],
        "soft": soft_silhouette(fragments, settings.sigma)[0, ..., 0],
        "hard": hard_silhouette(fragments)[0, ..., 0],
    }


@pytest.mark.parametrize("perspective", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_triangle_soup_matches_naive_loop(seed: int, perspective: bool) -> None:
    vertices, faces = _triangle_soup(10, seed)
    settings = RasterSettings(image_size=20, sigma=2e-3, dist_eps=1e-9, perspective_correct=perspective)
    fragments = rasterize(vertices[None].double(), faces, settings)
    ours = _dense(fragments, settings)
    oracle = naive_rasterize(vertices, faces, 20, settings.sigma, perspective)
    assert torch.equal(ours["face_index"], oracle["face_index"])
    assert torch.equal(ours["hard"] > 0, oracle["face_index"] >= 0)
    torch.testing.assert_close(ours["bary"], oracle["bary"], atol=1e-9, rtol=0)
    torch.testing.assert_close(ours["depth"], oracle["depth"], atol=1e-9, rtol=0)
    torch.testing.assert_close(ours["soft"], oracle["soft"], atol=1e-7, rtol=0)
    assert 0.05 < float(oracle["soft"].mean()) < 0.95  # the case is not trivially empty or full


@pytest.mark.parametrize("kind", ["weak_perspective", "look_at"])
def test_closed_mesh_through_camera_matches_naive_loop(kind: str) -> None:
    vertices, faces = _octahedron()
    if kind == "weak_perspective":
        camera = Camera.weak_perspective(
            1.0, torch.tensor([[0.1, -0.05]]), torch.tensor([[0.9, 0.3, 0.2, 0.1]])
        )
    else:
        camera = Camera.look_at(2.5, 25.0, 40.0, 20.0)
    settings = RasterSettings(image_size=24, sigma=1e-3, dist_eps=1e-9)
    camera = camera.to("cpu", torch.float64)
    out = render(vertices.double(), faces, camera, settings)
    oracle = naive_rasterize(
        camera.project(vertices.double())[0], faces, 24, settings.sigma, kind == "look_at"
    )
    assert torch.equal(out.face_index[0], oracle["face_index"])
    torch.testing.assert_close(out.depth[0, ..., 0], oracle["depth"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.alpha[0, ..., 0], oracle["soft"], atol=1e-6, rtol=0)


def test_default_cutoff_stays_within_dist_eps_of_exact_silhouette() -> None:
    vertices, faces = _octahedron()
    camera = Camera.look_at(2.5, 25.0, 40.0, 20.0)
    settings = RasterSettings(image_size=24, sigma=1e-3, dist_eps=1e-4)
    out = render(vertices, faces, camera, settings)
    oracle = naive_rasterize(camera.project(vertices)[0], faces, 24, settings.sigma, True)
    error = (out.alpha[0, ..., 0].double() - oracle["soft"]).abs().max()
    # each face left out of a pixel (coverage < dist_eps) or saturated pixel moves it by < dist_eps;
    # the octahedron has 8 faces
    assert error < 8 * settings.dist_eps


def test_batch_renders_like_separate_renders() -> None:
    vertices, faces = _octahedron()
    batch = torch.stack([vertices, vertices * 0.5, vertices.flip(1)])  # (3, V, 3)
    camera = Camera.look_at(
        torch.tensor([2.0, 2.5, 3.0]), torch.tensor([0.0, 30.0, -20.0]), torch.tensor([10.0, 100.0, 250.0])
    )
    settings = RasterSettings(image_size=32, sigma=1e-4)
    together = render(batch, faces, camera, settings)
    for i in range(3):
        alone = render(batch[i], faces, camera[i], settings)
        assert torch.equal(together.face_index[i], alone.face_index[0])
        torch.testing.assert_close(together.alpha[i], alone.alpha[0])


def test_camera_behind_and_offscreen_faces_are_skipped() -> None:
    vertices, faces = _triangle_soup(4, 3)
    vertices[0:3, 2] = -1.0  # first face behind the camera
    vertices[3:6, :2] += 5.0  # second face far outside the image
    settings = RasterSettings(image_size=16)
    fragments = rasterize(vertices[None], faces, settings)
    assert not ((fragments.face == 0) | (fragments.face == 1)).any()
    assert not ((fragments.band_face == 0) | (fragments.band_face == 1)).any()


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        (torch.zeros(1, 3, 3), torch.tensor([[0, 1, 3]]), "only 3 vertices"),
        (torch.zeros(1, 3, 3), torch.tensor([[0, -1, 2]]), "negative index"),
        (torch.full((1, 3, 3), float("nan")), torch.tensor([[0, 1, 2]]), "NaN"),
        (torch.zeros(1, 0, 3), torch.tensor([[0, 1, 2]]), "empty"),
        (torch.zeros(1, 3, 3), torch.zeros(0, 3, dtype=torch.long), "empty"),
        (torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), r"\(B, V, 3\)"),
        (torch.zeros(1, 3, 3), torch.tensor([[0.0, 1.0, 2.0]]), "integer"),
    ],
)
def test_bad_meshes_raise_value_error(vertices: torch.Tensor, faces: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rasterize(vertices, faces, RasterSettings(image_size=8))


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((64, 32), "square"),
        ((64, 64), "must be an int"),
        (0, "1..8192"),
        (-3, "1..8192"),
        (2.5, "positive int"),
    ],
)
def test_bad_render_targets_raise_value_error(size: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RasterSettings(image_size=size)  # type: ignore[arg-type]


def test_mismatched_batches_raise_value_error() -> None:
    vertices, faces = _octahedron()
    camera = Camera.look_at(torch.tensor([2.0, 3.0]), 0.0, 0.0)
    with pytest.raises(ValueError, match="do not match a batch of 2 cameras"):
        render(torch.stack([vertices] * 3), faces, camera, RasterSettings(image_size=8))
    uvs = torch.zeros(6, 2)
    with pytest.raises(ValueError, match="texture batch 3 does not match the render batch 2"):
        render(
            vertices,
            faces,
            camera,
            RasterSettings(image_size=8),
            uvs=uvs,
            face_uvs=faces,
            texture=torch.zeros(3, 4, 4, 3),
        )
