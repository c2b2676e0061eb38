"""Tests for backend.fitting.multiview: multi-view silhouette fitting on small synthetic targets."""

from __future__ import annotations

import pytest
import torch

from backend.fitting.multiview import MultiViewOptions, fit_multiview, subdivide_to
from backend.geometry import Camera
from backend.geometry.metrics import mask_iou
from backend.geometry.ops import edge_adjacent_faces, flatten_loss, laplacian_loss
from backend.geometry.templates import icosphere_template
from backend.render import RasterSettings, render

SIZE = 32
FLIP = torch.tensor([-1.0, 1.0, 1.0])


def eight_cameras() -> Camera:
    """Eight SoftRas look-at cameras around the object, above and below it."""
    azimuth = torch.arange(8, dtype=torch.float32) * 45.0
    elevation = torch.tensor([30.0, -30.0] * 4)
    return Camera.look_at(torch.full((8,), 2.732), elevation, azimuth, 15.0)


def ellipsoid_silhouettes(camera: Camera) -> torch.Tensor:
    """(8, SIZE, SIZE) hard silhouettes of a flat, symmetric ellipsoid with semi-axes 0.45, 0.15, 0.3."""
    mesh = icosphere_template(level=2).mesh
    vertices = mesh.vertices * torch.tensor([0.45, 0.15, 0.3])
    settings = RasterSettings(image_size=SIZE, soft=False)
    return render(vertices, mesh.faces, camera, settings).mask[..., 0]


def small_options(**changes: object) -> MultiViewOptions:
    """A fit of a few seconds: level 2 then 3, 4 views per step, 32 x 32 then 64 x 64 pixels."""
    values: dict[str, object] = {
        "steps": 40,
        "views_per_step": 4,
        "levels": (2, 3),
        "subdivide_at": (0.6,),
        "resolutions": ((0.0, SIZE), (0.5, 2 * SIZE)),
        "sigma": (1e-4, 2e-5),
        "lr": 0.02,
    }
    values.update(changes)
    return MultiViewOptions(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scene() -> tuple[torch.Tensor, Camera]:
    camera = eight_cameras()
    return ellipsoid_silhouettes(camera), camera


def test_fit_raises_iou_far_above_the_start(scene: tuple[torch.Tensor, Camera]) -> None:
    silhouettes, camera = scene
    sphere = icosphere_template(level=3).mesh
    start = render(sphere.vertices * 0.5, sphere.faces, camera, RasterSettings(image_size=SIZE, soft=False))
    start_iou = mask_iou(start.mask[..., 0], silhouettes, soft=False)
    fractions: list[float] = []
    result = fit_multiview(silhouettes, camera, small_options(), lambda f, stage: fractions.append(f))
    assert float(start_iou.mean()) < 0.5
    assert result.iou.shape == (8,)
    assert float(result.iou.mean()) > 0.85
    assert float(result.iou.min()) > 0.75
    # The result is on the finest level, and its IoU is what a hard render of it gives.
    assert result.level == 3 and result.vertices.shape == (642, 3) and result.faces.shape == (1280, 3)
    again = render(result.vertices, result.faces, camera, RasterSettings(image_size=SIZE, soft=False))
    assert torch.allclose(mask_iou(again.mask[..., 0], silhouettes, soft=False), result.iou)
    assert len(result.losses) == 40 and result.losses[-1] < result.losses[0]
    assert fractions == pytest.approx([(k + 1) / 40 for k in range(40)])
    assert result.seconds > 0


def test_sharp_late_stage_removes_the_soft_silhouette_thinning(scene: tuple[torch.Tensor, Camera]) -> None:
    """A fit at one size and sigma comes out thin: the soft silhouette reaches past the hard outline."""
    silhouettes, camera = scene
    plain = fit_multiview(silhouettes, camera, small_options(resolutions=((0.0, SIZE),), sigma=(1e-4, 1e-4)))
    sharp = fit_multiview(silhouettes, camera, small_options())
    settings = RasterSettings(image_size=SIZE, soft=False)
    plain_area = render(plain.vertices, plain.faces, camera, settings).mask.sum()
    assert plain_area < 0.9 * silhouettes.sum()
    assert float(sharp.iou.mean()) > float(plain.iou.mean()) + 0.05


def test_fit_is_deterministic_given_the_seed(scene: tuple[torch.Tensor, Camera]) -> None:
    silhouettes, camera = scene
    options = small_options(steps=6, subdivide_at=(0.5,))
    first = fit_multiview(silhouettes, camera, options)
    second = fit_multiview(silhouettes, camera, options)
    other = fit_multiview(silhouettes, camera, small_options(steps=6, subdivide_at=(0.5,), seed=1))
    assert torch.equal(first.vertices, second.vertices)
    assert first.losses == second.losses
    assert not torch.equal(first.vertices, other.vertices)
    # The same bits run after run and for any thread count: with 3 or more threads the backward of
    # ``vertices[:, faces]`` (index_put_ with accumulate) adds with racing atomics on a CPU, which made
    # two fits differ on a 16-core machine; the gathers go through ``gather_rows`` instead (and the
    # coverage through ``search.sigmoid``, whose bits do not depend on the thread count either).
    previous = torch.get_num_threads()
    try:
        for count in (1, 2, 16):
            torch.set_num_threads(count)
            for _ in range(2):
                result = fit_multiview(silhouettes, camera, options)
                assert torch.equal(result.vertices, first.vertices), f"{count} threads"
                assert result.losses == first.losses, f"{count} threads"
    finally:
        torch.set_num_threads(previous)


def test_regulariser_gradients_do_not_depend_on_the_thread_count() -> None:
    """The fit's flatten loss (and the cotangent Laplacian) on a level-5 icosphere, whose gathers are
    large enough (32768 elements or more) for ``vertices[:, index]``'s backward to race on a CPU."""
    template = icosphere_template(level=5)
    faces = template.mesh.faces
    adjacency = edge_adjacent_faces(faces)
    noise = torch.rand(template.mesh.vertices.shape, generator=torch.Generator().manual_seed(0))
    start = template.mesh.vertices * (1.0 + 0.1 * noise)

    def gradient() -> torch.Tensor:
        vertices = start.clone().requires_grad_()
        loss = flatten_loss(vertices, faces, adjacency) + laplacian_loss(vertices, faces, "cotangent")
        loss.backward()
        assert vertices.grad is not None
        return vertices.grad

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        reference = gradient()
        for count in (16, 16, 2):
            torch.set_num_threads(count)
            assert torch.equal(gradient(), reference), f"{count} threads"
    finally:
        torch.set_num_threads(previous)


def test_symmetric_fit_is_mirror_symmetric(scene: tuple[torch.Tensor, Camera]) -> None:
    silhouettes, camera = scene
    result = fit_multiview(silhouettes, camera, small_options(steps=4, levels=(2,), subdivide_at=()))
    template = icosphere_template(level=2)
    vertices = result.vertices
    assert torch.allclose(vertices[template.left_index], vertices[template.right_index] * FLIP, atol=1e-6)
    assert vertices[template.plane_index, 0].abs().max() < 1e-6
    free = fit_multiview(
        silhouettes, camera, small_options(steps=4, levels=(2,), subdivide_at=(), symmetric=False)
    ).vertices
    assert (free[template.left_index] - free[template.right_index] * FLIP).abs().max() > 1e-4


def test_subdivide_to_keeps_the_surface() -> None:
    coarse, fine = icosphere_template(level=2), icosphere_template(level=3)
    # On the undeformed sphere each new vertex is the midpoint of its edge: the fine vertex's direction.
    upsampled = subdivide_to(coarse.mesh.vertices, coarse, fine)
    assert upsampled.shape == (642, 3)
    assert torch.equal(upsampled[:162], coarse.mesh.vertices)
    directions = upsampled / upsampled.norm(dim=1, keepdim=True)
    assert torch.allclose(directions, fine.mesh.vertices, atol=1e-6)
    assert (upsampled[162:].norm(dim=1) < 1).all()  # midpoints of chords lie inside the sphere
    # Midpoints commute with any linear map of the coarse vertices.
    matrix = torch.tensor([[0.5, 0.1, 0.0], [0.0, 0.2, 0.3], [0.1, 0.0, 0.9]])
    assert torch.allclose(
        subdivide_to(coarse.mesh.vertices @ matrix, coarse, fine), upsampled @ matrix, atol=1e-6
    )
    with pytest.raises(ValueError, match="does not start with"):
        subdivide_to(coarse.mesh.vertices, coarse, icosphere_template(level=2))
    with pytest.raises(ValueError, match="vertices must have shape"):
        subdivide_to(fine.mesh.vertices, coarse, fine)


def test_bad_inputs_raise(scene: tuple[torch.Tensor, Camera]) -> None:
    silhouettes, camera = scene
    with pytest.raises(ValueError, match="one fraction per level"):
        MultiViewOptions(levels=(3, 4), subdivide_at=())
    with pytest.raises(ValueError, match="increasing"):
        MultiViewOptions(levels=(4, 3), subdivide_at=(0.5,))
    with pytest.raises(ValueError, match=r"start at fraction 0\.0"):
        MultiViewOptions(resolutions=((0.5, 64),))
    with pytest.raises(ValueError, match="steps must be"):
        MultiViewOptions(steps=0)
    with pytest.raises(ValueError, match="batch 8 but there are 7"):
        fit_multiview(silhouettes[:7], camera)
    with pytest.raises(ValueError, match=r"\(N, S, S\)"):
        fit_multiview(silhouettes[:, :, :10], camera)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_multiview(silhouettes * 2, camera)
