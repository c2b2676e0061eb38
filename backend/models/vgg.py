"""VGG's first layers as frozen feature extractors: MeshInversion's feature-level Chamfer texture loss
(VGG-19 up to relu3_1) and Unsup3d's perceptual loss (VGG16 up to relu3_3).

- ``VggFeatures(spec)``: torchvision's VGG ``features[0:k]`` for a ``VggSpec``: ``VGG19_RELU3_1``
  (conv1_1 ... relu3_1, k = 12, as the MeshInversion reference uses it; the default) or
  ``VGG16_RELU3_3`` (conv1_1 ... relu3_3, k = 16, as the Unsup3d reference), with torchvision's layer
  indices (state-dict keys ``features.0.weight`` ...). ``forward(images, mask)``: images (B, 3, H, W) in
  [0, 1], standardised with ImageNet's mean and std, multiplied by the mask (B, 1, H, W) after the
  standardisation (so the background is 0, as in MeshInversion), -> features (B, 256, H / 4, W / 4).
  Parameters never train. ``weights`` says what it holds: "imagenet" or "random".
- ``load_vgg_features(device, path=None)`` (VGG-19) and ``load_vgg16_features(device, path=None)``
  (VGG16): ImageNet weights when they are already on this machine, else a fixed random initialisation
  (torchvision's Kaiming-normal scheme from a seeded generator, so every run gets the same features).
  Nothing is ever downloaded. Looked up, in order (``vgg_weight_paths(path, spec)``): ``path`` (a file,
  or a folder holding one of the names below), ``<data_dir>/weights/<spec.safetensors_file>``
  (``backend.paths.data_dir``), and torchvision's download in the torch hub cache
  (``torch.hub.get_dir()/checkpoints/<spec.torchvision_file>``, where ``torchvision.models.vgg19(weights=
  "DEFAULT")`` or ``vgg16(...)`` and the training side's ``--pretrained download`` put it). A ``.pth`` file
  is read with ``torch.load(weights_only=True)``: tensors only, no code runs. Only the ``features.*``
  tensors of the extractor's layers are used (the file may hold the whole classifier).

To provide the weights on a machine without network: copy ``vgg19-dcbb9e9d.pth`` / ``vgg16-397923af.pth``
into ``$TORCH_HOME/hub/checkpoints/`` (or convert them to ``vgg19.safetensors`` / ``vgg16.safetensors``
under the data folder's ``weights/``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from backend.paths import data_dir

log = logging.getLogger(__name__)

VGG19_TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
"""torchvision's file name of VGG-19's ImageNet weights (``VGG19_Weights.IMAGENET1K_V1``)."""
VGG19_SAFETENSORS_FILE = "vgg19.safetensors"
"""The same weights converted to safetensors, looked up under ``<data_dir>/weights/``."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0
"""Seed of the random initialisation used without ImageNet weights."""

WeightsKind = Literal["imagenet", "random"]
POOL = (0, 0)
LAYERS = ((3, 64), (64, 64), POOL, (64, 128), (128, 128), POOL, (128, 256))
"""conv1_1, conv1_2, pool (``POOL``), conv2_1, conv2_2, pool, conv3_1 (each conv followed by a ReLU):
(in, out) channels."""
LAYERS_VGG16_RELU3_3 = (*LAYERS, (256, 256), (256, 256))
"""VGG16's (and VGG-19's) layers up to conv3_3 (then relu3_3): ``LAYERS`` and conv3_2, conv3_3."""

VGG16_TORCHVISION_FILE = "vgg16-397923af.pth"
"""torchvision's file name of VGG16's ImageNet weights (``VGG16_Weights.IMAGENET1K_V1``)."""
VGG16_SAFETENSORS_FILE = "vgg16.safetensors"
"""The same weights converted to safetensors, looked up under ``<data_dir>/weights/``."""


@dataclass(frozen=True)
class VggSpec:
    """Which VGG and how far: its name in messages, its layers (``LAYERS`` notation) and weight files."""

    name: str
    layers: tuple[tuple[int, int], ...]
    torchvision_file: str
    safetensors_file: str


VGG19_RELU3_1 = VggSpec("VGG-19", LAYERS, VGG19_TORCHVISION_FILE, VGG19_SAFETENSORS_FILE)
"""MeshInversion's extractor: VGG-19 ``features[0:12]``, up to relu3_1."""
VGG16_RELU3_3 = VggSpec("VGG16", LAYERS_VGG16_RELU3_3, VGG16_TORCHVISION_FILE, VGG16_SAFETENSORS_FILE)
"""Unsup3d's extractor: VGG16 ``features[0:16]``, up to relu3_3."""


def _layers(spec: VggSpec) -> nn.Sequential:
    modules: list[nn.Module] = []
    for layer in spec.layers:
        if layer == POOL:
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            channels_in, channels_out = layer
            modules += [nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1), nn.ReLU()]
    return nn.Sequential(*modules)


class VggFeatures(nn.Module):
    """VGG up to ``spec``'s last layer (VGG-19 relu3_1 by default), frozen (module docstring):
    (B, 3, H, W) -> (B, 256, H / 4, W / 4)."""

    def __init__(self, spec: VggSpec = VGG19_RELU3_1) -> None:
        super().__init__()
        self.spec = spec
        self.features = _layers(spec)
        self.weights: WeightsKind = "random"
        self.source: str | None = None
        """The weights file read, or None for the random initialisation."""
        self.randomise()

    def randomise(self) -> None:
        """torchvision's VGG initialisation (Kaiming normal, fan out; zero biases) from ``RANDOM_SEED``."""
        generator = torch.Generator().manual_seed(RANDOM_SEED)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                with torch.no_grad():
                    fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                    std = (2.0 / fan_out) ** 0.5
                    weight = torch.randn(module.weight.shape, generator=generator, device="cpu") * std
                    module.weight.copy_(weight)
                    if module.bias is not None:
                        module.bias.zero_()
        self.weights, self.source = "random", None
        self.requires_grad_(False)

    def load_imagenet(self, state: dict[str, Tensor], source: str) -> None:
        """Load the ``features.*`` tensors of a torchvision VGG state dict (others are ignored)."""
        wanted = self.state_dict()
        missing = [key for key in wanted if key not in state]
        if missing:
            raise ValueError(
                f"{source} is not a {self.spec.name} state dict: missing {', '.join(missing[:3])}"
            )
        self.load_state_dict({key: state[key] for key in wanted})
        self.weights, self.source = "imagenet", source
        self.requires_grad_(False)

    def forward(self, images: Tensor, mask: Tensor | None = None) -> Tensor:
        """Features (B, 256, H / 4, W / 4) of images (B, 3, H, W) in [0, 1], times ``mask`` (B, 1, H, W)
        after the ImageNet standardisation."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        standard = (images - mean) / std
        if mask is not None:
            standard = standard * mask
        features: Tensor = self.features(standard)
        return features


def vgg_weight_paths(path: str | Path | None = None, spec: VggSpec = VGG19_RELU3_1) -> list[Path]:
    """Where the loaders look for ``spec``'s ImageNet weights (VGG-19's by default), in order (module doc)."""
    candidates: list[Path] = []
    if path:
        given = Path(path).expanduser()
        if given.is_dir():
            candidates += [given / spec.safetensors_file, given / spec.torchvision_file]
        else:
            candidates.append(given)
    candidates.append(data_dir() / "weights" / spec.safetensors_file)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / spec.torchvision_file)
    return candidates


def _read(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no code
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def _load(spec: VggSpec, device: torch.device | str, path: str | Path | None) -> VggFeatures:
    network = VggFeatures(spec)
    found = next((candidate for candidate in vgg_weight_paths(path, spec) if candidate.is_file()), None)
    if found is None:
        if path:
            raise ValueError(f"no {spec.name} weights at {path}")
        log.info("%s: no ImageNet weights on this machine; random features", spec.name)
    else:
        try:
            network.load_imagenet(_read(found), str(found))
        except (RuntimeError, OSError, ValueError) as error:
            raise ValueError(f"{found} does not hold {spec.name} ImageNet weights: {error}") from error
    return network.to(device).eval()


def load_vgg_features(device: torch.device | str, path: str | Path | None = None) -> VggFeatures:
    """VGG-19 up to relu3_1, frozen, in eval mode on ``device``: ImageNet weights when found (module
    docstring), else the seeded random initialisation (logged). A file found but unreadable, or not
    VGG-19's, is a ``ValueError`` naming it."""
    return _load(VGG19_RELU3_1, device, path)


def load_vgg16_features(device: torch.device | str, path: str | Path | None = None) -> VggFeatures:
    """VGG16 up to relu3_3 (Unsup3d's perceptual features), as ``load_vgg_features``."""
    return _load(VGG16_RELU3_3, device, path)
