"""Where the server gets its methods: the ``MethodFactory`` protocol and the registry behind it.

The server never names a method class; it asks a ``MethodFactory`` for the method list, for option
validation and for instances. ``RegistryMethodFactory`` (the default) forwards to
``backend.methods.registry``; tests pass a small fake instead. Every error a client can cause is a
``backend.methods.base.MethodError`` whose message names the problem.
"""

from __future__ import annotations

from typing import Any, Protocol

from backend.methods.base import Method, MethodOptions


class MethodFactory(Protocol):
    """The methods a server offers."""

    @property
    def default_method(self) -> str:
        """The method of a job that names none."""
        ...

    def method_info(self) -> list[dict[str, Any]]:
        """JSON-ready descriptions: name, description, needs_checkpoint, available, reason, options_schema."""
        ...

    def availability(self, name: str) -> tuple[bool, str | None]:
        """(True, None) when ``name`` can run now, else (False, why); ``MethodError`` for an unknown name."""
        ...

    def parse_options(self, name: str, data: dict[str, Any]) -> MethodOptions:
        """Validate a JSON object into the options of ``name``; ``MethodError`` naming what is wrong."""
        ...

    def create_method(self, name: str, device: str) -> Method:
        """A ready instance of ``name`` on ``device`` (weights loaded); ``MethodError`` when it cannot."""
        ...


class RegistryMethodFactory:
    """``MethodFactory`` over ``backend.methods.registry`` (imported on first use)."""

    @property
    def default_method(self) -> str:
        from backend.methods import registry

        return registry.DEFAULT_METHOD

    def method_info(self) -> list[dict[str, Any]]:
        from backend.methods import registry

        return registry.method_info()

    def availability(self, name: str) -> tuple[bool, str | None]:
        from backend.methods import registry

        return registry.availability(name)

    def parse_options(self, name: str, data: dict[str, Any]) -> MethodOptions:
        from backend.methods import registry

        return registry.parse_options(name, data)

    def create_method(self, name: str, device: str) -> Method:
        from backend.methods import registry

        return registry.create_method(name, device)
