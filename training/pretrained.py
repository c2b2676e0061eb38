"""ImageNet-pretrained torchvision encoders, used only when their weights are already on this machine.

``imagenet_encoder(arch, policy, path)`` builds ``torchvision.models.<arch>`` and fills it with ImageNet
weights found, in order, at ``path`` (a weights file, or a folder holding torchvision's file name such as
``resnet18-f37072fd.pth``) and in the torch hub cache (``torch.hub.get_dir()/checkpoints``, i.e.
``$TORCH_HOME/hub/checkpoints``, where torchvision keeps what it downloads).
Policies (``TrainConfig.pretrained``):

- ``"auto"``: use the weights when found; otherwise random initialisation and a warning saying where it
  looked and how to provide them;
- ``"none"``: random initialisation, nothing looked up;
- ``"download"``: as auto, but let torchvision download them into the hub cache when absent;
- ``"require"``: as auto, but a ``FileNotFoundError`` when absent.

Nothing is downloaded unless the policy is ``"download"``. ``.pth`` files are read with
``torch.load(weights_only=True)`` (tensors only, no code), ``.safetensors`` with safetensors.
The caller slices the returned classification network into the encoder it needs (e.g. a ResNet without
its pooling and fc layers) and feeds it ``normalise_imagenet(images)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POLICIES = ("auto", "none", "download", "require")


@dataclass(frozen=True)
class PretrainedEncoder:
    """A torchvision network and where its weights came from (``source`` None: random initialisation)."""

    model: nn.Module
    pretrained: bool
    source: str | None


def imagenet_weights(arch: str) -> torchvision.models.WeightsEnum:
    """torchvision's default ImageNet weights entry for ``arch`` (e.g. ``"resnet18"``)."""
    try:
        weights: torchvision.models.WeightsEnum = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as error:
        raise ValueError(f"torchvision has no model {arch!r} with ImageNet weights") from error
    return weights


def weights_file_name(arch: str) -> str:
    """The file name torchvision stores ``arch``'s ImageNet weights under (``resnet18-f37072fd.pth``)."""
    return imagenet_weights(arch).url.rsplit("/", 1)[-1]


def candidate_paths(arch: str, path: str | Path | None = None) -> list[Path]:
    """Where ``imagenet_encoder`` looks for ``arch``'s weights, in order."""
    name = weights_file_name(arch)
    candidates: list[Path] = []
    if path:
        given = Path(path).expanduser()
        candidates += [given / name, given / "checkpoints" / name] if given.is_dir() else [given]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / name)
    return candidates


def find_imagenet_weights(arch: str, path: str | Path | None = None) -> Path | None:
    """The first existing file of ``candidate_paths(arch, path)``, or None."""
    return next((p for p in candidate_paths(arch, path) if p.is_file()), None)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def imagenet_encoder(
    arch: str = "resnet18", policy: str = "auto", path: str | Path | None = None
) -> PretrainedEncoder:
    """``torchvision.models.<arch>`` with ImageNet weights when the policy and this machine allow.

    Raises:
        ValueError: unknown arch or policy, or a weights file that does not fit the network.
        FileNotFoundError: policy "require" and no weights found (the message lists where it looked).
    """
    if policy not in POLICIES:
        raise ValueError(f"pretrained policy {policy!r} is not one of {', '.join(POLICIES)}")
    imagenet_weights(arch)  # an unknown arch is an error whatever the policy
    model = torchvision.models.get_model(arch, weights=None)
    if policy == "none":
        log.info("%s: random initialisation (pretrained=none)", arch)
        return PretrainedEncoder(model, False, None)
    found = find_imagenet_weights(arch, path)
    if found is None and policy == "download":
        log.warning(
            "%s: downloading ImageNet weights into %s (pretrained=download)", arch, torch.hub.get_dir()
        )
        model.load_state_dict(imagenet_weights(arch).get_state_dict(progress=True))
        return PretrainedEncoder(
            model, True, str(Path(torch.hub.get_dir()) / "checkpoints" / weights_file_name(arch))
        )
    if found is None:
        looked = ", ".join(str(p) for p in candidate_paths(arch, path))
        message = (
            f"{arch}: no ImageNet weights on this machine (looked in {looked}); "
            f"put {weights_file_name(arch)} there, set pretrained_path, or use pretrained=download"
        )
        if policy == "require":
            raise FileNotFoundError(message)
        log.warning("%s; training starts from random initialisation", message)
        return PretrainedEncoder(model, False, None)
    try:
        model.load_state_dict(_read_state_dict(found))
    except (RuntimeError, ValueError, OSError) as error:
        raise ValueError(f"{found} does not hold ImageNet weights for {arch}: {error}") from error
    log.info("%s: ImageNet weights from %s", arch, found)
    return PretrainedEncoder(model, True, str(found))


def normalise_imagenet(images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] standardised with ImageNet's mean and std, as the weights expect."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std
