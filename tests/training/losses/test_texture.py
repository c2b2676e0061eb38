"""Texture-flow losses against naive loops and hand-made images."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.losses.texture import (
    VggFeatures,
    distance_transform_barrier,
    face_flow_means,
    face_pixel_means,
    flow_alignment_loss,
    perceptual_loss,
    texture_dt_loss,
)


class _Taps(nn.Module):
    """Toy extractor: the image itself and a fixed 1x1 conv of it, each times ``scale`` (B, 1, H, W)."""

    def __init__(self, scale: Tensor | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.mix = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.3, 0.3]])  # (2, 3)

    def forward(self, images: Tensor) -> list[Tensor]:
        taps = [images, torch.einsum("oc,bchw->bohw", self.mix, images)]
        if self.scale is not None:
            taps = [tap * self.scale for tap in taps]
        return taps


def test_vgg_features_are_frozen_taps_that_pass_gradients_to_the_input() -> None:
    torch.manual_seed(0)
    features = VggFeatures(layers=2)
    assert not features.pretrained and features.layers == 2
    assert all(not p.requires_grad for p in features.parameters())
    features.train()
    assert not features.training
    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    taps = features(images)
    assert [tuple(t.shape) for t in taps] == [(2, 64, 16, 16), (2, 128, 8, 8)]
    assert all(float(t.detach().min()) >= 0 for t in taps)  # relu outputs
    taps[-1].sum().backward()
    assert images.grad is not None and float(images.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"layers must lie in 1\.\.5"):
        VggFeatures(layers=6)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        features(torch.rand(2, 1, 16, 16))


def test_vgg_build_without_weights_is_random_init(hub: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        features = VggFeatures.build(policy="auto", layers=1)
    assert not features.pretrained
    assert "vgg16: no ImageNet weights on this machine" in caplog.text
    assert len(features.slices) == 1
    assert len(list(features.slices[0].children())) == 4  # conv relu conv relu


def test_perceptual_loss_against_a_loop() -> None:
    torch.manual_seed(1)
    pred, target = torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5)
    loss = perceptual_loss(_Taps(), pred, target)
    assert loss.shape == (2,)
    for b in range(2):
        expected = 0.0
        for tap_p, tap_t in zip(_Taps()(pred), _Taps()(target), strict=True):
            height, width = tap_p.shape[-2:]
            total = 0.0
            for i in range(height):
                for j in range(width):
                    p, t = tap_p[b, :, i, j], tap_t[b, :, i, j]
                    total += float(((p / (p.norm() + 1e-10) - t / (t.norm() + 1e-10)) ** 2).sum())
            expected += total / (height * width)
        assert math.isclose(float(loss[b]), expected, rel_tol=1e-5)


def test_perceptual_loss_zero_for_identical_images_and_scale_invariant() -> None:
    torch.manual_seed(2)
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert float(perceptual_loss(_Taps(), pred, pred).abs().max()) < 1e-6
    plain = perceptual_loss(_Taps(), pred, target)
    assert float(plain.min()) > 0
    # scaling every feature vector by a positive factor (per position) changes nothing
    scale = torch.rand(1, 1, 8, 8) * 10 + 0.1
    torch.testing.assert_close(perceptual_loss(_Taps(scale), pred, target), plain, rtol=1e-5, atol=1e-6)
    vgg = VggFeatures(layers=2)
    assert float(perceptual_loss(vgg, pred, pred).abs().max()) < 1e-6
    assert float(perceptual_loss(vgg, pred, target).min()) > 0
    with pytest.raises(ValueError, match="shapes differ"):
        perceptual_loss(vgg, pred, target[:, :, :4])


def _naive_barrier(mask: Tensor) -> Tensor:
    """The barrier of one mask (S, S) in {0, 1} by brute-force distances between pixel centres."""
    size = mask.shape[0]
    cells = [(i, j) for i in range(size) for j in range(size)]
    barrier = torch.empty(size, size, dtype=torch.float64)
    for i, j in cells:
        inside = bool(mask[i, j])
        other = [math.hypot(i - k, j - m) for k, m in cells if bool(mask[k, m]) != inside]
        distance = min(other)
        signed = -distance if inside else distance  # dt_out - dt_in
        barrier[i, j] = 1 / (1 + math.exp(-50 * signed / size))
    return barrier


def test_distance_transform_barrier_against_brute_force() -> None:
    mask = torch.zeros(2, 1, 10, 10)
    mask[0, 0, 2:7, 3:9] = 1
    mask[1, 0, 4:6, 1:3] = 1
    mask[1, 0, 7, 8] = 1
    barrier = distance_transform_barrier(mask)
    assert barrier.shape == mask.shape and barrier.dtype == mask.dtype
    for b in range(2):
        torch.testing.assert_close(barrier[b, 0].double(), _naive_barrier(mask[b, 0]), rtol=1e-6, atol=1e-7)


def test_distance_transform_barrier_inside_edge_outside() -> None:
    size = 64
    mask = torch.zeros(1, 1, size, size)
    mask[..., 16:48, 16:48] = 1
    barrier = distance_transform_barrier(mask)
    assert float(barrier[0, 0, 32, 32]) < 1e-3  # 16 px deep
    assert float(barrier[0, 0, 0, 0]) > 1 - 1e-3  # 16 px out
    # on the boundary between columns 15 (out) and 16 (in): x = 16 * 2 / S - 1
    x_edge = 16 * 2 / size - 1
    grid = torch.tensor([[[[x_edge, 0.01]]]])
    edge = F.grid_sample(barrier, grid, align_corners=False)
    assert math.isclose(float(edge), 0.5, abs_tol=1e-6)
    assert float(distance_transform_barrier(torch.zeros(1, 1, 8, 8)).min()) == 1.0
    assert float(distance_transform_barrier(torch.ones(1, 1, 8, 8)).max()) == 0.0
    with pytest.raises(ValueError, match=r"\(B, 1, S, S\)"):
        distance_transform_barrier(torch.zeros(1, 8, 8))


def test_texture_dt_loss_costs_flow_pointing_outside() -> None:
    size = 32
    mask = torch.zeros(1, 1, size, size)
    mask[..., :, : size // 2] = 1  # left half
    dt = distance_transform_barrier(mask)
    inside = torch.full((1, 4, 8, 2), -0.5)  # x = -0.5: the left half
    outside = inside.clone()
    outside[..., 0] = 0.5
    low, high = float(texture_dt_loss(inside, dt)), float(texture_dt_loss(outside, dt))
    assert low < 1e-3 and high > 1 - 1e-3
    # flow at a pixel centre reads that pixel
    centre = torch.tensor([(2 * 20 + 1) / size - 1, (2 * 3 + 1) / size - 1]).expand(1, 4, 8, 2)
    assert math.isclose(float(texture_dt_loss(centre, dt)), float(dt[0, 0, 3, 20]), rel_tol=1e-5)
    # half the texels outside; weights keep only the inside ones
    mixed = torch.cat([inside[:, :2], outside[:, 2:]], dim=1)
    weight = torch.zeros(4, 8)
    weight[:2] = 1
    assert math.isclose(float(texture_dt_loss(mixed, dt)), (low + high) / 2, rel_tol=1e-5)
    assert math.isclose(float(texture_dt_loss(mixed, dt, weight)), low, rel_tol=1e-5, abs_tol=1e-7)
    # the gradient pushes outside-pointing flow back towards the mask (to smaller x)
    edge = torch.full((1, 1, 1, 2), 0.0, requires_grad=True)
    texture_dt_loss(edge, dt).sum().backward()
    assert edge.grad is not None and float(edge.grad[..., 0]) > 0
    with pytest.raises(ValueError, match="texel_weight must have shape"):
        texture_dt_loss(mixed, dt, weight[:3])


def test_face_flow_means_against_a_loop() -> None:
    torch.manual_seed(3)
    flow = torch.rand(2, 3, 4, 2) * 2 - 1
    texel_face = torch.tensor([[0, 0, 2, -1], [2, 2, -1, 0], [4, -1, 4, 4]])
    means, counts = face_flow_means(flow, texel_face, num_faces=5)
    assert means.shape == (2, 5, 2) and counts.tolist() == [3, 0, 3, 0, 3]
    for b in range(2):
        for face in range(5):
            cells = [(i, j) for i in range(3) for j in range(4) if int(texel_face[i, j]) == face]
            expected = torch.zeros(2)
            for i, j in cells:
                expected += flow[b, i, j] / len(cells)
            torch.testing.assert_close(means[b, face], expected)
    with pytest.raises(ValueError, match="there are 4 faces"):
        face_flow_means(flow, texel_face, num_faces=4)


def test_face_pixel_means_against_a_loop() -> None:
    torch.manual_seed(4)
    face_index = torch.randint(-1, 4, (2, 5, 5))
    face_index[1][face_index[1] == 3] = -1  # face 3 is not visible in item 1
    means, weights = face_pixel_means(face_index, num_faces=4)
    assert means.shape == (2, 4, 2) and weights.shape == (2, 4)
    for b in range(2):
        for face in range(4):
            cells = [(i, j) for i in range(5) for j in range(5) if int(face_index[b, i, j]) == face]
            assert float(weights[b, face]) == len(cells)
            if not cells:
                assert means[b, face].tolist() == [0.0, 0.0]
                continue
            x = sum((2 * j + 1) / 5 - 1 for _, j in cells) / len(cells)
            y = sum((2 * i + 1) / 5 - 1 for i, _ in cells) / len(cells)
            torch.testing.assert_close(means[b, face], torch.tensor([x, y]))
    # pixel (0, 0) of a 4 x 4 image: top-left, grid_sample (-0.75, -0.75)
    single = torch.full((1, 4, 4), -1)
    single[0, 0, 0] = 0
    assert face_pixel_means(single, 1)[0][0, 0].tolist() == [-0.75, -0.75]


def test_flow_alignment_loss() -> None:
    torch.manual_seed(5)
    pixel_means = torch.rand(2, 6, 2, requires_grad=True)
    weights = torch.tensor([[3.0, 0.0, 1.0, 2.0, 0.0, 5.0], [0.0] * 6])
    flow_means = pixel_means.detach().clone().requires_grad_(True)
    assert float(flow_alignment_loss(flow_means, pixel_means, weights).detach().abs().max()) == 0.0
    shifted = pixel_means.detach().clone()
    shifted[0, :, 0] += torch.tensor([0.3, 9.0, 0.1, 0.2, 9.0, 0.6])  # invisible faces moved far
    shifted[1] += 5.0  # item without visible faces
    shifted.requires_grad_(True)
    loss = flow_alignment_loss(shifted, pixel_means, weights)
    torch.testing.assert_close(loss, torch.tensor([(0.3 + 0.1 + 0.2 + 0.6) / 4, 0.0]))
    loss.sum().backward()
    assert pixel_means.grad is None  # the label is detached
    assert shifted.grad is not None
    assert float(shifted.grad[0, [1, 4]].abs().sum()) == 0.0 and float(shifted.grad[1].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="weights must have shape"):
        flow_alignment_loss(shifted, pixel_means, weights[:, :3])
