"""MeshInversion's inversion losses against brute-force loops, and their gradients (gradcheck, float64).

The Chamfer mask loss (``chamfer_mask_loss``) is shared with ``fit`` and tested against brute force in
tests/backend/fitting/test_targets.py; its gradient is checked here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.fitting.inversion_losses import (
    ColouredPoints,
    InversionTarget,
    SpatialWeight,
    chamfer_texture_distance,
    feature_chamfer_texture_loss,
    feature_points,
    image_points,
    iou_mask_loss,
    latent_prior,
    normal_smoothness_loss,
    perceptual_texture_loss,
    pixel_centres,
    pixel_chamfer_texture_loss,
    pixel_l1_texture_loss,
    sample_foreground,
)
from backend.fitting.targets import chamfer_mask_loss, mask_points, outside_distance
from backend.geometry.ops import face_normals
from backend.geometry.templates import uv_sphere_template


def brute_one_sided(source: ColouredPoints, target: ColouredPoints, weight: SpatialWeight) -> torch.Tensor:
    """(B,) the Chamfer texture distance source -> target by explicit loops."""
    results = []
    for b in range(source.values.shape[0]):
        tb = min(b, target.values.shape[0] - 1)
        minima = []
        for i in range(source.values.shape[1]):
            if not source.valid[b, i]:
                continue
            best = math.inf
            for j in range(target.values.shape[1]):
                if not target.valid[tb, j]:
                    continue
                d_s = float(((source.xy[b, i] - target.xy[tb, j]) ** 2).sum())
                d_a = float(((source.values[b, i] - target.values[tb, j]) ** 2).sum())
                spatial = max((weight.eps + weight.k * d_s) ** weight.alpha, 1.0)  # = ReLU(x - 1) + 1
                best = min(best, spatial * (d_a + weight.appearance_eps))
            if best < math.inf:
                minima.append(best)
        results.append(sum(minima) / len(minima) if minima else 0.0)
    return torch.tensor(results, dtype=torch.float64)


def random_points(batch: int, count: int, channels: int, seed: int, dtype: torch.dtype) -> ColouredPoints:
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(batch, count, channels, generator=generator, dtype=dtype) * 2 - 1
    xy = torch.rand(batch, count, 2, generator=generator, dtype=dtype) * 2 - 1
    valid = torch.rand(batch, count, generator=generator) > 0.25
    valid[:, 0] = True
    return ColouredPoints(values, xy, valid)


def test_spatial_weight_is_one_near_and_grows_far() -> None:
    weight = SpatialWeight()
    assert weight.eps == pytest.approx(1 - 0.32**2)
    near = torch.tensor([0.0, 0.05, 0.32**2 - 1e-6])
    torch.testing.assert_close(weight(near), torch.ones(3))
    far = torch.tensor([0.5, 1.0, 4.0])
    torch.testing.assert_close(weight(far), weight.eps + far)
    squared = SpatialWeight(alpha=2.0, k=2.0)
    assert float(squared(torch.tensor(1.0))) == pytest.approx((squared.eps + 2.0) ** 2)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("chunk", [1 << 22, 5])
def test_chamfer_texture_distance_against_brute_force(bidirectional: bool, chunk: int) -> None:
    source = random_points(3, 11, 4, seed=1, dtype=torch.float64)
    target = random_points(3 if bidirectional else 1, 9, 4, seed=2, dtype=torch.float64)
    weight = SpatialWeight()
    result = chamfer_texture_distance(source, target, weight, bidirectional=bidirectional, chunk_pairs=chunk)
    expected = brute_one_sided(source, target, weight)
    if bidirectional:
        expected = (expected + brute_one_sided(target, source, weight)) / 2
    torch.testing.assert_close(result, expected)


def test_chamfer_texture_distance_with_a_steeper_spatial_weight() -> None:
    source = random_points(2, 8, 3, seed=3, dtype=torch.float64)
    target = random_points(1, 10, 3, seed=4, dtype=torch.float64)
    weight = SpatialWeight(threshold=0.05, k=2.0, alpha=1.5, appearance_eps=0.5)
    torch.testing.assert_close(
        chamfer_texture_distance(source, target, weight), brute_one_sided(source, target, weight)
    )


def test_empty_sets_give_zero() -> None:
    source = random_points(2, 5, 3, seed=5, dtype=torch.float64)
    target = random_points(2, 6, 3, seed=6, dtype=torch.float64)
    empty = ColouredPoints(target.values, target.xy, torch.zeros_like(target.valid))
    torch.testing.assert_close(chamfer_texture_distance(source, empty), torch.zeros(2, dtype=torch.float64))
    nothing = ColouredPoints(source.values, source.xy, torch.zeros_like(source.valid))
    torch.testing.assert_close(chamfer_texture_distance(nothing, target), torch.zeros(2, dtype=torch.float64))


def test_chamfer_texture_distance_gradcheck() -> None:
    base_source = random_points(2, 6, 3, seed=7, dtype=torch.float64)
    base_target = random_points(2, 5, 3, seed=8, dtype=torch.float64)
    source_values = base_source.values.clone().requires_grad_(True)
    target_values = base_target.values.clone().requires_grad_(True)

    def loss(source_v: torch.Tensor, target_v: torch.Tensor) -> torch.Tensor:
        source = ColouredPoints(source_v, base_source.xy, base_source.valid)
        target = ColouredPoints(target_v, base_target.xy, base_target.valid)
        return chamfer_texture_distance(source, target, bidirectional=True)

    assert torch.autograd.gradcheck(loss, (source_values, target_values), eps=1e-6, atol=1e-6)


def test_sample_foreground_draws_distinct_foreground_pixels() -> None:
    mask = torch.zeros(2, 6, 7, dtype=torch.bool)
    mask[0, 1:4, 2:6] = True  # 12 pixels
    mask[1, 5, 0] = True  # 1 pixel
    index, valid = sample_foreground(mask, 100, torch.Generator().manual_seed(0))
    assert index.shape == valid.shape == (2, 12)
    assert valid[0].all() and int(valid[1].sum()) == 1
    assert sorted(index[0].tolist()) == sorted(torch.nonzero(mask[0].flatten()).flatten().tolist())
    assert int(index[1][valid[1]][0]) == 5 * 7
    few, few_valid = sample_foreground(mask, 5, torch.Generator().manual_seed(0))
    assert few.shape == (2, 5) and few_valid[0].all() and len(set(few[0].tolist())) == 5
    assert mask[0].flatten()[few[0]].all()
    again, _ = sample_foreground(mask, 5, torch.Generator().manual_seed(0))
    assert torch.equal(few, again)


def test_pixel_centres_are_ndc_with_y_up() -> None:
    centres = pixel_centres(torch.tensor([0, 3, 12, 15]), 4, 4)
    expected = torch.tensor([[-0.75, 0.75], [0.75, 0.75], [-0.75, -0.75], [0.75, -0.75]])
    torch.testing.assert_close(centres, expected)
    # the same convention as the Chamfer mask loss's points
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 3] = True
    torch.testing.assert_close(mask_points(mask, 10, torch.Generator()), expected[1:2])


def test_pixel_chamfer_texture_loss_against_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    size = 8
    rendered = torch.rand(2, size, size, 3, generator=generator, dtype=torch.float64)
    rendered_mask = torch.zeros(2, size, size, dtype=torch.bool)
    rendered_mask[0, 2:6, 1:5] = True
    rendered_mask[1, 3:8, 3:7] = True
    photo = torch.rand(size, size, 3, generator=generator, dtype=torch.float64)
    photo_mask = torch.zeros(size, size, dtype=torch.bool)
    photo_mask[1:6, 2:7] = True
    target = image_points((photo * 2 - 1)[None], photo_mask[None], 1000, generator)
    loss = pixel_chamfer_texture_loss(rendered, rendered_mask, target, generator, points=1000)
    # brute force: every rendered foreground pixel against every photo foreground pixel, colours in [-1, 1]
    weight = SpatialWeight()
    expected = []
    for b in range(2):
        values = []
        for r, c in torch.nonzero(rendered_mask[b]).tolist():
            p = torch.tensor([(2 * c + 1) / size - 1, 1 - (2 * r + 1) / size], dtype=torch.float64)
            best = math.inf
            for r2, c2 in torch.nonzero(photo_mask).tolist():
                q = torch.tensor([(2 * c2 + 1) / size - 1, 1 - (2 * r2 + 1) / size], dtype=torch.float64)
                d_s = float(((p - q) ** 2).sum())
                d_a = float((((rendered[b, r, c] - photo[r2, c2]) * 2) ** 2).sum())
                best = min(best, max(weight.eps + d_s, 1.0) * (d_a + 1.0))
            values.append(best)
        expected.append(sum(values) / len(values))
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))


def test_pixel_chamfer_texture_loss_samples_and_is_differentiable() -> None:
    generator = torch.Generator().manual_seed(1)
    rendered = torch.rand(1, 16, 16, 3, generator=generator, requires_grad=True)
    mask = torch.ones(1, 16, 16, dtype=torch.bool)
    target = image_points(torch.rand(1, 16, 16, 3, generator=generator), mask, 50, generator)
    assert target.values.shape == (1, 50, 3)
    loss = pixel_chamfer_texture_loss(rendered, mask, target, generator, points=40)
    loss.sum().backward()
    assert rendered.grad is not None
    assert int((rendered.grad.abs().sum(-1) > 0).sum()) <= 40  # only the sampled pixels


def test_feature_chamfer_texture_loss_against_brute_force_and_gradcheck() -> None:
    generator = torch.Generator().manual_seed(2)
    features = torch.rand(2, 5, 4, 4, generator=generator, dtype=torch.float64) - 0.3
    rendered_mask = torch.zeros(2, 16, 16, dtype=torch.float64)
    rendered_mask[0, 2:12, 4:14] = 1
    rendered_mask[1, 6:16, 0:9] = 1
    target_features = torch.rand(1, 5, 4, 4, generator=generator, dtype=torch.float64) - 0.3
    target_mask = torch.zeros(1, 16, 16, dtype=torch.float64)
    target_mask[0, 3:13, 3:13] = 1
    target = feature_points(target_features, target_mask, 100, generator)
    loss = feature_chamfer_texture_loss(features, rendered_mask, target, generator, points=100)

    def cells(maps: torch.Tensor, mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        found = []
        for r in range(4):
            for c in range(4):
                if float(mask[4 * r : 4 * r + 4, 4 * c : 4 * c + 4].mean()) >= 0.5:
                    xy = torch.tensor([(2 * c + 1) / 4 - 1, 1 - (2 * r + 1) / 4], dtype=torch.float64)
                    vector = maps[:, r, c]
                    found.append((vector / vector.norm(), xy))
        return found

    def one_way(
        a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> float:
        total = 0.0
        for value, xy in a:
            total += min(
                max(SpatialWeight().eps + float(((xy - xy2) ** 2).sum()), 1.0)
                * (float(((value - value2) ** 2).sum()) + 1.0)
                for value2, xy2 in b
            )
        return total / len(a)

    photo_cells = cells(target_features[0], target_mask[0])
    expected = []
    for b in range(2):
        mine = cells(features[b], rendered_mask[b])
        expected.append((one_way(mine, photo_cells) + one_way(photo_cells, mine)) / 2)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))

    def of_maps(rendered_maps: torch.Tensor, photo_maps: torch.Tensor) -> torch.Tensor:
        photo = feature_points(photo_maps, target_mask, 100, torch.Generator().manual_seed(0))
        return feature_chamfer_texture_loss(
            rendered_maps, rendered_mask, photo, torch.Generator().manual_seed(0), points=100
        )

    inputs = (features.clone().requires_grad_(True), target_features.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(of_maps, inputs, eps=1e-6, atol=1e-6)


def test_latent_prior() -> None:
    z = torch.tensor([[1.0, 2.0, 0.0, -2.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(latent_prior(z), torch.tensor([9 / 8, 0.0], dtype=torch.float64))
    assert torch.autograd.gradcheck(latent_prior, (z,))


def test_normal_smoothness_loss_against_convmesh_face_neighbours() -> None:
    template = uv_sphere_template()
    faces = template.mesh.faces
    generator = torch.Generator().manual_seed(3)
    vertices = (template.mesh.vertices + 0.05 * torch.randn(2, 482, 3, generator=generator)).double()
    loss = normal_smoothness_loss(vertices, faces)
    # ConvMesh's loss_flat: each face's three edge neighbours, mean over faces of (cos - 1)^2 per
    # neighbour slot, summed over the slots, times F / 2
    edge_faces: dict[tuple[int, int], list[int]] = {}
    for f, (a, b, c) in enumerate(faces.tolist()):
        for edge in ((a, b), (b, c), (c, a)):
            edge_faces.setdefault(tuple(sorted(edge)), []).append(f)
    neighbours = [[0, 0, 0] for _ in range(faces.shape[0])]
    slot = [0] * faces.shape[0]
    for pair in edge_faces.values():
        assert len(pair) == 2
        first, second = pair
        neighbours[first][slot[first]] = second
        neighbours[second][slot[second]] = first
        slot[first] += 1
        slot[second] += 1
    table = torch.tensor(neighbours)
    normals = face_normals(vertices, faces)
    expected = sum(((normals * normals[:, table[:, i]]).sum(-1) - 1).pow(2).mean(-1) for i in range(3)) * (
        faces.shape[0] / 2
    )
    torch.testing.assert_close(loss, expected)
    flat = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.float64)[None]
    assert float(normal_smoothness_loss(flat, torch.tensor([[0, 1, 2], [2, 1, 3]]))) == 0.0
    tetra = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.3, 1]]], dtype=torch.float64)
    tetra_faces = torch.tensor([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert torch.autograd.gradcheck(
        lambda v: normal_smoothness_loss(v, tetra_faces), (tetra.requires_grad_(True),)
    )


def test_chamfer_mask_loss_gradcheck() -> None:
    mask = np.zeros((16, 16), bool)
    mask[4:12, 3:10] = True
    distance = outside_distance(mask).double()
    points = mask_points(torch.from_numpy(mask), 1000, torch.Generator()).double()
    projected = torch.tensor([[[0.13, 0.41], [-0.52, -0.07], [0.77, -0.63]]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda p: chamfer_mask_loss(p, distance, points), (projected.requires_grad_(True),), atol=1e-5
    )


def test_inversion_target_resizes_the_photo() -> None:
    image = np.zeros((64, 64, 3), np.float32)
    image[..., 0] = 1.0
    mask = np.zeros((64, 64), bool)
    mask[16:48, 8:40] = True
    target = InversionTarget.build(
        image,
        mask,
        32,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        mask_limit=50,
        texture_points=64,
    )
    assert target.size == 32 and target.image.shape == (32, 32, 3)
    assert int(target.mask.sum()) == 16 * 16
    assert target.mask_points.shape == (50, 2) and float(target.distance[target.mask].abs().max()) == 0.0
    assert target.pixels.values.shape == (1, 64, 3) and bool(target.pixels.valid.all())
    torch.testing.assert_close(target.pixels.values[0, 0], torch.tensor([1.0, -1.0, -1.0]))


# -- the ablation's pixel-aligned terms ---------------------------------------------------------------


def test_pixel_l1_texture_loss_against_a_loop_and_gradcheck() -> None:
    generator = torch.Generator().manual_seed(5)
    rendered = torch.rand(2, 5, 5, 3, generator=generator, dtype=torch.float64)
    rendered_mask = torch.rand(2, 5, 5, generator=generator) > 0.4
    image = torch.rand(5, 5, 3, generator=generator, dtype=torch.float64)
    mask = torch.rand(5, 5, generator=generator) > 0.3
    expected = []
    for b in range(2):
        total, count = 0.0, 0
        for r in range(5):
            for c in range(5):
                if rendered_mask[b, r, c] and mask[r, c]:
                    total += float((rendered[b, r, c] - image[r, c]).abs().mean())
                    count += 1
        expected.append(total / max(count, 1))
    loss = pixel_l1_texture_loss(rendered, rendered_mask, image, mask)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))
    # no shared pixel: zero, not NaN
    assert float(pixel_l1_texture_loss(rendered, torch.zeros_like(rendered_mask), image, mask)[0]) == 0.0
    # away from |x| = 0 the loss is differentiable in the rendering
    shifted = image[None] + 0.2 + 0.1 * torch.rand(2, 5, 5, 3, generator=generator, dtype=torch.float64)
    shifted.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: pixel_l1_texture_loss(x, rendered_mask, image, mask), (shifted,)
    )


def test_perceptual_texture_loss_against_a_loop_and_gradcheck() -> None:
    generator = torch.Generator().manual_seed(6)
    rendered = torch.randn(2, 4, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(1, 4, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    loss = perceptual_texture_loss(rendered, target)
    for b in range(2):
        squares = [
            float(rendered[b, c, i, j].detach() - target[0, c, i, j].detach()) ** 2
            for c in range(4)
            for i in range(3)
            for j in range(3)
        ]
        assert math.isclose(float(loss[b]), sum(squares) / len(squares), rel_tol=1e-12)
    assert torch.autograd.gradcheck(perceptual_texture_loss, (rendered, target))
    with pytest.raises(ValueError, match="feature maps differ"):
        perceptual_texture_loss(rendered, target[:, :2])


def test_iou_mask_loss_against_a_loop_and_gradcheck() -> None:
    generator = torch.Generator().manual_seed(7)
    alpha = torch.rand(2, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(4, 4, generator=generator) > 0.5
    loss = iou_mask_loss(alpha, mask)
    for b in range(2):
        inter = sum(float(alpha[b, r, c]) for r in range(4) for c in range(4) if mask[r, c])
        union = sum(1.0 if mask[r, c] else float(alpha[b, r, c]) for r in range(4) for c in range(4))
        assert math.isclose(float(loss[b]), 1 - inter / union, rel_tol=1e-12)
    perfect = iou_mask_loss(mask.to(torch.float64)[None], mask)
    assert float(perfect[0]) == pytest.approx(0.0)
    assert torch.autograd.gradcheck(lambda a: iou_mask_loss(a, mask), (alpha,))
