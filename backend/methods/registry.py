"""The registry of reconstruction methods: names -> classes, device choice, option parsing.

``create_method(name, device)`` builds a ready instance (weights loaded, if any);
``method_info()`` describes every registered method for ``mono2mesh methods`` and ``GET /v1/methods``;
``parse_options(name, data)`` turns a JSON object into the method's validated options. Every error a
client can cause is a ``MethodError`` whose message names the problem.
"""

from __future__ import annotations

from typing import Any

import pydantic
import torch

from backend import devices
from backend.checkpoints import installed_checkpoints
from backend.methods.adaptive_flow import AdaptiveFlowMethod
from backend.methods.base import Method, MethodError, MethodOptions
from backend.methods.fit import FitMethod
from backend.methods.pointcloud_poisson import PointCloudPoissonMethod
from backend.methods.softras import SoftRasMethod

DEFAULT_METHOD = "fit"

_METHODS: dict[str, type[Any]] = {
    cls.name: cls for cls in (FitMethod, SoftRasMethod, AdaptiveFlowMethod, PointCloudPoissonMethod)
}


def method_names() -> list[str]:
    """Registered method names, the default first."""
    return sorted(_METHODS, key=lambda name: (name != DEFAULT_METHOD, name))


def method_class(name: str) -> type[Any]:
    """The class registered as ``name``; ``MethodError`` naming the choices when there is none."""
    try:
        return _METHODS[name]
    except KeyError:
        raise MethodError(f"unknown method {name!r}; available: {', '.join(method_names())}") from None


def availability(name: str) -> tuple[bool, str | None]:
    """(True, None) when ``name`` can run now, else (False, the reason, e.g. no checkpoint installed)."""
    cls = method_class(name)
    if not cls.needs_checkpoint:
        return True, None
    check = getattr(cls, "availability", None)
    if check is None:
        return False, f"{name} needs a checkpoint and none is installed"
    available, reason = check()
    return bool(available), reason


def method_info() -> list[dict[str, Any]]:
    """JSON-ready descriptions: name, description, needs_checkpoint, available, reason, options_schema,
    checkpoints (the installed ones under ``checkpoint_root()``, newest first; the first is the default)."""
    info = []
    for name in method_names():
        cls = method_class(name)
        available, reason = availability(name)
        installed = installed_checkpoints(name) if cls.needs_checkpoint else []
        info.append(
            {
                "name": name,
                "description": cls.description,
                "needs_checkpoint": cls.needs_checkpoint,
                "available": available,
                "reason": reason,
                "options_schema": cls.Options.model_json_schema(),
                "checkpoints": [
                    {
                        "name": checkpoint.name,
                        "path": str(checkpoint.path),
                        "created": checkpoint.meta.created,
                        "step": checkpoint.meta.step,
                        "metrics": checkpoint.meta.metrics,
                    }
                    for checkpoint in installed
                ],
            }
        )
    return info


def parse_options(name: str, data: dict[str, Any] | MethodOptions | None) -> MethodOptions:
    """Validate ``data`` (a JSON object) into ``name``'s options; unknown keys and bad values raise."""
    cls = method_class(name)
    if isinstance(data, cls.Options):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MethodError(f"options must be a JSON object, got {type(data).__name__}")
    try:
        return cls.Options.model_validate(data)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'options'}: {item['msg']}"
            for item in error.errors()
        )
        raise MethodError(f"invalid options for {name}: {problems}") from None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``backend.devices.resolve_device`` with its errors as ``MethodError`` (a client can cause them)."""
    try:
        return devices.resolve_device(device)
    except ValueError as error:
        raise MethodError(str(error)) from None


def create_method(name: str, device: str | torch.device = "auto", checkpoint: str | None = None) -> Method:
    """A ready instance of method ``name`` on ``device`` (weights from ``checkpoint`` when it needs them)."""
    cls = method_class(name)
    resolved = resolve_device(device)
    if cls.needs_checkpoint:
        available, reason = availability(name)
        if checkpoint is None and not available:
            raise MethodError(reason or f"{name} needs a checkpoint")
        instance: Method = cls(resolved, checkpoint=checkpoint)
        return instance
    if checkpoint is not None:
        raise MethodError(f"method {name} takes no checkpoint")
    instance = cls(resolved)
    return instance
