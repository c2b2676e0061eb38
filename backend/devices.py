"""Choosing a torch device by name, one rule for the backend and for training.

``resolve_device("auto")`` prefers CUDA, then MPS, then the CPU; any other name (or a ``torch.device``)
is checked against what this machine has, with a ``ValueError`` that says what to use instead.
"""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda, then mps, then cpu; other names checked against what this machine has.

    Raises:
        ValueError: an unknown device name, or cuda / mps asked for where it is not available.
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but this machine has no usable CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for but MPS is not available here")
    return device
