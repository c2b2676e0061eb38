"""training.pretrained: ImageNet weights only from this machine (hub cache or a path), never downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from training.pretrained import (
    candidate_paths,
    imagenet_encoder,
    normalise_imagenet,
    weights_file_name,
)

ARCH = "resnet18"


def _reference() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return torchvision.models.get_model(ARCH, weights=None).state_dict()


def _equal(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())


def test_without_weights_it_starts_from_random_init_and_says_so(
    hub: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        encoder = imagenet_encoder(ARCH, "auto")
    assert not encoder.pretrained and encoder.source is None
    assert (
        f"no ImageNet weights on this machine (looked in {hub / 'checkpoints' / 'resnet18-f37072fd.pth'})"
        in caplog.text
    )
    assert "training starts from random initialisation" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"put resnet18-f37072fd\.pth there, set pretrained_path"):
        imagenet_encoder(ARCH, "require")
    caplog.clear()
    assert not imagenet_encoder(ARCH, "none").pretrained
    assert "no ImageNet weights" not in caplog.text


def test_weights_in_the_hub_cache_are_used(hub: Path) -> None:
    reference = _reference()
    assert weights_file_name(ARCH) == "resnet18-f37072fd.pth"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(reference, hub / "checkpoints" / weights_file_name(ARCH))  # what torchvision downloads
    encoder = imagenet_encoder(ARCH, "auto")
    assert encoder.pretrained and encoder.source == str(hub / "checkpoints" / "resnet18-f37072fd.pth")
    assert _equal(encoder.model, reference)


def test_a_configured_file_or_folder_comes_first(hub: Path, tmp_path: Path) -> None:
    reference = _reference()
    save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp_path / "r18.safetensors"))
    encoder = imagenet_encoder(ARCH, "require", tmp_path / "r18.safetensors")
    assert encoder.source == str(tmp_path / "r18.safetensors") and _equal(encoder.model, reference)
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(reference, folder / weights_file_name(ARCH))
    assert candidate_paths(ARCH, folder)[0] == folder / "resnet18-f37072fd.pth"
    assert _equal(imagenet_encoder(ARCH, "auto", folder).model, reference)


def test_a_wrong_file_is_an_error_not_a_silent_fallback(hub: Path, tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not hold ImageNet weights for resnet18"):
        imagenet_encoder(ARCH, "auto", tmp_path / "other.pth")
    with pytest.raises(ValueError, match="pretrained policy 'maybe' is not one of"):
        imagenet_encoder(ARCH, "maybe")
    with pytest.raises(ValueError, match="torchvision has no model 'resnet7'"):
        imagenet_encoder("resnet7", "none")


def test_normalise_imagenet() -> None:
    images = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.allclose(normalise_imagenet(images), torch.zeros(2, 3, 4, 4), atol=1e-6)
