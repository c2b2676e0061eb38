"""``bench-novel-view`` and the shared evaluator (``training.evaluation``): the truth, handed over as a
weak-perspective prediction that projects exactly onto its perspective photo, comes back into its own frame
and scores perfectly; the turns about the view's vertical axis are ``Camera.turned`` at elevation 0; the
flat cut-out keeps the input silhouette and collapses at 90 degrees; the held-out items are reproducible
side views; and a tiny end-to-end run writes every score of ``fit`` and ``fit/flat``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.geometry.camera import Camera, axis_angle_to_quaternion
from backend.geometry.mesh import TexturedMesh
from backend.methods.base import Reconstruction, Report
from training.bench_novel_view import HELD_OUT_START, BenchNovelViewOptions, make_item
from training.cli import main as train_main
from training.datasets.synthetic_object import make_object
from training.datasets.synthetic_render import look_at_cameras, random_lighting, render_views
from training.evaluation import (
    VIEW_TURNS,
    GroundTruth,
    align_reconstruction,
    flat_cutout,
    ray_aligned,
    score_aligned,
    surface_centroid,
    to_ground_truth_frame,
    turned_about,
)

SIZE = 96
SCORES = ("input_iou", "novel_iou_45", "novel_iou_90", "novel_iou_135", "novel_iou_180", "novel_iou_mean")
ROW_KEYS = (*SCORES, "chamfer", "report_iou", "seconds")
TINY_FIT = ["fit:iterations=8", "fit:resolution=32", "fit:hypotheses=1", "fit:texture_size=16"]


def _bird_photo() -> tuple[TexturedMesh, Camera, np.ndarray]:
    """A synthetic bird, its look-at camera (a side view from above) and the photo's mask (alpha > 0.5)."""
    rng = np.random.default_rng(3)
    obj = make_object("bird", rng, with_voxels=False)
    views = {
        "distance": np.array([2.4], np.float32),
        "elevation": np.array([25.0], np.float32),
        "azimuth": np.array([-70.0], np.float32),
    }
    camera = look_at_cameras(views)
    rendered = render_views(obj, camera, SIZE, np.zeros((1, SIZE, SIZE, 3), np.float32), random_lighting(rng))
    return obj.mesh, camera, rendered.alpha[0] > 0.5


def _weak_equivalent(
    mesh: TexturedMesh, camera_true: Camera, centre: torch.Tensor
) -> tuple[Reconstruction, torch.Tensor]:
    """What a perfect weak-perspective method returns for the perspective photo: a mesh that another
    weak-perspective camera (other rotation, scale, shift, an arbitrary depth) projects onto the very crop
    positions the true camera gives, with the true depths relative to ``centre`` (3,); and the point (3,)
    of its frame that is ``centre``."""
    projected = camera_true.project(torch.cat([mesh.vertices, centre[None]]))[0]  # (V + 1, 3): x, y, depth
    depth_centre = projected[-1, 2]
    scale, shift = 0.7, torch.tensor([0.1, -0.05])
    view = torch.stack(
        [
            (projected[:, 0] - shift[0]) / scale,
            (projected[:, 1] - shift[1]) / scale,
            -(projected[:, 2] - depth_centre) / (scale * depth_centre * math.tan(math.radians(15.0))) + 0.4,
        ],
        dim=1,
    )  # (V + 1, 3) rotated by the weak camera, unshifted; +0.4: a depth one view cannot tell
    quaternion = axis_angle_to_quaternion(torch.tensor([[0.2, 1.0, -0.3]]), torch.tensor([1.3]))
    camera = Camera.weak_perspective(torch.tensor([scale]), shift[None], quaternion)
    rotation, _ = camera.view_transform()
    vertices = view @ rotation[0]  # (V + 1, 3): R v is the view without the camera's shift
    report = Report(method="oracle", options={}, device="cpu", silhouette_iou=1.0)
    result = Reconstruction(mesh.with_vertices(vertices[:-1]), camera, np.ones((SIZE, SIZE), bool), report)
    return result, vertices[-1]


def test_the_truth_as_a_weak_perspective_prediction_comes_back_and_scores_perfectly() -> None:
    mesh, camera_true, mask = _bird_photo()
    truth = GroundTruth.of(mesh, camera_true, mask, samples=2048, generator=torch.Generator().manual_seed(5))
    result, centre = _weak_equivalent(truth.mesh, camera_true, truth.centre)
    vertices, faces = result.mesh.vertices, mesh.faces
    # the oracle does project like the photo, through its own camera
    ours, theirs = result.camera.project(vertices)[0], camera_true.project(truth.mesh.vertices)[0]
    assert torch.allclose(ours[:, :2], theirs[:, :2], atol=1e-4)

    # told which point is the truth's centre, the alignment gives the truth back exactly
    aligned = ray_aligned(vertices, result.camera, camera_true, truth.centre, centre)
    assert torch.allclose(aligned, truth.mesh.vertices, atol=1e-4)
    scores = score_aligned(aligned, faces, truth, 2048, torch.Generator().manual_seed(5))
    assert set(scores) == {*SCORES, "chamfer"}
    assert all(scores[name] > 0.99 for name in SCORES), scores  # the masks are made alike: input IoU ~1
    assert scores["chamfer"] < 1e-2  # the same surface samples

    # the bench's alignment, not told, finds the depth that puts the aligned centroid at the truth's
    found = align_reconstruction(result, camera_true, truth.centre)
    assert torch.allclose(found, truth.mesh.vertices, atol=1e-4)
    # the mesh's own centroid as the reference is not enough: the rays distort the mesh, moving it
    first = ray_aligned(vertices, result.camera, camera_true, truth.centre, surface_centroid(vertices, faces))
    assert (first - truth.mesh.vertices).abs().max() > 1e-3

    # the weak-at-the-object's-distance alignment leaves a perspective error that this one removes
    older = to_ground_truth_frame(vertices, result.camera, camera_true, truth.centre, centre)
    assert (older - truth.mesh.vertices).abs().max() > 1e-2


def test_for_a_weak_perspective_true_camera_the_alignment_is_to_ground_truth_frame() -> None:
    generator = torch.Generator().manual_seed(0)
    vertices = torch.rand(40, 3, generator=generator) - 0.5
    camera = Camera.weak_perspective(
        torch.tensor([0.8]), torch.tensor([[0.1, 0.0]]), torch.tensor([[0.9, 0.1, 0.4, 0.0]])
    )
    camera_true = Camera.weak_perspective(
        torch.tensor([1.1]), torch.tensor([[0.0, -0.2]]), torch.tensor([[0.7, 0.0, 0.7, 0.1]])
    )
    centre_true, centre = torch.tensor([0.1, 0.0, 0.2]), vertices.mean(0)
    expected = to_ground_truth_frame(vertices, camera, camera_true, centre_true, centre)
    assert torch.equal(ray_aligned(vertices, camera, camera_true, centre_true, centre), expected)


def test_turns_about_the_view_axis_are_camera_turns_at_elevation_zero_the_world_axis_always() -> None:
    vertices = torch.rand(60, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    camera = Camera.look_at(2.5, 0.0, 40.0)
    turned = turned_about(vertices, camera, torch.zeros(3), VIEW_TURNS)  # (4, V, 3)
    assert turned.shape == (4, 60, 3)
    for k, turn in enumerate(VIEW_TURNS):
        assert torch.allclose(camera.project(turned[k]), camera.turned(turn).project(vertices), atol=1e-5)
    # about the world's up axis, the turns are the camera's turns at any elevation
    above = Camera.look_at(2.5, 35.0, -20.0)
    world = turned_about(vertices, above, torch.zeros(3), VIEW_TURNS, axis="world")
    for k, turn in enumerate(VIEW_TURNS):
        assert torch.allclose(above.project(world[k]), above.turned(turn).project(vertices), atol=1e-5)
    with pytest.raises(ValueError, match="axis"):
        turned_about(vertices, above, torch.zeros(3), VIEW_TURNS, axis="up")  # type: ignore[arg-type]
    # about a centre off the axis, from above: a rigid motion that keeps the centre and the view's up
    centre = torch.tensor([0.2, -0.1, 0.3])
    moved = turned_about(torch.cat([vertices, centre[None]]), above, centre, (70.0,))[0]
    assert torch.allclose(moved[-1], centre, atol=1e-6)

    def distances(points: torch.Tensor) -> torch.Tensor:  # (N, N) pairwise, directly
        return (points[:, None] - points[None]).norm(dim=-1)

    assert torch.allclose(distances(moved[:-1]), distances(vertices), atol=1e-5)
    up_view = above.transform_points(vertices)[0, :, 1]
    assert torch.allclose(above.transform_points(moved[:-1])[0, :, 1], up_view, atol=1e-5)


@pytest.mark.parametrize("kind", ["look_at", "weak_perspective"])
def test_the_flat_cutout_keeps_the_silhouette_and_has_no_depth(kind: str) -> None:
    vertices = torch.rand(80, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    if kind == "look_at":
        camera = Camera.look_at(2.6, 20.0, 75.0)
    else:
        camera = Camera.weak_perspective(
            torch.tensor([0.9]), torch.tensor([[0.05, 0.1]]), torch.tensor([[0.8, 0.2, 0.5, 0.1]])
        )
    centre = torch.tensor([0.05, 0.0, -0.1])
    flat = flat_cutout(vertices, camera, centre)
    before, after = camera.project(vertices)[0], camera.project(flat)[0]
    assert torch.allclose(after[:, :2], before[:, :2], atol=1e-5)  # the same image position
    depth_centre = camera.project(centre[None])[0, 0, 2]
    assert torch.allclose(after[:, 2], depth_centre.expand(80), atol=1e-5)  # one depth: the centre's


def test_the_flat_cutout_of_the_truth_matches_the_input_and_collapses_at_90_degrees() -> None:
    mesh, camera_true, mask = _bird_photo()
    truth = GroundTruth.of(mesh, camera_true, mask, samples=1024)
    flat = flat_cutout(truth.mesh.vertices, camera_true, truth.centre)
    scores = score_aligned(flat, mesh.faces, truth, 1024)
    assert scores["input_iou"] > 0.99
    assert scores["novel_iou_90"] < 0.1  # seen edge on
    assert scores["novel_iou_mean"] < 0.8 and scores["chamfer"] > 1.0
    exact = score_aligned(truth.mesh.vertices, mesh.faces, truth, 1024)
    assert exact["novel_iou_mean"] > 0.99


def test_held_out_items_are_reproducible_side_views() -> None:
    args = BenchNovelViewOptions(categories=("car",), objects=1, views=3, size=32, seed=4)
    mesh, views = make_item("car", 0, args)
    again_mesh, again = make_item("car", 0, args)
    assert torch.equal(mesh.vertices, again_mesh.vertices)
    for (camera, image, mask), (camera_2, image_2, mask_2) in zip(views, again, strict=True):
        assert np.array_equal(image, image_2) and np.array_equal(mask, mask_2)
        assert torch.equal(camera.orbit.azimuth, camera_2.orbit.azimuth)
        assert 30.0 <= abs(float(camera.orbit.azimuth[0])) <= 150.0
        assert image.shape == (32, 32, 3) and mask.dtype == bool and mask.any()
    # not the generator's training objects: object 0 of a set of the same seed is another shape
    training = make_object("car", np.random.default_rng((4, 1, 0, 0)), with_voxels=False)
    held_out = make_object("car", np.random.default_rng((4, 1, HELD_OUT_START, 0)), with_voxels=False)
    assert torch.equal(held_out.mesh.vertices, mesh.vertices)
    assert training.mesh.vertices.shape != mesh.vertices.shape or not torch.equal(
        training.mesh.vertices, mesh.vertices
    )


def test_invalid_options_stop_the_bench_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    assert train_main(["bench-novel-view", "--out", str(out), "--method-set", "iterations=3"]) == 2
    assert train_main(["bench-novel-view", "--out", str(out), "--categories", "boat"]) == 2
    assert train_main(["bench-novel-view", "--out", str(out), "--method-set", "fit:iterations=nope"]) == 2
    assert train_main(["bench-novel-view", "--out", str(out), "--axis", "up"]) == 2
    errors = capsys.readouterr().out
    assert "METHOD:KEY=VALUE" in errors and "boat" in errors and "iterations" in errors
    assert not out.exists()


def test_a_tiny_run_writes_every_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    argv = [
        "bench-novel-view", "--categories", "chair", "--objects", "1", "--size", "48", "--samples", "256",
        "--per-item", "--save-previews", "--out", str(out),
    ]  # fmt: skip
    for pair in TINY_FIT:
        argv += ["--method-set", pair]
    assert train_main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "bench.json").read_text())
    assert json.loads(printed[printed.index('{\n  "benchmark"') :]) == results
    assert set(results["methods"]) == {"fit", "fit/flat"}
    assert results["options"]["fit"]["iterations"] == 8 and results["items"]["size"] == 48
    for row in results["methods"].values():
        assert set(row) == {"chair", "overall"}
        assert row["chair"] == row["overall"]  # one category
        assert set(row["overall"]) == set(ROW_KEYS)
        for name in SCORES:
            assert 0.0 <= row["overall"][name] <= 1.0, (name, row)
        assert row["overall"]["chamfer"] > 0 and row["overall"]["seconds"] > 0
    fit, flat = results["methods"]["fit"]["overall"], results["methods"]["fit/flat"]["overall"]
    assert abs(flat["input_iou"] - fit["input_iou"]) < 0.05  # the same silhouette from the front
    assert flat["novel_iou_90"] < 0.1
    (item,) = results["per_item"]
    assert item["category"] == "chair" and set(item["fit"]) == set(ROW_KEYS)
    preview = out / "previews" / "chair_0_0_fit.png"
    from PIL import Image

    with Image.open(preview) as image:
        assert image.size == (48 * 5, 48 * 2)
