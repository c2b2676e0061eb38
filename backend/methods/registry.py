"""The registry of reconstruction methods: names -> specs, device choice, option parsing.

``create_method(name, device)`` builds a ready instance (weights loaded, if any) through the method's
``MethodSpec`` (``backend.methods.spec``); ``method_info()`` describes every registered method for
``mono2mesh methods`` and ``GET /v1/methods``; ``parse_options(name, data)`` turns a JSON object into the
method's validated options. Every error a client can cause is a ``MethodError`` whose message names the
problem.

The registry knows each method by the module that defines its ``SPEC`` and imports that module on first
use (``method_spec``): ``method_names()`` and ``DEFAULT_METHOD`` import nothing, so a command line can list
the choices without paying for torch, the networks or Open3D. Importing this module imports none of them.
Registering a method is one line in ``_METHODS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from backend.methods.errors import MethodError
from backend.methods.spec import MethodSpec

if TYPE_CHECKING:
    import torch

    from backend.methods.base import Method, MethodOptions

DEFAULT_METHOD = "fit"

_METHODS: dict[str, str] = {
    "fit": "backend.methods.fit",
    "softras": "backend.methods.softras",
    "adaptive-flow": "backend.methods.adaptive_flow",
    "pointcloud-poisson": "backend.methods.pointcloud_poisson",
    "mesh-inversion": "backend.methods.mesh_inversion",
    "unsup3d": "backend.methods.unsup3d",
}
"""Method name -> the module whose ``SPEC`` (a ``MethodSpec`` of that name) describes it."""

_SPECS: dict[str, MethodSpec] = {}


def method_names() -> list[str]:
    """Registered method names, the default first."""
    return sorted(_METHODS, key=lambda name: (name != DEFAULT_METHOD, name))


def method_spec(name: str) -> MethodSpec:
    """The spec registered as ``name``; ``MethodError`` naming the choices when there is none."""
    spec = _SPECS.get(name)
    if spec is not None:
        return spec
    if name not in _METHODS:
        raise MethodError(f"unknown method {name!r}; available: {', '.join(method_names())}")
    spec = importlib.import_module(_METHODS[name]).SPEC
    if not isinstance(spec, MethodSpec) or spec.name != name:
        raise RuntimeError(f"registry entry {name!r}: {_METHODS[name]}.SPEC is not the MethodSpec of {name}")
    _SPECS[name] = spec
    return spec


def availability(name: str) -> tuple[bool, str | None]:
    """(True, None) when ``name`` can run now, else (False, the reason, e.g. no checkpoint installed)."""
    return method_spec(name).availability()


def method_info() -> list[dict[str, Any]]:
    """JSON-ready descriptions: name, description, needs_checkpoint, available, reason, options_schema,
    checkpoints (the installed ones under ``checkpoint_root()``, newest first; the first is the default)."""
    from backend.checkpoints import installed_checkpoints

    info = []
    for name in method_names():
        spec = method_spec(name)
        available, reason = spec.availability()
        installed = installed_checkpoints(name) if spec.needs_checkpoint else []
        info.append(
            {
                "name": name,
                "description": spec.description,
                "needs_checkpoint": spec.needs_checkpoint,
                "available": available,
                "reason": reason,
                "options_schema": spec.options.model_json_schema(),
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

    options = method_spec(name).options
    if isinstance(data, options):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MethodError(f"options must be a JSON object, got {type(data).__name__}")
    try:
        return options.model_validate(data)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'options'}: {item['msg']}"
            for item in error.errors()
        )
        raise MethodError(f"invalid options for {name}: {problems}") from None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``backend.devices.resolve_device`` with its errors as ``MethodError`` (a client can cause them)."""
    from backend import devices

    try:
        return devices.resolve_device(device)
    except ValueError as error:
        raise MethodError(str(error)) from None


def create_method(name: str, device: str | torch.device = "auto", checkpoint: str | None = None) -> Method:
    """A ready instance of method ``name`` on ``device`` (weights from ``checkpoint`` when it needs them)."""
    spec = method_spec(name)
    return spec.create(resolve_device(device), checkpoint)
