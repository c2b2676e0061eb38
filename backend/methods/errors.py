"""``MethodError``: a request a method cannot serve. Imports nothing, so the registry can raise it without
loading torch (a ``ValueError``: bad input, not a bug; the server answers it with a 4xx status)."""

from __future__ import annotations


class MethodError(ValueError):
    """A request a method cannot serve (unknown method, missing checkpoint, refinement unsupported)."""
