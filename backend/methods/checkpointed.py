"""What every method that needs a trained checkpoint shares: finding, loading and describing it.

``load_method_checkpoint(method, checkpoint, template, device)`` resolves the path (the given one, or the
newest installed checkpoint of ``method`` under ``checkpoint_root()``) and loads it with the method and
template checks of ``backend.checkpoints``; every failure is a ``MethodError`` naming the file and the
problem. ``checkpoint_availability(method, train_command)`` is the ``availability()`` of such a method:
available when a checkpoint is installed, otherwise the reason and the command that trains one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from backend.checkpoints import (
    Checkpoint,
    CheckpointError,
    checkpoint_root,
    default_checkpoint,
    load_checkpoint,
)
from backend.methods.base import MethodError


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
