"""VGG-19's first layers as a frozen feature extractor: MeshInversion's feature-level Chamfer texture loss.

- ``VggFeatures``: torchvision VGG-19 ``features[0:12]`` (conv1_1 ... relu3_1, as the MeshInversion
  reference uses it), with torchvision's layer indices (state-dict keys ``features.0.weight`` ...
  ``features.10.bias``). ``forward(images, mask)``: images (B, 3, H, W) in [0, 1], standardised with
  ImageNet's mean and std, multiplied by the mask (B, 1, H, W) after the standardisation (so the
  background is 0, as in the reference), -> features (B, 256, H / 4, W / 4). Parameters never train.
  ``weights`` says what it holds: "imagenet" or "random".
- ``load_vgg_features(device, path=None)``: ImageNet weights when they are already on this machine, else
  a fixed random initialisation (torchvision's Kaiming-normal scheme from a seeded generator, so every
  run gets the same features). Nothing is ever downloaded. Looked up, in order (``vgg_weight_paths``):
  ``path`` (a file, or a folder holding one of the names below), ``<data_dir>/weights/vgg19.safetensors``
  (``backend.paths.data_dir``), and torchvision's download ``vgg19-dcbb9e9d.pth`` in the torch hub cache
  (``torch.hub.get_dir()/checkpoints``, where ``torchvision.models.vgg19(weights="DEFAULT")`` and the
  training side's ``--pretrained download`` put it). A ``.pth`` file is read with
  ``torch.load(weights_only=True)``: tensors only, no code runs. Only the ``features.*`` tensors of the
  twelve layers are used (the file may hold the whole classifier).

To provide the weights on a machine without network: copy ``vgg19-dcbb9e9d.pth`` into
``$TORCH_HOME/hub/checkpoints/`` (or convert it to ``vgg19.safetensors`` under the data folder's
``weights/``).
"""

from __future__ import annotations

import logging
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


def _layers() -> nn.Sequential:
    modules: list[nn.Module] = []
    for layer in LAYERS:
        if layer == POOL:
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            channels_in, channels_out = layer
            modules += [nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1), nn.ReLU()]
    return nn.Sequential(*modules)


class VggFeatures(nn.Module):
    """VGG-19 up to relu3_1, frozen (module docstring): (B, 3, H, W) -> (B, 256, H / 4, W / 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _layers()
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
        """Load the ``features.*`` tensors of a torchvision VGG-19 state dict (others are ignored)."""
        wanted = self.state_dict()
        missing = [key for key in wanted if key not in state]
        if missing:
            raise ValueError(f"{source} is not a VGG-19 state dict: missing {', '.join(missing[:3])}")
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


def vgg_weight_paths(path: str | Path | None = None) -> list[Path]:
    """Where ``load_vgg_features`` looks for ImageNet weights, in order (module docstring)."""
    candidates: list[Path] = []
    if path:
        given = Path(path).expanduser()
        if given.is_dir():
            candidates += [given / VGG19_SAFETENSORS_FILE, given / VGG19_TORCHVISION_FILE]
        else:
            candidates.append(given)
    candidates.append(data_dir() / "weights" / VGG19_SAFETENSORS_FILE)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG19_TORCHVISION_FILE)
    return candidates


def _read(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no code
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def load_vgg_features(device: torch.device | str, path: str | Path | None = None) -> VggFeatures:
    """The frozen feature extractor in eval mode on ``device``: ImageNet weights when found (module
    docstring), else the seeded random initialisation (logged). A file found but unreadable, or not
    VGG-19's, is a ``ValueError`` naming it."""
    network = VggFeatures()
    found = next((candidate for candidate in vgg_weight_paths(path) if candidate.is_file()), None)
    if found is None:
        if path:
            raise ValueError(f"no VGG-19 weights at {path}")
        log.info("VGG-19: no ImageNet weights on this machine; random features")
    else:
        try:
            network.load_imagenet(_read(found), str(found))
        except (RuntimeError, OSError, ValueError) as error:
            raise ValueError(f"{found} does not hold VGG-19 ImageNet weights: {error}") from error
    return network.to(device).eval()
