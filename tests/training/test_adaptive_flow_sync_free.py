"""adaptive-flow's step helpers without host synchronisation (``training.adaptive_flow.terms``): each gives
the values of the ``training.losses.texture`` function it replaces (scipy's exact distance transform, the
boolean-masked face means), and none of them makes the host wait (counted with the profiler)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from backend.models.adaptive_flow import AdaptiveFlowModel, AdaptiveFlowModelConfig
from training.adaptive_flow.terms import (
    Topology,
    dense_distance_barrier,
    distance_barrier,
    face_flow_means,
    face_pixel_means,
)
from training.bench_throughput import count_syncs
from training.losses import texture


def _masks(size: int) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(0)
    noise = torch.rand(5, 1, size, size, generator=generator, device="cpu")
    masks = (F.avg_pool2d(noise, 5, 1, 2) > 0.5).float()  # blobs
    masks[1] = 0.0  # empty
    masks[2] = 1.0  # full
    masks[3] = (noise[3] > 0.8).float()  # speckle
    masks[4, :, 3:9, 5:20] = 1.0  # a rectangle on top of blobs
    return masks


@pytest.mark.parametrize("size", [1, 7, 32])
def test_the_barrier_is_scipys(size: int) -> None:
    masks = _masks(size)
    ours, reference = dense_distance_barrier(masks), texture.distance_transform_barrier(masks)
    torch.testing.assert_close(distance_barrier(masks), reference, atol=0, rtol=0)  # scipy on the CPU
    assert ours.shape == reference.shape == (5, 1, size, size) and ours.dtype == reference.dtype
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)


def test_the_barrier_refuses_non_square_masks() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, S, S\)"):
        dense_distance_barrier(torch.zeros(2, 1, 4, 5, device="cpu"))


def test_the_face_means_are_the_masked_ones() -> None:
    generator = torch.Generator(device="cpu").manual_seed(1)
    faces = torch.randint(-1, 9, (3, 6, 10), generator=generator, device="cpu")
    means, counts = face_pixel_means(faces, 9)
    ref_means, ref_counts = texture.face_pixel_means(faces, 9)
    torch.testing.assert_close(means, ref_means, atol=0, rtol=0)
    torch.testing.assert_close(counts, ref_counts, atol=0, rtol=0)
    network = AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=64, flow_height=8, flow_width=16))
    topology = Topology.build(network)
    flow = torch.rand(2, 8, 16, 2, generator=generator, device="cpu", requires_grad=True)
    ours = face_flow_means(flow, topology)
    reference, ref_texels = texture.face_flow_means(flow, topology.texel_face, network.num_faces)
    torch.testing.assert_close(ours, reference)
    assert torch.equal(topology.texel_counts, ref_texels)
    assert torch.isclose(topology.texel_weight.sum(), torch.tensor(1.0, device="cpu"))
    ours.sum().backward()  # differentiable
    assert flow.grad is not None and flow.grad.abs().sum() > 0


def test_the_helpers_make_no_host_sync() -> None:
    network = AdaptiveFlowModel(AdaptiveFlowModelConfig(image_size=64, flow_height=8, flow_width=16))
    topology = Topology.build(network)
    masks = _masks(16)
    faces = torch.randint(-1, network.num_faces, (2, 6, 6), device="cpu")
    flow = torch.rand(2, 8, 16, 2, device="cpu")
    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as profiler:
        dense_distance_barrier(masks)
        face_pixel_means(faces, network.num_faces)
        face_flow_means(flow, topology)
    assert count_syncs(profiler.events(), 1)["host_syncs"] == 0
    with profile(activities=[ProfilerActivity.CPU]) as profiler:  # the counter sees the originals' syncs
        texture.face_pixel_means(faces, network.num_faces)
    assert count_syncs(profiler.events(), 1)["host_syncs"] >= 1
