"""Reliefs from depth maps (``backend.meshing.relief``, ``backend.meshing.depth_relief``): the grid's
topology kept or cut, closing by a plane or a mirrored back, watertight by an edge count, outward normals,
pinches removed, the parallel reading's front projection.

Depth maps are made by hand: a flat one, a dome, a tilted ramp.
"""

from __future__ import annotations

import math

import pytest
import torch

from backend.geometry.depth_grid import depth_grid_faces, depth_grid_uvs, num_grid_vertices
from backend.geometry.ops import face_normals
from backend.meshing.depth_relief import ParallelFrame, back_depths, relief_mesh
from backend.meshing.relief import boundary_edges, close_relief, manifold_keep, pinch_vertices

FOV = 10.0
GAP = 0.01


def dome(height: int = 12, width: int = 12) -> torch.Tensor:
    """(H, W) depth: 0.92 at the centre rising to 1.06 at the corners."""
    rows = torch.linspace(-1, 1, height)[:, None]
    cols = torch.linspace(-1, 1, width)[None, :]
    return 0.92 + 0.07 * (rows**2 + cols**2)


def texture(size: int = 16) -> torch.Tensor:
    return torch.rand(size, size, 3, generator=torch.Generator().manual_seed(0))


def edge_counts(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Uses of each undirected edge, and of each directed edge."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, undirected = torch.unique(edges.sort(dim=1).values, dim=0, return_counts=True)
    _, directed = torch.unique(edges, dim=0, return_counts=True)
    return undirected, directed


def assert_watertight(vertices: torch.Tensor, faces: torch.Tensor) -> None:
    """Every undirected edge used twice, every directed edge once, positive enclosed volume."""
    undirected, directed = edge_counts(faces)
    assert bool((undirected == 2).all()) and bool((directed == 1).all())
    corners = vertices[faces].double()  # (F, 3, 3)
    volume = torch.linalg.det(corners).sum() / 6  # divergence theorem: > 0 when normals point outwards
    assert float(volume) > 0


def disc_keep(height: int, width: int, radius: float) -> torch.Tensor:
    """(F,) the grid's faces whose corners all lie within ``radius`` (pixels) of the image centre."""
    faces = depth_grid_faces(height, width, "cpu")
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    inside = ((rows - (height - 1) / 2) ** 2 + (cols - (width - 1) / 2) ** 2).flatten() <= radius**2
    inside = torch.cat([inside, torch.ones((height - 1) * (width - 1), dtype=torch.bool)])
    return inside[faces].all(dim=1)


def test_open_grid_keeps_the_grid_topology_and_uvs() -> None:
    depth = dome(8, 10)
    frame = ParallelFrame(8, 10, FOV)
    faces = depth_grid_faces(8, 10, "cpu")
    keep = torch.ones(faces.shape[0], dtype=torch.bool)
    mesh, relief = relief_mesh(depth, keep, texture(), frame, "none", GAP)
    assert mesh.num_vertices == num_grid_vertices(8, 10) == 8 * 10 + 7 * 9
    assert mesh.num_faces == 4 * 7 * 9 and not relief.closed
    assert torch.equal(mesh.faces, faces) and torch.equal(mesh.face_uvs, faces)
    assert torch.equal(mesh.uvs, depth_grid_uvs(8, 10, "cpu"))
    # the front faces the camera (+z), and nearer is +z: the dome's centre is its highest point
    assert bool((face_normals(mesh.vertices, mesh.faces)[:, 2] > 0).all())
    assert int(mesh.vertices[:80, 2].argmax()) in (3 * 10 + 4, 3 * 10 + 5, 4 * 10 + 4, 4 * 10 + 5)


def test_parallel_frame_puts_pixel_centres_on_the_unit_square() -> None:
    frame = ParallelFrame(4, 6, FOV, centre_depth=1.0)
    depths = torch.full((num_grid_vertices(4, 6),), 1.0)
    positions = frame.positions(depths)
    assert frame.scale == pytest.approx(1 / math.tan(math.radians(5.0)))
    torch.testing.assert_close(positions[:6, 0], torch.linspace(-1, 1, 6))
    torch.testing.assert_close(positions[:24:6, 1], torch.linspace(1, -1, 4))
    assert bool((positions[:, 2] == 0).all())
    # the front view's scale maps pixel centre j to its crop NDC (2 j + 1) / W - 1
    s_x, s_y = frame.front_scale
    torch.testing.assert_close(s_x * positions[:6, 0], (2 * torch.arange(6.0) + 1) / 6 - 1)
    torch.testing.assert_close(s_y * positions[:24:6, 1], 1 - (2 * torch.arange(4.0) + 1) / 4)
    # lateral positions do not depend on the depth (parallel rays); z does, scaled like x and y
    deeper = frame.positions(torch.full_like(depths, 1.1))
    torch.testing.assert_close(deeper[:, :2], positions[:, :2])
    torch.testing.assert_close(deeper[:, 2], torch.full_like(depths, -0.1 * frame.scale))


@pytest.mark.parametrize("close", ["mirror", "plane"])
def test_closing_the_whole_grid_is_watertight(close: str) -> None:
    height, width = 9, 7
    depth = dome(height, width)
    frame = ParallelFrame(height, width, FOV)
    keep = torch.ones(4 * (height - 1) * (width - 1), dtype=torch.bool)
    mesh, relief = relief_mesh(depth, keep, texture(), frame, close, GAP)  # type: ignore[arg-type]
    n = num_grid_vertices(height, width)
    rim = 2 * (2 * (height - 1) + 2 * (width - 1))  # two triangles per boundary edge of the grid
    assert (mesh.num_vertices, relief.front_vertices) == (2 * n, n)
    assert mesh.num_faces == 2 * 4 * (height - 1) * (width - 1) + rim and relief.rim_faces == rim
    assert_watertight(mesh.vertices, mesh.faces)
    front, back = mesh.vertices[:n], mesh.vertices[n:]
    torch.testing.assert_close(back[:, :2], front[:, :2])  # straight behind: the outline is the front's
    plane = (frame.centre_depth - (float(depth.max()) + GAP)) * frame.scale
    if close == "plane":
        torch.testing.assert_close(back[:, 2], torch.full((n,), plane))
    else:
        torch.testing.assert_close(front[:, 2] + back[:, 2], torch.full((n,), 2 * plane))
    assert bool((back[:, 2] < front[:, 2]).all())
    # twins share their front vertex's UV: the back shows the front's texture through the object
    torch.testing.assert_close(mesh.uvs[mesh.face_uvs[relief.front_faces : 2 * relief.front_faces]],
                               mesh.uvs[mesh.face_uvs[: relief.front_faces]][:, [0, 2, 1]])  # fmt: skip


@pytest.mark.parametrize("close", ["none", "mirror", "plane"])
def test_a_disc_cut_is_a_sphere_topologically(close: str) -> None:
    height = width = 16
    keep = disc_keep(height, width, 6.0)
    mesh, relief = relief_mesh(dome(height, width), keep, texture(), ParallelFrame(height, width, FOV),
                               close, GAP)  # type: ignore[arg-type]  # fmt: skip
    assert relief.front_faces == int(keep.sum())  # a disc has no pinches
    undirected, _ = edge_counts(mesh.faces)
    euler = mesh.num_vertices - undirected.numel() + mesh.num_faces
    if close == "none":
        assert euler == 1 and boundary_edges(mesh.faces).shape[0] > 0  # a disc: one boundary loop
    else:
        assert euler == 2  # a sphere
        assert_watertight(mesh.vertices, mesh.faces)
        assert relief.rim_faces == 2 * boundary_edges(mesh.faces[: relief.front_faces]).shape[0]


def test_pinches_are_dropped_before_closing() -> None:
    height = width = 4
    faces = depth_grid_faces(height, width, "cpu")
    cells = torch.zeros(3, 3, dtype=torch.bool)
    cells[0, 0] = cells[1, 1] = cells[2, 2] = True  # three cells touching corner to corner only
    keep = cells.flatten().repeat_interleave(4)
    assert pinch_vertices(faces[keep], 25).tolist() == [5, 10]  # pixels (1, 1) and (2, 2)
    kept = manifold_keep(faces, keep)
    assert pinch_vertices(faces[kept], 25).numel() == 0
    # the triangles touching a pinch went: the middle cell whole, two of each outer cell's four
    assert kept.reshape(3, 3, 4).sum(dim=2).tolist() == [[2, 0, 0], [0, 0, 0], [0, 0, 2]]
    front = ParallelFrame(height, width, FOV).positions(torch.ones(25))
    back = front - torch.tensor([0.0, 0.0, 1.0])
    relief = close_relief(front, back, faces, keep)
    assert_watertight(relief.vertices, relief.faces)


def test_back_depths_and_errors() -> None:
    depths = torch.tensor([0.9, 1.0, 1.05, 1.2])
    used = torch.tensor([True, True, True, False])  # the 1.2 is cut away: far is 1.05
    assert back_depths(depths, used, "none", GAP) is None
    torch.testing.assert_close(back_depths(depths, used, "plane", 0.05), torch.full((4,), 1.1))
    torch.testing.assert_close(back_depths(depths, used, "mirror", 0.05), torch.tensor([1.3, 1.2, 1.15, 1.0]))
    with pytest.raises(ValueError, match="gap must be positive"):
        back_depths(depths, used, "plane", 0.0)
    faces = depth_grid_faces(3, 3, "cpu")
    with pytest.raises(ValueError, match="no face is left"):
        relief_mesh(dome(3, 3), torch.zeros(16, dtype=torch.bool), texture(), ParallelFrame(3, 3, FOV),
                    "mirror", GAP)  # fmt: skip
    with pytest.raises(ValueError, match="edge-manifold"):
        boundary_edges(torch.cat([faces, faces[:1, [0, 2, 1]], faces[:1, [0, 2, 1]]]))
    with pytest.raises(ValueError, match="consistently oriented"):
        boundary_edges(torch.cat([faces[:1], faces[1:2, [0, 2, 1]]]))
