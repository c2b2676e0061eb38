"""What every method that needs a trained checkpoint shares: finding, loading and describing it.

``load_method_checkpoint(method, checkpoint, template, device)`` resolves the path (the given one, or the
newest installed checkpoint of ``method`` under ``checkpoint_root()``) and loads it with the method and
template checks of ``backend.checkpoints``; every failure is a ``MethodError`` naming the file and the
problem. ``load_method_network(method, checkpoint, template, device, build)`` goes on to rebuild the
network from the checkpoint's ``config["model"]`` with ``build`` and load the weights into it (a config or
weights that do not fit are a ``MethodError`` too). ``checkpoint_availability(method, train_command)``
is the ``availability()`` of such a method: available when a checkpoint is installed, otherwise the
reason and the command that trains one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from backend.checkpoints import (
    Checkpoint,
    CheckpointError,
    checkpoint_root,
    default_checkpoint,
    load_checkpoint,
)
from backend.methods.base import MethodError

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
