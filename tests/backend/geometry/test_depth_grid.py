"""The depth-grid mesh (Unsup3d's export topology): counts, a consistently wound manifold facing the camera,
UVs on the image grid, and the reference's perspective camera (a flat depth is the plane z = -d whose
projection gives back the pixel centres; the corner pixels sit on the edge of the field of view)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from backend.geometry.depth_grid import (
    depth_grid_faces,
    depth_grid_uvs,
    depth_grid_vertices,
    grid_pixel_positions,
    num_grid_vertices,
    project_to_pixels,
)
from backend.geometry.ops import face_normals

SIZES = [(2, 2), (3, 5), (6, 4), (8, 8)]


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_counts_and_indices(height: int, width: int) -> None:
    faces = depth_grid_faces(height, width, "cpu")
    count = height * width + (height - 1) * (width - 1)
    assert num_grid_vertices(height, width) == count
    assert faces.shape == (4 * (height - 1) * (width - 1), 3) and faces.dtype == torch.int64
    assert int(faces.min()) == 0 and int(faces.max()) == count - 1
    assert depth_grid_uvs(height, width, "cpu").shape == (count, 2)
    assert depth_grid_vertices(torch.ones(2, height, width), 10.0).shape == (2, count, 3)
    # every face joins its cell's centre to two pixel corners of that cell
    for index, (centre, first, second) in enumerate(faces.tolist()):
        row, col = divmod(index // 4, width - 1)
        assert centre == height * width + row * (width - 1) + col
        corners = {
            row * width + col,
            row * width + col + 1,
            (row + 1) * width + col,
            (row + 1) * width + col + 1,
        }
        assert {first, second} <= corners and first != second


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_a_consistently_wound_manifold(height: int, width: int) -> None:
    """Each directed edge appears once (consistent winding); interior edges are shared by two faces and
    the outline has 2 (H - 1) + 2 (W - 1) edges."""
    faces = depth_grid_faces(height, width, "cpu").tolist()
    directed = Counter((a, b) for face in faces for a, b in zip(face, face[1:] + face[:1], strict=True))
    assert max(directed.values()) == 1
    undirected = Counter(frozenset(edge) for edge in directed)
    assert set(undirected.values()) <= {1, 2}
    assert sum(1 for value in undirected.values() if value == 1) == 2 * (height - 1) + 2 * (width - 1)


def test_faces_turn_counter_clockwise_towards_the_camera() -> None:
    """Outward normals (ops.face_normals, counter-clockwise) of a flat depth are +Z, and for any depth each
    face's normal points towards the camera at the origin."""
    flat = depth_grid_vertices(torch.full((1, 5, 7), 1.3), 10.0)
    faces = depth_grid_faces(5, 7, "cpu")
    normals = face_normals(flat, faces)  # (1, F, 3)
    torch.testing.assert_close(normals, torch.tensor([0.0, 0.0, 1.0]).expand_as(normals), atol=1e-5, rtol=0)
    generator = torch.Generator().manual_seed(0)
    bumpy = depth_grid_vertices(0.9 + 0.2 * torch.rand(3, 9, 9, generator=generator), 30.0)
    faces = depth_grid_faces(9, 9, "cpu")
    normals = face_normals(bumpy, faces)  # (3, F, 3)
    centroids = bumpy[:, faces].mean(2)  # (3, F, 3)
    assert ((normals * -centroids).sum(-1) > 0).all()


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_flat_depth_is_a_plane_whose_projection_gives_the_pixel_centres(height: int, width: int) -> None:
    depth = torch.full((2, height, width), 1.0, dtype=torch.float64)
    depth[1] = 0.75
    vertices = depth_grid_vertices(depth, 10.0)  # (2, N, 3)
    torch.testing.assert_close(vertices[0, :, 2], torch.full_like(vertices[0, :, 2], -1.0))
    torch.testing.assert_close(vertices[1, :, 2], torch.full_like(vertices[1, :, 2], -0.75))
    pixels, depths = project_to_pixels(vertices, height, width, 10.0)
    expected = grid_pixel_positions(height, width, "cpu", torch.float64)
    torch.testing.assert_close(pixels, expected.expand_as(pixels))
    torch.testing.assert_close(depths, -vertices[..., 2])
    # pixel (i, j) and the cell centres, written out
    for i in range(height):
        for j in range(width):
            assert expected[i * width + j].tolist() == [j, i]
    for i in range(height - 1):
        for j in range(width - 1):
            assert expected[height * width + i * (width - 1) + j].tolist() == [j + 0.5, i + 0.5]


def test_the_reference_camera_spans_the_field_of_view_between_corner_pixel_centres() -> None:
    """f = (W - 1) / 2 / tan(fov / 2): the top-left pixel centre is at x / d = -tan(fov / 2) (left) and
    y / d = +tan(fov / 2) (up: Y up, row 0 at the top); the bottom-right one at the opposite corner."""
    height, width, fov = 4, 6, 10.0
    vertices = depth_grid_vertices(torch.full((1, height, width), 2.0, dtype=torch.float64), fov)[0]
    tan = math.tan(math.radians(fov / 2))
    top_left, bottom_right = vertices[0], vertices[height * width - 1]
    torch.testing.assert_close(top_left, torch.tensor([-2 * tan, 2 * tan, -2.0], dtype=torch.float64))
    torch.testing.assert_close(bottom_right, torch.tensor([2 * tan, -2 * tan, -2.0], dtype=torch.float64))


def test_cell_centres_take_the_mean_corner_depth() -> None:
    generator = torch.Generator().manual_seed(1)
    depth = 0.9 + 0.2 * torch.rand(2, 4, 5, generator=generator, dtype=torch.float64)
    vertices = depth_grid_vertices(depth, 10.0)
    pixels, depths = project_to_pixels(vertices, 4, 5, 10.0)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                index = 20 + i * 4 + j
                mean = (depth[b, i, j] + depth[b, i, j + 1] + depth[b, i + 1, j] + depth[b, i + 1, j + 1]) / 4
                torch.testing.assert_close(depths[b, index], mean)
                torch.testing.assert_close(
                    pixels[b, index], torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64)
                )
        torch.testing.assert_close(depths[b, :20], depth[b].flatten())


def test_uvs_lie_on_the_image_grid_and_keep_the_winding() -> None:
    height, width = 3, 4
    uvs = depth_grid_uvs(height, width, "cpu")
    for i in range(height):
        for j in range(width):
            torch.testing.assert_close(
                uvs[i * width + j], torch.tensor([(j + 0.5) / width, 1 - (i + 0.5) / height])
            )
    for i in range(height - 1):
        for j in range(width - 1):
            centre = uvs[height * width + i * (width - 1) + j]
            torch.testing.assert_close(centre, torch.tensor([(j + 1) / width, 1 - (i + 1) / height]))
    # UV triangles turn counter-clockwise too (u right, v up), as the faces do seen from the camera
    corners = uvs[depth_grid_faces(height, width, "cpu")]  # (F, 3, 2)
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    assert (edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0] > 0).all()


def test_vertices_follow_the_depth_device_and_dtype_and_carry_gradients() -> None:
    depth = torch.full((1, 3, 3), 1.0, dtype=torch.float64, requires_grad=True)
    vertices = depth_grid_vertices(depth, 10.0)
    assert vertices.dtype == torch.float64
    vertices[0, -1, 2].backward()  # the last cell centre: -mean of its corners
    expected = torch.zeros(1, 3, 3, dtype=torch.float64)
    expected[0, 1:, 1:] = -0.25
    torch.testing.assert_close(depth.grad, expected)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 x 2"):
        depth_grid_faces(1, 4, "cpu")
    with pytest.raises(ValueError, match="fov"):
        depth_grid_vertices(torch.ones(1, 2, 2), 180.0)
