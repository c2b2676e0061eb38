"""VGG-19's first layers for MeshInversion's feature loss and VGG16's up to relu3_3 for Unsup3d's: shapes,
masking, the seeded random initialisation, and ImageNet weights found on the machine (never downloaded),
each VGG under its own file names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backend.models.vgg import (
    VGG16_RELU3_3,
    VGG16_SAFETENSORS_FILE,
    VGG16_TORCHVISION_FILE,
    VGG19_SAFETENSORS_FILE,
    VGG19_TORCHVISION_FILE,
    VggFeatures,
    load_vgg16_features,
    load_vgg_features,
    vgg_weight_paths,
)


@pytest.fixture(autouse=True)
def _no_weights_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder and torch hub cache: whatever this machine holds is not seen."""
    monkeypatch.setenv("MONO2MESH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path


def test_features_have_torchvision_names_and_shapes() -> None:
    network = load_vgg_features("cpu")
    assert network.weights == "random" and network.source is None
    names = [name for name, _ in network.named_parameters()]
    assert names[0] == "features.0.weight" and names[-1] == "features.10.bias" and len(names) == 10
    assert not any(parameter.requires_grad for parameter in network.parameters())
    images = torch.rand(2, 3, 32, 32)
    assert network(images).shape == (2, 256, 8, 8)
    # the mask applies after the ImageNet standardisation: a masked-out image gives the all-zero input's
    mask = torch.zeros(2, 1, 32, 32)
    torch.testing.assert_close(network(images, mask), network.features(torch.zeros(2, 3, 32, 32)))
    images.requires_grad_(True)
    network(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_random_features_are_the_same_every_time() -> None:
    first, second = VggFeatures(), VggFeatures()
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_imagenet_weights_are_found_without_download(_no_weights_here: Path) -> None:
    source = VggFeatures()
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(1.0)
    state = {key: value.clone() for key, value in source.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # the whole network's file: other keys are ignored
    home = _no_weights_here / "home" / "weights"
    home.mkdir(parents=True)
    save_file(state, str(home / VGG19_SAFETENSORS_FILE))
    loaded = load_vgg_features("cpu")
    assert loaded.weights == "imagenet" and loaded.source == str(home / VGG19_SAFETENSORS_FILE)
    assert torch.equal(loaded.state_dict()["features.0.weight"], source.state_dict()["features.0.weight"])
    # torchvision's download in the hub cache (read with weights_only=True)
    (home / VGG19_SAFETENSORS_FILE).unlink()
    hub = _no_weights_here / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / VGG19_TORCHVISION_FILE)
    assert load_vgg_features("cpu").source == str(hub / VGG19_TORCHVISION_FILE)
    assert vgg_weight_paths()[-1] == hub / VGG19_TORCHVISION_FILE


def test_a_given_path_must_hold_vgg_weights(_no_weights_here: Path) -> None:
    with pytest.raises(ValueError, match="no VGG-19 weights"):
        load_vgg_features("cpu", _no_weights_here / "missing.safetensors")
    wrong = _no_weights_here / "wrong.safetensors"
    save_file({"features.0.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(ValueError, match="does not hold VGG-19"):
        load_vgg_features("cpu", wrong)


def test_vgg16_features_up_to_relu3_3() -> None:
    """torchvision's ``vgg16().features[0:16]``: seven 3 x 3 convolutions (conv1_1 ... conv3_3), two pools."""
    network = load_vgg16_features("cpu")
    assert network.weights == "random" and network.spec == VGG16_RELU3_3
    names = [name for name, _ in network.named_parameters()]
    assert names[0] == "features.0.weight" and names[-1] == "features.14.bias" and len(names) == 14
    assert len(network.features) == 16 and isinstance(network.features[15], torch.nn.ReLU)
    assert not any(parameter.requires_grad for parameter in network.parameters())
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    features = network(images)
    assert features.shape == (2, 256, 8, 8) and (features >= 0).all()
    features.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    # relu3_3 continues relu3_1 (the same first layers): with VGG-19's tensors copied over, the shared
    # prefix of the VGG16 features is VGG-19's output
    vgg19 = VggFeatures()
    with torch.no_grad():
        for index in range(12):
            module, other = network.features[index], vgg19.features[index]
            if isinstance(module, torch.nn.Conv2d) and isinstance(other, torch.nn.Conv2d):
                module.load_state_dict(other.state_dict())
        torch.testing.assert_close(network.features[:12](images), vgg19.features(images))


def test_each_vgg_is_looked_up_under_its_own_files(_no_weights_here: Path) -> None:
    with pytest.raises(ValueError, match="no VGG16 weights"):
        load_vgg16_features("cpu", _no_weights_here / "missing.pth")
    source = VggFeatures(VGG16_RELU3_3)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(1.0)
    state = {key: value.clone() for key, value in source.state_dict().items()}
    hub = _no_weights_here / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / VGG16_TORCHVISION_FILE)
    assert load_vgg16_features("cpu").source == str(hub / VGG16_TORCHVISION_FILE)
    assert load_vgg_features("cpu").weights == "random"  # VGG-19 does not read VGG16's file
    assert vgg_weight_paths(None, VGG16_RELU3_3)[-1] == hub / VGG16_TORCHVISION_FILE
    home = _no_weights_here / "home" / "weights"
    home.mkdir(parents=True)
    save_file(state, str(home / VGG16_SAFETENSORS_FILE))
    loaded = load_vgg16_features("cpu")
    assert loaded.weights == "imagenet" and loaded.source == str(home / VGG16_SAFETENSORS_FILE)
    assert torch.equal(loaded.state_dict()["features.14.weight"], state["features.14.weight"])
    vgg19_state = VggFeatures().state_dict()  # VGG-19's first layers only: no conv3_2, conv3_3
    save_file(vgg19_state, str(_no_weights_here / "short.safetensors"))
    with pytest.raises(ValueError, match="does not hold VGG16"):
        load_vgg16_features("cpu", _no_weights_here / "short.safetensors")
