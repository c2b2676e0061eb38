"""What every method that needs a trained checkpoint shares: finding, loading and describing it.

``load_method_checkpoint(method, checkpoint, template, device)`` resolves the path (the given one, or the
newest installed checkpoint of ``method`` under ``checkpoint_root()``) and loads it with the method and
template checks of ``backend.checkpoints``; every failure is a ``MethodError`` naming the file and the
problem. ``load_method_network(method, checkpoint, template, device, build)`` goes on to rebuild the
network from the checkpoint's ``config["model"]`` with ``build`` and load the weights into it (a config or
weights that do not fit are a ``MethodError`` too). ``checkpoint_availability(method, train_command)``
is the ``availability()`` of such a method: available when a checkpoint is installed, otherwise the
reason and the command that trains one. ``masked_crop_input(image, mask, size, device)`` is the input of
the networks that read the crop as RGBA with the RGB multiplied by the mask (softras, pointcloud-poisson).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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
from backend.methods.base import MethodError
from backend.models.softras import model_input

Network = TypeVar("Network", bound=nn.Module)


def checkpoint_availability(method: str, train_command: str) -> tuple[bool, str | None]:
    """(True, None) when a ``method`` checkpoint is installed, else (False, the reason)."""
    if default_checkpoint(method) is not None:
        return True, None
    return False, (
        f"no {method} checkpoint installed in {checkpoint_root()}; train one with `{train_command}` "
        "or pass a checkpoint"
    )


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
