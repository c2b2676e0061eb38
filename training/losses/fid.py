"""Differentiable Fréchet Inception Distance as a loss (seed paper eq. 42-47).

``FID = |mu_1 - mu_2|^2 + Tr(C_1 + C_2 - 2 (C_1 C_2)^(1/2))`` between Gaussians fitted to two sets of
features. ``Tr((C_1 C_2)^(1/2)) = Tr((S_1 C_2 S_1)^(1/2))`` with ``S_1 = C_1^(1/2)``: the product is
symmetric positive semi-definite, so both square roots come from ``torch.linalg.eigh`` (eigenvalues
clamped at 0, float64 inside) and the trace term is the sum of the square roots of the eigenvalues
of ``S_1 C_2 S_1`` (``eigvalsh``: a stable gradient even for repeated eigenvalues).

- ``feature_statistics``: mean and unbiased covariance of features (N, D).
- ``frechet_distance``: the distance between two (mean, covariance) pairs, differentiable in all four.
- ``FidFeatures``: the feature extractor. ``"inception"``: torchvision's Inception-v3 with ImageNet
  weights, 2048-d pool features of images resized to 299 x 299 and scaled to [-1, 1] (what those
  weights expect; ConvMesh's and MeshInversion's FID, not pytorch-fid's TF weights, so values are not
  comparable with published FIDs). Without weights it falls back, with a warning, to ``"conv"``: a
  small convolutional network with fixed random weights (seed 0), a cheap, deterministic stand-in.
- ``fid_loss``: ``frechet_distance`` between the features of a real and a fake batch (real detached).

The FID *metric* of an evaluation (every trainer's, the only place Inception is loaded for it):

- ``inception_available(pretrained, path)``: pretrained is not "none" and Inception-v3 ImageNet weights
  are on this machine (nothing is downloaded).
- ``FidMetric(pretrained, path)``: a run's metric; loads Inception-v3 once, on first use, and never the conv
  stand-in (metric values must mean the same in every run). ``accumulator(device)`` starts an evaluation.
- ``FidAccumulator``: ``update(real=, fake=)`` with images (B, 3, H, W) in [0, 1] or
  ``update_features(real=, fake=)`` with features (B, D), kept as float32 on the CPU; ``compute()`` is the
  FID of everything seen (float64 inside), or None with fewer than 2 of either side. ``active`` is False
  when there is no network (Inception unavailable): callers then skip making the fakes.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.pretrained import POLICIES, candidate_paths, find_imagenet_weights, imagenet_encoder

log = logging.getLogger(__name__)

INCEPTION_SIZE = 299
"""Side of the images Inception-v3 sees."""

_INCEPTION_BLOCKS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool",
)  # fmt: skip
"""torchvision Inception3's modules from the input to the 2048-d pool (AuxLogits, dropout, fc left out)."""


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), N >= 2."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {tuple(features.shape)}")
    mean = features.mean(dim=0)  # (D,)
    centred = features - mean  # (N, D)
    return mean, centred.T @ centred / (features.shape[0] - 1)


def sqrtm_psd(matrix: Tensor) -> Tensor:
    """Square root (D, D) of a symmetric positive semi-definite matrix (D, D), negative eigenvalues -> 0."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor, eps: float = 1e-6) -> Tensor:
    """Scalar Fréchet distance between Gaussians (mu1 (D,), cov1 (D, D)) and (mu2 (D,), cov2 (D, D)).

    Computed in float64 and returned in mu1's dtype. ``eps * I`` is added to both covariances (as
    pytorch-fid does for singular ones; it changes the value by O(eps D)), and covariances are
    symmetrised. Gradients through the side whose square root is taken (``S_1``) pass through
    eigenvectors and are ill-conditioned for repeated eigenvalues, so when only one covariance requires
    grad the root is taken of the other one (the trace term is symmetric). Identical statistics give 0
    up to rounding.
    """
    dims = mu1.shape[0]
    if mu1.shape != (dims,) or mu2.shape != (dims,) or cov1.shape != (dims, dims) or cov2.shape != cov1.shape:
        raise ValueError(
            f"expected means (D,) and covariances (D, D), got {tuple(mu1.shape)}, {tuple(cov1.shape)}, "
            f"{tuple(mu2.shape)}, {tuple(cov2.shape)}"
        )
    dtype = mu1.dtype
    identity = torch.eye(dims, dtype=torch.float64, device=cov1.device)
    first = (cov1.double() + cov1.double().T) / 2 + eps * identity  # (D, D)
    second = (cov2.double() + cov2.double().T) / 2 + eps * identity
    if first.requires_grad and not second.requires_grad:
        first, second = second, first
    root = sqrtm_psd(first)  # (D, D)
    product = root @ second @ root
    product = (product + product.T) / 2
    trace_sqrt = torch.linalg.eigvalsh(product).clamp(min=0).sqrt().sum()
    mean_term = (mu1.double() - mu2.double()).pow(2).sum()
    distance = mean_term + first.trace() + second.trace() - 2 * trace_sqrt
    return distance.to(dtype)


def _init_conv(conv: nn.Conv2d, generator: torch.Generator) -> nn.Conv2d:
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    with torch.no_grad():
        conv.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


def conv_fid_network(dims: int = 64, width: int = 64, seed: int = 0) -> nn.Sequential:
    """The fallback FID network: 4 stride-2 4x4 convs (3 -> width -> width -> width -> dims, LeakyReLU 0.2
    between), global average pool -> (B, dims). He-normal weights from ``seed``; the global RNG is untouched.
    """
    if dims < 1 or width < 1:
        raise ValueError(f"dims and width must be positive, got {dims} and {width}")
    generator = torch.Generator().manual_seed(seed)
    channels = (3, width, width, width, dims)
    layers: list[nn.Module] = []
    for index in range(4):
        conv = nn.utils.skip_init(nn.Conv2d, channels[index], channels[index + 1], 4, stride=2, padding=1)
        layers.append(_init_conv(conv, generator))
        if index < 3:
            layers.append(nn.LeakyReLU(0.2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def inception_pool_network(inception: nn.Module) -> nn.Sequential:
    """torchvision Inception3's modules up to its average pool, flattened: (B, 3, 299, 299) -> (B, 2048)."""
    blocks = [getattr(inception, name) for name in _INCEPTION_BLOCKS]
    return nn.Sequential(*blocks, nn.Flatten())


class FidFeatures(nn.Module):
    """Frozen FID feature extractor: images (B, 3, H, W) in [0, 1] -> features (B, dims).

    Attributes:
        kind: ``"inception"`` or ``"conv"`` (the network actually used, after any fallback).
        pretrained: True when the weights are ImageNet weights.
        dims: feature size (2048 for Inception).
    """

    def __init__(self, network: nn.Module, kind: str, dims: int, pretrained: bool = False):
        """``network``: images (B, 3, H, W) scaled to [-1, 1] (299 x 299 for inception) -> (B, dims)."""
        super().__init__()
        if kind not in ("inception", "conv"):
            raise ValueError(f"kind must be 'inception' or 'conv', got {kind!r}")
        self.network = network
        self.kind = kind
        self.dims = dims
        self.pretrained = pretrained
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def build(
        cls, kind: str = "inception", policy: str = "auto", path: str | Path | None = None, dims: int = 64
    ) -> FidFeatures:
        """The FID network of ``kind``; ``dims`` sets the conv network's feature size.

        ``"inception"`` takes ImageNet weights per ``training.pretrained``'s policy; when they are not
        used (policy "none", or "auto" and none on this machine) it logs a warning and returns the conv
        network (``kind == "conv"``). Policy "none" looks nothing up; "require" raises
        ``FileNotFoundError`` when the weights are absent; "download" may download them.
        """
        if kind not in ("inception", "conv"):
            raise ValueError(f"kind must be 'inception' or 'conv', got {kind!r}")
        if policy not in POLICIES:
            raise ValueError(f"pretrained policy {policy!r} is not one of {', '.join(POLICIES)}")
        if kind == "inception":
            if policy == "none":
                log.warning("FID features: no Inception-v3 (pretrained=none); using the random conv network")
                return cls.build("conv", dims=dims)
            if policy == "auto" and find_imagenet_weights("inception_v3", path) is None:
                looked = ", ".join(str(p) for p in candidate_paths("inception_v3", path))
                log.warning(
                    "FID features: no Inception-v3 ImageNet weights on this machine (looked in %s); "
                    "using the random conv network instead",
                    looked,
                )
                return cls.build("conv", dims=dims)
            with warnings.catch_warnings():  # torchvision warns about an init the loaded weights replace
                warnings.simplefilter("ignore", FutureWarning)
                encoder = imagenet_encoder("inception_v3", policy, path)
            if not encoder.pretrained:  # "download" cannot end here, "require" raised; kept for safety
                log.warning("FID features: Inception-v3 without weights; using the random conv network")
                return cls.build("conv", dims=dims)
            return cls(inception_pool_network(encoder.model), "inception", 2048, pretrained=True)
        return cls(conv_fid_network(dims), "conv", dims)

    def train(self, mode: bool = True) -> Self:
        """Stays in eval mode (Inception's batch norm keeps its ImageNet statistics)."""
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] -> features (B, dims)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if self.kind == "inception" and images.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            images = F.interpolate(
                images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False
            )
        features: Tensor = self.network(images * 2 - 1)
        return features


def inception_available(pretrained: str, path: str | Path | None = None) -> bool:
    """Whether the FID metric runs: ``pretrained`` is not "none" and Inception-v3 weights are here."""
    if pretrained == "none":
        return False
    return find_imagenet_weights("inception_v3", path) is not None


class FidAccumulator:
    """Features of real and fake images over one evaluation; ``compute`` gives their FID."""

    def __init__(self, features: nn.Module | None = None) -> None:
        """``features``: images (B, 3, H, W) in [0, 1] -> (B, D) (``FidFeatures``); None: no network."""
        self.features = features
        self._real: list[Tensor] = []
        self._fake: list[Tensor] = []

    @property
    def active(self) -> bool:
        """Whether images can be added (there is a feature network)."""
        return self.features is not None

    @torch.no_grad()
    def update(self, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        """Add real and/or fake images (B, 3, H, W) in [0, 1] through the feature network."""
        if self.features is None:
            raise RuntimeError(
                "this FidAccumulator has no feature network: add features with update_features"
            )
        self.update_features(
            None if real is None else self.features(real), None if fake is None else self.features(fake)
        )

    def update_features(self, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        """Add real and/or fake features (B, D)."""
        if real is not None:
            self._real.append(real.detach().float().cpu())
        if fake is not None:
            self._fake.append(fake.detach().float().cpu())

    def compute(self) -> float | None:
        """FID between all real and all fake features so far; None with fewer than 2 on either side."""
        if not self._real or not self._fake:
            return None
        real, fake = torch.cat(self._real), torch.cat(self._fake)
        if len(real) < 2 or len(fake) < 2:
            return None
        return float(frechet_distance(*feature_statistics(real), *feature_statistics(fake)))


class FidMetric:
    """A run's FID metric: Inception-v3 loaded once, on first use, when ``inception_available``."""

    def __init__(self, pretrained: str, path: str | Path | None = None) -> None:
        self.pretrained = pretrained
        self.path = path
        self._features: FidFeatures | None = None
        self._loaded = False

    @property
    def available(self) -> bool:
        """Whether Inception-v3 with ImageNet weights is used (loads it on the first call)."""
        return self._network() is not None

    def _network(self) -> FidFeatures | None:
        if not self._loaded:
            self._loaded = True
            if inception_available(self.pretrained, self.path):
                features = FidFeatures.build("inception", "auto", self.path)
                usable = features.kind == "inception" and features.pretrained
                self._features = features if usable else None
        return self._features

    def accumulator(self, device: torch.device | str) -> FidAccumulator:
        """A new accumulator whose network is on ``device`` (inactive when Inception is unavailable)."""
        network = self._network()
        return FidAccumulator(None if network is None else network.to(device))


def fid_loss(features: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """Scalar ``frechet_distance`` between the feature statistics of real and fake (B, 3, H, W), B >= 2.

    ``features`` maps images to (B, D) (``FidFeatures``); real features are computed without gradient.
    """
    if real.dim() != 4 or fake.dim() != 4 or real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(
            f"fid_loss needs batches (B, 3, H, W) with B >= 2, "
            f"got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    with torch.no_grad():
        real_features = features(real)  # (B, D)
    fake_features = features(fake)  # (B, D)
    mu_real, cov_real = feature_statistics(real_features)
    mu_fake, cov_fake = feature_statistics(fake_features)
    return frechet_distance(mu_real, cov_real, mu_fake, cov_fake)
