"""What every method that needs a trained checkpoint shares: ``CheckpointedMethod``, and finding,
loading and feeding its network.

``CheckpointedMethod[Options, Network]`` (a ``BaseMethod[Options]``) is built as ``Class(device,
checkpoint)``: it loads the network of the checkpoint (the given one, or the newest installed one of
its ``name``) with ``load_method_network`` into ``self.network`` and its file name into
``self.checkpoint_id``, so the report names it. A subclass sets ``name``, ``Options``, ``template``
(the checkpoint's template id, e.g. "icosphere-642") and ``train_command``, and implements
``build_network(settings)`` and ``reconstruct``; ``Class.spec(description)`` is its ``MethodSpec``
(needs a checkpoint; available when one is installed, otherwise the reason names ``train_command``).

``load_method_checkpoint(method, checkpoint, template, device)`` resolves the path (the given one, or the
newest installed checkpoint of ``method`` under ``checkpoint_root()``) and loads it with the method and
template checks of ``backend.checkpoints``; every failure is a ``MethodError`` naming the file and the
problem. ``load_method_network(method, checkpoint, template, device, build)`` goes on to rebuild the
network from the checkpoint's ``config["model"]`` with ``build`` and load the weights into it (a config or
weights that do not fit are a ``MethodError`` too). ``masked_crop_input(image, mask, size, device)`` is
the input of the networks that read the crop as RGBA with the RGB multiplied by the mask (softras,
pointcloud-poisson).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from backend.checkpoints import (
    Checkpoint,
    CheckpointError,
    checkpoint_root,
    default_checkpoint,
    load_checkpoint,
)
from backend.methods.base import BaseMethod, MethodError, MethodOptions
from backend.methods.spec import MethodSpec, RequiredPackage
from backend.models.inputs import model_input

Network = TypeVar("Network", bound=nn.Module)
OptionsT = TypeVar("OptionsT", bound=MethodOptions)


def load_method_checkpoint(
    method: str, checkpoint: str | Path | None, template: str, device: torch.device
) -> Checkpoint:
    """The checkpoint ``checkpoint`` (default: the newest installed one) of ``method`` on ``device``.

    Raises:
        MethodError: none installed, a missing or unreadable file, another method's or template's.
    """
    path = Path(checkpoint).expanduser() if checkpoint is not None else default_checkpoint(method)
    if path is None:
        raise MethodError(f"no {method} checkpoint installed in {checkpoint_root()}; pass a checkpoint")
    try:
        return load_checkpoint(path, method=method, template=template, device=device)
    except CheckpointError as error:
        raise MethodError(str(error)) from error


def load_method_network(
    method: str,
    checkpoint: str | Path | None,
    template: str,
    device: torch.device,
    build: Callable[[dict[str, Any]], Network],
) -> tuple[Network, str]:
    """The network of a ``method`` checkpoint, in eval mode on ``device``, and the checkpoint's file name.

    ``build`` makes the network from the checkpoint's ``config["model"]`` settings (a dict).

    Raises:
        MethodError: as ``load_method_checkpoint``, or settings / weights that do not fit the network.
    """
    loaded = load_method_checkpoint(method, checkpoint, template, device)
    try:
        network = build(dict(loaded.meta.config.get("model", {})))
        network.load_state_dict(loaded.weights)
    except (ValueError, RuntimeError) as error:  # config or weights that do not fit the network
        raise MethodError(f"{loaded.path} does not hold a usable {method} network: {error}") from error
    network.to(device).eval()
    return network, loaded.path.name


def masked_crop_input(image: np.ndarray, mask: np.ndarray, size: int, device: torch.device) -> Tensor:
    """(1, 4, size, size) RGBA network input (``model_input``) from a crop (S, S, 3) float in [0, 1] and
    its (S, S) mask, both area-resized to ``size``."""
    small = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(small).permute(2, 0, 1)[None].to(device)  # (1, 3, s, s)
    alpha = torch.from_numpy(small_mask)[None, None].to(device)  # (1, 1, s, s)
    return model_input(rgb, alpha)


class CheckpointedMethod(BaseMethod[OptionsT], Generic[OptionsT, Network]):
    """A method that runs a trained network (module docstring); one instance per device and checkpoint."""

    template: ClassVar[str]
    """The template id the checkpoint must have been trained for (``backend.checkpoints``)."""
    train_command: ClassVar[str]
    """The command that trains a checkpoint, named when none is installed."""

    def __init__(self, device: torch.device | str = "cpu", checkpoint: str | Path | None = None) -> None:
        super().__init__(device)
        self.network: Network
        self.network, self.checkpoint_id = load_method_network(
            self.name, checkpoint, self.template, self.device, self.build_network
        )

    @abstractmethod
    def build_network(self, settings: dict[str, Any]) -> Network:
        """The untrained network for a checkpoint's ``config["model"]`` settings (a dict)."""

    @classmethod
    def spec(cls, description: str, *, requires: tuple[RequiredPackage, ...] = ()) -> MethodSpec:
        """This class's ``MethodSpec``: needs a checkpoint, available when one is installed."""
        return MethodSpec(
            cls.name, description, cls._checked_options(), cls._build, needs_checkpoint=True,
            train_command=cls.train_command, requires=requires,
        )  # fmt: skip

    @classmethod
    def _build(cls, device: torch.device, checkpoint: str | None) -> Self:
        return cls(device, checkpoint)
