"""Tests of the Blender silhouette oracle itself, independent of our renderer.

Blender's coverage is compared with a naive oracle: a pixel is covered when its centre
(``x_ndc = (2 j + 1) / W - 1``, ``y_ndc = 1 - (2 i + 1) / H``) lies inside a triangle projected with
``Camera.project``. Shapes are placed so that no pixel centre lies on an edge, or, where that cannot
be arranged, pixels whose centre lies within ``EDGE_TOLERANCE_PX`` of the silhouette's boundary
are not judged.

Skipped when ``.venv-blender`` is missing, except in CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from backend.geometry import Camera
from backend.geometry.camera import axis_angle_to_quaternion


def _load_sibling(name: str) -> ModuleType:
    """Import a helper beside this file (tests/ is not a package and pytest runs in importlib mode)."""
    spec = importlib.util.spec_from_file_location(
        f"_blender_oracle_test_{name}", Path(__file__).with_name(f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


oracle = _load_sibling("blender_oracle")
silhouettes_script = _load_sibling("blender_silhouettes")


def _blender_missing_reason() -> str | None:
    try:
        oracle.blender_python()
    except FileNotFoundError as error:
        return str(error)
    return None


MISSING_REASON = _blender_missing_reason()
pytestmark = pytest.mark.skipif(
    MISSING_REASON is not None and os.environ.get("CI") != "true",
    reason=f"no Blender environment (set CI=true to make this a failure): {MISSING_REASON}",
)

EDGE_TOLERANCE_PX = 0.02
IDENTITY_QUATERNION = torch.tensor([[1.0, 0.0, 0.0, 0.0]])


def orthographic_front() -> Camera:
    """Orthographic camera on +Z looking down -Z, y up, x_ndc = x (ndc_scale 1, R = I)."""
    return Camera.weak_perspective(1.0, torch.zeros(1, 2), IDENTITY_QUATERNION)


def rectangle(x0: float, x1: float, y0: float, y1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two triangles covering [x0, x1] x [y0, y1] at z = 0, counter-clockwise seen from +Z."""
    vertices = torch.tensor([[x0, y0, 0.0], [x1, y0, 0.0], [x1, y1, 0.0], [x0, y1, 0.0]])
    return vertices, torch.tensor([[0, 1, 2], [0, 2, 3]])


def cube(half: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """An axis-aligned cube of 12 triangles centred at the origin."""
    corners = torch.tensor(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32
    )
    faces = torch.tensor(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    )  # fmt: skip
    return corners * half, faces


def pixel_centres_ndc(size: int) -> tuple[np.ndarray, np.ndarray]:
    """x_ndc, y_ndc of every pixel centre, each (H, W), row 0 at the top."""
    centres = (2 * np.arange(size) + 1) / size - 1
    return np.broadcast_to(centres[None, :], (size, size)), np.broadcast_to(-centres[:, None], (size, size))


def covered_points(xy_ndc: np.ndarray, faces: list[list[int]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each point (x, y) lies inside (or on) some triangle of ``xy_ndc`` (V, 2); a face loop."""
    covered = np.zeros(x.shape, dtype=bool)
    for face in faces:
        (ax, ay), (bx, by), (cx, cy) = xy_ndc[face]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-12:
            continue
        # Edge functions, each positive on the triangle's side whatever the winding.
        e0 = ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) * np.sign(area)
        e1 = ((cx - bx) * (y - by) - (cy - by) * (x - bx)) * np.sign(area)
        e2 = ((ax - cx) * (y - cy) - (ay - cy) * (x - cx)) * np.sign(area)
        covered |= (e0 >= 0) & (e1 >= 0) & (e2 >= 0)
    return covered


def naive_coverage(
    vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(inside, undecided) each (H, W) bool, from the triangles projected with ``Camera.project``.

    inside: the disc of radius EDGE_TOLERANCE_PX around the pixel centre is covered (tested at its
    centre and 8 points on its rim); undecided: partly covered, so a rounding difference may flip it.
    """
    xy_ndc = camera.to("cpu", torch.float64).project(vertices.double())[0, :, :2].numpy()  # (V, 2)
    x, y = pixel_centres_ndc(size)
    radius_ndc = EDGE_TOLERANCE_PX * 2 / size
    angles = np.arange(8) * np.pi / 4
    offsets = [(0.0, 0.0), *zip(radius_ndc * np.cos(angles), radius_ndc * np.sin(angles), strict=True)]
    samples = np.stack([covered_points(xy_ndc, faces.tolist(), x + dx, y + dy) for dx, dy in offsets])
    inside = samples.all(axis=0)
    return inside, samples.any(axis=0) & ~inside


# Unit square seen at 31 x 31: the pitch is 2/31 in NDC and centres lie at x = (2 j + 1) / 31 - 1,
# y = 1 - (2 i + 1) / 31, so 1 unit is 15.5 pixels. Each edge lies a quarter pixel outside the centre
# of the outermost covered pixel (column 7: x = -16/31; column 22: x = 14/31; row 4: y = 22/31;
# row 19: y = -8/31), so a half-pixel error in either direction along x or y changes the mask.
SQUARE_SIZE = 31
SQUARE_X = (-16.5 / 31, 14.5 / 31)
SQUARE_Y = (-8.5 / 31, 22.5 / 31)
SQUARE_ROWS, SQUARE_COLUMNS = slice(4, 20), slice(7, 23)
# Right triangle with its right angle at the top-left, wound clockwise seen from the camera.
CORNER_TRIANGLE = torch.tensor([[-0.9, 0.85, 0.0], [-0.3, 0.85, 0.0], [-0.9, 0.45, 0.0]])
SMALL_TRIANGLE = torch.tensor([[0.05, 0.02, -0.1], [0.3, 0.18, 0.12], [-0.12, 0.27, 0.04]])


def weak_perspective_rotated() -> Camera:
    rotation = axis_angle_to_quaternion(torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([0.7]))
    return Camera.weak_perspective(0.8, torch.tensor([[0.15, -0.1]]), rotation)


def oracle_jobs() -> list[dict]:
    square_vertices, square_faces = rectangle(SQUARE_X[0], SQUARE_X[1], SQUARE_Y[0], SQUARE_Y[1])
    cube_vertices, cube_faces = cube()
    jobs = [
        {"name": f"square_{size}", "vertices": square_vertices, "faces": square_faces,
         "camera": orthographic_front(), "image_size": size}
        for size in (SQUARE_SIZE, 128, 256)
    ]  # fmt: skip
    jobs += [
        {"name": "corner_triangle", "vertices": CORNER_TRIANGLE, "faces": torch.tensor([[0, 1, 2]]),
         "camera": orthographic_front(), "image_size": 64},
        {"name": "rotated_cube", "vertices": cube_vertices, "faces": cube_faces,
         "camera": weak_perspective_rotated(), "image_size": 128},
        {"name": "look_at_triangle", "vertices": SMALL_TRIANGLE, "faces": torch.tensor([[0, 1, 2]]),
         "camera": Camera.look_at(2.732, 30.0, 45.0, 15.0), "image_size": 128},
        {"name": "look_at_cube", "vertices": cube_vertices * 0.6, "faces": cube_faces,
         "camera": Camera.look_at(2.732, 30.0, 45.0, 15.0), "image_size": 256},
    ]  # fmt: skip
    return jobs


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, np.ndarray]]:
    """Every job rendered in one Blender process: name -> (job, silhouette)."""
    jobs = oracle_jobs()
    silhouettes = oracle.render_with_blender(jobs, tmp_path_factory.mktemp("blender"))
    return {job["name"]: (job, silhouettes[job["name"]]) for job in jobs}


def assert_matches_naive(job: dict, silhouette: np.ndarray) -> None:
    size = job["image_size"]
    assert silhouette.shape == (size, size) and silhouette.dtype == bool
    inside, undecided = naive_coverage(job["vertices"], job["faces"], job["camera"], size)
    judged = ~undecided
    wrong = np.argwhere((silhouette != inside) & judged)
    assert wrong.size == 0, (
        f"{job['name']}: {len(wrong)} pixels differ from the naive oracle, e.g. {wrong[:5]}"
    )
    assert undecided.sum() <= size // 8, f"{job['name']}: too many pixels not judged ({undecided.sum()})"
    assert inside.sum() > 20, f"{job['name']}: the shape is too small to test anything"


def test_blender_environment_is_present() -> None:
    # Fails (rather than skips) in CI when .venv-blender is missing.
    assert oracle.blender_python().is_file()


def test_unit_square_covers_the_hand_computed_block(rendered) -> None:
    _, silhouette = rendered[f"square_{SQUARE_SIZE}"]
    expected = np.zeros((SQUARE_SIZE, SQUARE_SIZE), dtype=bool)
    expected[SQUARE_ROWS, SQUARE_COLUMNS] = True
    np.testing.assert_array_equal(silhouette, expected)


@pytest.mark.parametrize("size", [SQUARE_SIZE, 128, 256])
def test_unit_square_matches_pixel_centre_sampling(rendered, size: int) -> None:
    job, silhouette = rendered[f"square_{size}"]
    assert_matches_naive(job, silhouette)
    # No pixel centre lies near an edge of the square at these sizes, so every pixel was judged.
    assert naive_coverage(job["vertices"], job["faces"], job["camera"], size)[1].sum() == 0


def test_image_is_not_flipped_or_mirrored(rendered) -> None:
    job, silhouette = rendered["corner_triangle"]
    assert_matches_naive(job, silhouette)
    rows, columns = np.nonzero(silhouette)
    assert rows.max() < 32 and columns.max() < 32, "the triangle left the top-left quadrant"
    widths = silhouette.sum(axis=1)[rows.min() : rows.max() + 1]
    assert np.all(np.diff(widths) <= 0) and widths[0] > widths[-1], "the wide end is not at the top"
    left_edges = silhouette[rows.min() : rows.max() + 1].argmax(axis=1)
    assert np.all(left_edges == left_edges[0]), "the vertical edge is not on the left"


def test_rotated_weak_perspective_cube(rendered) -> None:
    assert_matches_naive(*rendered["rotated_cube"])


def test_look_at_triangle_lands_where_project_puts_it(rendered) -> None:
    job, silhouette = rendered["look_at_triangle"]
    assert_matches_naive(job, silhouette)
    # The covered pixels are centred on the centroid of the projected corners.
    centroid = job["camera"].project(SMALL_TRIANGLE)[0, :, :2].mean(0)
    row, column = (1 - centroid[1].item()) * 64 - 0.5, (centroid[0].item() + 1) * 64 - 0.5
    rows, columns = np.nonzero(silhouette)
    assert abs(rows.mean() - row) < 1.5 and abs(columns.mean() - column) < 1.5


def test_look_at_cube(rendered) -> None:
    assert_matches_naive(*rendered["look_at_cube"])


@pytest.mark.parametrize("camera", [weak_perspective_rotated(), Camera.look_at(2.732, 30.0, 45.0, 15.0)])
def test_camera_spec_reproduces_project(camera: Camera) -> None:
    # The numbers handed to Blender give the same NDC as Camera.project.
    spec = oracle.camera_spec(camera)
    points = torch.randn(20, 3) * 0.5
    points_view = points.double().numpy() @ np.array(spec["rotation"]).T + np.array(spec["translation"])
    if spec["projection"] == "orthographic":
        xy_ndc = spec["ndc_scale"] * points_view[:, :2]
    else:
        xy_ndc = points_view[:, :2] / (
            -points_view[:, 2:] * math.tan(math.radians(spec["viewing_angle_deg"]))
        )
    np.testing.assert_allclose(xy_ndc, camera.project(points)[0, :, :2].numpy(), atol=1e-5)


def test_camera_spec_rejects_a_batch() -> None:
    with pytest.raises(ValueError, match="one camera per job"):
        oracle.camera_spec(Camera.look_at(torch.tensor([2.0, 3.0]), 0.0, 0.0))


def test_obj_reader_triangulates_polygons_and_resolves_indices(tmp_path: Path) -> None:
    path = tmp_path / "quad.obj"
    path.write_text(
        "# a quad and a triangle with negative indices\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0 1.0\n"
        "vt 0 0\nvn 0 0 1\nf 1/1/1 2/1/1 3//1 4\nf -1 -3 -2\n"
    )
    vertices, faces = silhouettes_script.read_obj(path)
    assert vertices == [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
    assert faces == [(0, 1, 2), (0, 2, 3), (3, 1, 2)]


def test_blender_failure_raises_with_its_output(tmp_path: Path) -> None:
    job = {"name": "broken", "vertices": torch.zeros(3, 3), "faces": torch.tensor([[0, 1, 7]]),
           "camera": orthographic_front(), "image_size": 8}  # fmt: skip
    with pytest.raises(RuntimeError, match="out of range"):
        oracle.render_with_blender([job], tmp_path)
