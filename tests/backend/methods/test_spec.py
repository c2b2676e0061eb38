"""Method specs and the base classes behind them: the registry's typed view of a method, the checks
every method shares (options type, input shapes, empty masks) and what its spec says about availability."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from backend.geometry.mesh import TexturedMesh
from backend.imaging.errors import MaskError
from backend.methods import registry
from backend.methods.base import BaseMethod, MethodError, MethodOptions, ProgressCallback, Reconstruction
from backend.methods.fit import FitMethod, FitOptions
from backend.methods.softras import SoftRasOptions
from backend.methods.spec import MethodSpec, RequiredPackage


class TinyOptions(MethodOptions):
    crop_size: int = 32


class TinyMethod(BaseMethod[TinyOptions]):
    name = "tiny"
    Options = TinyOptions

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction:
        raise NotImplementedError


def test_every_registered_method_has_a_spec_of_its_name() -> None:
    for name in registry.method_names():
        spec = registry.method_spec(name)
        assert isinstance(spec, MethodSpec) and spec.name == name and spec.description
        assert issubclass(spec.options, MethodOptions) and "crop_size" in spec.options.model_fields
        assert spec.needs_checkpoint == (spec.train_command is not None)
    assert registry.method_spec("pointcloud-poisson").requires == (
        RequiredPackage("open3d", "pip install open3d"),
    )
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        registry.method_spec("nope")


def test_a_spec_checks_packages_and_checkpoints() -> None:
    spec = TinyMethod.spec(
        "a tiny method", requires=(RequiredPackage("no_such_package_xyz", "pip install xyz"),)
    )
    assert spec.name == "tiny" and spec.options is TinyOptions and not spec.needs_checkpoint
    available, reason = spec.availability()
    assert not available and reason is not None and "pip install xyz" in reason
    method = TinyMethod.spec("a tiny method").create(torch.device("cpu"))
    assert isinstance(method, TinyMethod) and method.device == torch.device("cpu")
    with pytest.raises(MethodError, match="takes no checkpoint"):
        spec.create(torch.device("cpu"), "x.safetensors")
    with pytest.raises(ValueError, match="train_command"):
        MethodSpec("x", "y", TinyOptions, TinyMethod.spec("z").build, needs_checkpoint=True)


def test_options_without_a_crop_size_are_refused() -> None:
    class Bare(MethodOptions):
        steps: int = 1

    class BareMethod(TinyMethod):
        Options = Bare

    with pytest.raises(TypeError, match="crop_size"):
        BareMethod.spec("no crop")


def test_base_checks_options_and_inputs() -> None:
    method = FitMethod("cpu")
    assert method.crop_size(FitOptions(crop_size=96)) == 96
    with pytest.raises(TypeError, match="fit expects FitOptions, got SoftRasOptions"):
        method.crop_size(SoftRasOptions())
    with pytest.raises(MaskError, match="the mask is empty"):
        method.check_inputs(np.ones((8, 8, 3), np.float32), np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="S, S, 3"):
        method.check_inputs(np.ones((8, 4, 3), np.float32), np.ones((8, 4), bool))


def test_checkpointed_specs_name_their_train_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("MONO2MESH_HOME", str(tmp_path))
    spec = registry.method_spec("softras")
    assert spec.needs_checkpoint and spec.train_command == "mono2mesh-train softras"
    available, reason = spec.availability()
    assert not available and reason is not None and "mono2mesh-train softras" in reason
    with pytest.raises(MethodError, match="no softras checkpoint installed"):
        spec.create(torch.device("cpu"))
