"""The registry of reconstruction methods: names -> classes, device choice, option parsing.

``create_method(name, device)`` builds a ready instance (weights loaded, if any);
``method_info()`` describes every registered method for ``mono2mesh methods`` and ``GET /v1/methods``;
``parse_options(name, data)`` turns a JSON object into the method's validated options. Every error a
client can cause is a ``MethodError`` whose message names the problem.

The registry knows each method as ``"module:Class"`` and imports a method's module on first use
(``method_class``): ``method_names()`` and ``DEFAULT_METHOD`` import nothing, so a command line can list
the choices without paying for torch, the networks or Open3D. Importing this module imports none of them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from backend.methods.base import Method, MethodError, MethodOptions

DEFAULT_METHOD = "fit"

_METHODS: dict[str, str] = {
    "fit": "backend.methods.fit:FitMethod",
    "softras": "backend.methods.softras:SoftRasMethod",
    "adaptive-flow": "backend.methods.adaptive_flow:AdaptiveFlowMethod",
    "pointcloud-poisson": "backend.methods.pointcloud_poisson:PointCloudPoissonMethod",
}
"""Method name -> ``"module:Class"``; the class's ``name`` attribute must be the key."""

_REQUIRED_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "pointcloud-poisson": (("open3d", "pip install open3d"),),
}
"""Method name -> (module, how to install it) of the optional packages it cannot run without."""

_CLASSES: dict[str, type[Any]] = {}


def _method_error(message: str) -> MethodError:
    from backend.methods.base import MethodError  # imports torch: only when there is an error to raise

    return MethodError(message)


def method_names() -> list[str]:
    """Registered method names, the default first."""
    return sorted(_METHODS, key=lambda name: (name != DEFAULT_METHOD, name))


def method_class(name: str) -> type[Any]:
    """The class registered as ``name``; ``MethodError`` naming the choices when there is none."""
    cls = _CLASSES.get(name)
    if cls is not None:
        return cls
    try:
        module_name, _, class_name = _METHODS[name].partition(":")
    except KeyError:
        raise _method_error(f"unknown method {name!r}; available: {', '.join(method_names())}") from None
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls.name != name:
        raise RuntimeError(f"registry entry {name!r} -> {_METHODS[name]} names itself {cls.name!r}")
    _CLASSES[name] = cls
    return cls


def _missing_package(name: str) -> str | None:
    """Why ``name`` cannot run for want of an optional package (found without importing it), else None."""
    for module, install in _REQUIRED_PACKAGES.get(name, ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{name} needs the {module} package, which is not installed; install it with `{install}`"
    return None


def availability(name: str) -> tuple[bool, str | None]:
    """(True, None) when ``name`` can run now, else (False, the reason, e.g. no checkpoint installed)."""
    cls = method_class(name)
    missing = _missing_package(name)
    if missing is not None:
        return False, missing
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
    from backend.checkpoints import installed_checkpoints

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
    import pydantic

    cls = method_class(name)
    if isinstance(data, cls.Options):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _method_error(f"options must be a JSON object, got {type(data).__name__}")
    try:
        return cls.Options.model_validate(data)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'options'}: {item['msg']}"
            for item in error.errors()
        )
        raise _method_error(f"invalid options for {name}: {problems}") from None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``backend.devices.resolve_device`` with its errors as ``MethodError`` (a client can cause them)."""
    from backend import devices

    try:
        return devices.resolve_device(device)
    except ValueError as error:
        raise _method_error(str(error)) from None


def create_method(name: str, device: str | torch.device = "auto", checkpoint: str | None = None) -> Method:
    """A ready instance of method ``name`` on ``device`` (weights from ``checkpoint`` when it needs them)."""
    cls = method_class(name)
    resolved = resolve_device(device)
    if cls.needs_checkpoint:
        available, reason = availability(name)
        if checkpoint is None and not available:
            raise _method_error(reason or f"{name} needs a checkpoint")
        instance: Method = cls(resolved, checkpoint=checkpoint)
        return instance
    if checkpoint is not None:
        raise _method_error(f"method {name} takes no checkpoint")
    instance = cls(resolved)
    return instance
