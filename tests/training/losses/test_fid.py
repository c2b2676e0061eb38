"""Differentiable FID against numpy/scipy, the FID feature networks without downloaded weights, and the
FID metric's accumulator and Inception loader."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision

from training.losses import fid
from training.losses.fid import (
    FidAccumulator,
    FidFeatures,
    FidMetric,
    feature_statistics,
    fid_loss,
    frechet_distance,
    inception_available,
)
from training.pretrained import PretrainedEncoder


def _scipy_fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID the usual way (pytorch-fid's formula): scipy's sqrtm of the covariance product."""
    mu1, mu2 = features1.mean(0), features2.mean(0)
    cov1, cov2 = np.cov(features1, rowvar=False), np.cov(features2, rowvar=False)
    root = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root))


def test_feature_statistics_match_numpy() -> None:
    features = torch.randn(20, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, cov = feature_statistics(features)
    np.testing.assert_allclose(mean.numpy(), features.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(features.numpy(), rowvar=False), rtol=1e-10)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(features[:1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_frechet_distance_matches_scipy(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    features1 = torch.randn(64, 8, generator=generator, dtype=torch.float64)
    mixing = torch.randn(8, 8, generator=generator, dtype=torch.float64) * 0.5
    features2 = torch.randn(64, 8, generator=generator, dtype=torch.float64) @ mixing + 0.3
    expected = _scipy_fid(features1.numpy(), features2.numpy())
    stats1 = [s.to(dtype) for s in feature_statistics(features1)]
    stats2 = [s.to(dtype) for s in feature_statistics(features2)]
    distance = frechet_distance(stats1[0], stats1[1], stats2[0], stats2[1])
    assert distance.dtype == dtype and distance.shape == ()
    np.testing.assert_allclose(float(distance), expected, rtol=1e-4)
    # symmetric, and 0 for identical statistics
    np.testing.assert_allclose(
        float(frechet_distance(stats2[0], stats2[1], stats1[0], stats1[1])), expected, rtol=1e-4
    )
    assert abs(float(frechet_distance(stats1[0], stats1[1], stats1[0], stats1[1]))) < 1e-4


def test_frechet_distance_gradcheck() -> None:
    generator = torch.Generator().manual_seed(2)

    def spd() -> torch.Tensor:
        a = torch.randn(4, 4, generator=generator, dtype=torch.float64)
        return a @ a.T + 0.5 * torch.eye(4, dtype=torch.float64)

    mu1, mu2 = (torch.randn(4, generator=generator, dtype=torch.float64) for _ in range(2))
    cov1, cov2 = spd(), spd()
    inputs = [t.clone().requires_grad_(True) for t in (mu1, cov1, mu2, cov2)]
    assert torch.autograd.gradcheck(frechet_distance, inputs)
    # only the first covariance requiring grad: the root is taken of the second (the swapped branch)
    fixed = (mu1.clone().requires_grad_(True), cov1.clone().requires_grad_(True), mu2, cov2)
    assert torch.autograd.gradcheck(frechet_distance, fixed)


def test_conv_features_are_deterministic_and_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    first, second = FidFeatures.build("conv", dims=16), FidFeatures.build("conv", dims=16)
    assert torch.equal(torch.get_rng_state(), state)
    assert first.kind == "conv" and not first.pretrained and first.dims == 16
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    assert all(not p.requires_grad for p in first.parameters())
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    features = first(images)
    assert features.shape == (3, 16)
    assert torch.equal(features, second(images))


def test_inception_with_policy_none_looks_nothing_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        pytest.fail("policy none looked for weights")

    for name in ("find_imagenet_weights", "candidate_paths", "imagenet_encoder"):
        monkeypatch.setattr(fid, name, fail)
    with caplog.at_level(logging.WARNING):
        features = FidFeatures.build("inception", policy="none", dims=8)
    assert features.kind == "conv" and not features.pretrained and features.dims == 8
    assert "using the random conv network" in caplog.text


def test_inception_without_weights_falls_back_to_conv(hub: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        features = FidFeatures.build("inception", policy="auto")
    assert features.kind == "conv" and not features.pretrained and features.dims == 64
    assert "no Inception-v3 ImageNet weights on this machine" in caplog.text
    assert str(hub / "checkpoints") in caplog.text
    with pytest.raises(ValueError, match="kind must be"):
        FidFeatures.build("vgg")
    with pytest.raises(ValueError, match="pretrained policy"):
        FidFeatures.build("inception", policy="sometimes")


def test_inception_with_weights_gives_pool_features(monkeypatch: pytest.MonkeyPatch) -> None:
    # stand-in for weights found on this machine: a randomly initialised torchvision network
    torch.manual_seed(4)
    network = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    monkeypatch.setattr(fid, "find_imagenet_weights", lambda arch, path=None: Path("inception.pth"))
    monkeypatch.setattr(
        fid, "imagenet_encoder", lambda arch, policy, path: PretrainedEncoder(network, True, "x")
    )
    features = FidFeatures.build("inception", policy="auto")
    assert features.kind == "inception" and features.pretrained and features.dims == 2048
    features.train()
    assert not features.training and not network.Mixed_7c.training  # batch norm keeps its statistics
    out = features(torch.rand(2, 3, 24, 24))
    assert out.shape == (2, 2048) and torch.isfinite(out).all()


def test_fid_loss_trains_the_fake_side_only() -> None:
    features = FidFeatures.build("conv", dims=32)
    generator = torch.Generator().manual_seed(5)
    real = torch.rand(4, 3, 16, 16, generator=generator).requires_grad_(True)
    fake = torch.rand(4, 3, 16, 16, generator=generator).requires_grad_(True)
    loss = fid_loss(features, real, fake)
    # B = 4 < D = 32: singular covariances, and still a finite value and gradient
    expected = frechet_distance(*feature_statistics(features(real)), *feature_statistics(features(fake)))
    torch.testing.assert_close(loss.detach(), expected.detach())
    loss.backward()
    assert real.grad is None
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and float(fake.grad.abs().sum()) > 0
    assert abs(float(fid_loss(features, fake.detach(), fake.detach()))) < 1e-4
    with pytest.raises(ValueError, match="B >= 2"):
        fid_loss(features, real[:1], fake)


def test_fid_accumulator_equals_the_distance_of_everything_seen() -> None:
    features = FidFeatures.build("conv", dims=8)
    generator = torch.Generator().manual_seed(6)
    batches = [(torch.rand(n, 3, 16, 16, generator=generator), torch.rand(n, 3, 16, 16, generator=generator))
               for n in (3, 1, 4)]  # fmt: skip
    accumulator = FidAccumulator(features)
    assert accumulator.active and accumulator.compute() is None
    for real, fake in batches:
        accumulator.update(real=real, fake=fake)
    real = torch.cat([features(r) for r, _ in batches])
    fake = torch.cat([features(f) for _, f in batches])
    expected = float(frechet_distance(*feature_statistics(real), *feature_statistics(fake)))
    assert accumulator.compute() == pytest.approx(expected, rel=1e-6)
    # precomputed features, one side at a time, and fewer than 2 on a side gives None
    by_features = FidAccumulator()
    assert not by_features.active
    by_features.update_features(real=real[:1])
    by_features.update_features(fake=fake)
    assert by_features.compute() is None
    by_features.update_features(real=real[1:])
    assert by_features.compute() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(RuntimeError, match="no feature network"):
        by_features.update(real=batches[0][0])


def test_fid_metric_without_weights_is_unavailable_and_looks_nothing_up_with_none(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not inception_available("auto") and not FidMetric("auto").available
    assert not FidMetric("require").accumulator("cpu").active  # the metric never downloads nor raises

    def fail(*args: object, **kwargs: object) -> None:
        pytest.fail("pretrained=none looked for weights")

    monkeypatch.setattr(fid, "find_imagenet_weights", fail)
    assert not inception_available("none")
    metric = FidMetric("none")
    assert not metric.available and not metric.accumulator("cpu").active


def test_fid_metric_loads_inception_once(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(4)
    network = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    loads: list[str] = []

    def encoder(arch: str, policy: str, path: object) -> PretrainedEncoder:
        loads.append(policy)
        return PretrainedEncoder(network, True, "x")

    monkeypatch.setattr(fid, "find_imagenet_weights", lambda arch, path=None: Path("inception.pth"))
    monkeypatch.setattr(fid, "imagenet_encoder", encoder)
    metric = FidMetric("auto")
    assert loads == []  # nothing loaded before first use
    first, second = metric.accumulator("cpu"), metric.accumulator("cpu")
    assert first.active and second.active and metric.available and loads == ["auto"]
    assert isinstance(first.features, FidFeatures) and first.features.kind == "inception"
    first.update(real=torch.rand(2, 3, 24, 24), fake=torch.rand(2, 3, 24, 24))
    value = first.compute()
    assert value is not None and math.isfinite(value) and second.compute() is None  # separate evaluations
