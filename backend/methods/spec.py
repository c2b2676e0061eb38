"""``MethodSpec``: everything the registry, the command line and the server know about a method, in one
typed value per method (each method module's ``SPEC``).

A spec holds the method's registry ``name``, a one-line ``description``, its pydantic ``options`` type,
whether it ``needs_checkpoint`` (then ``train_command``, the command that makes one), the optional
packages it ``requires`` (found without importing them) and ``build(device, checkpoint) -> Method``,
the only way an instance is made. ``create(device, checkpoint)`` checks the request (a checkpoint given
to a method that takes none, none installed for one that needs it) and builds; ``availability()`` says
whether the method can run now and, when not, why.

Method classes derived from ``backend.methods.base.BaseMethod`` (or ``checkpointed.CheckpointedMethod``)
make their spec with ``Class.spec(description, requires=...)``.

This module imports nothing heavy (no torch), like the registry that reads it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.methods.errors import MethodError

if TYPE_CHECKING:
    import torch

    from backend.methods.base import Method, MethodOptions


@dataclass(frozen=True)
class RequiredPackage:
    """An optional package a method cannot run without: its importable ``module`` and how to install it."""

    module: str
    install: str

    def missing(self) -> bool:
        """True when ``module`` cannot be found (checked without importing it)."""
        try:
            return importlib.util.find_spec(self.module) is None
        except (ImportError, ValueError):
            return True


def checkpoint_availability(method: str, train_command: str) -> tuple[bool, str | None]:
    """(True, None) when a ``method`` checkpoint is installed, else (False, the reason and how to get one)."""
    from backend.checkpoints import checkpoint_root, default_checkpoint

    if default_checkpoint(method) is not None:
        return True, None
    return False, (
        f"no {method} checkpoint installed in {checkpoint_root()}; train one with `{train_command}` "
        "or pass a checkpoint"
    )


@dataclass(frozen=True)
class MethodSpec:
    """One registered method (module docstring).

    Attributes:
        name: registry name (lower case, dashes), the key of ``registry``'s table.
        description: one line for ``mono2mesh methods`` and ``GET /v1/methods``.
        options: the pydantic options type (``MethodOptions`` subclass; unknown keys rejected).
        build: ``build(device, checkpoint) -> Method``; the checkpoint is a path or None (the newest
            installed one, for a method that needs one; always None for one that does not).
        needs_checkpoint: whether the method loads trained weights.
        train_command: with ``needs_checkpoint``, the command that trains a checkpoint (named in the
            reason when none is installed).
        requires: optional packages the method cannot run without.
    """

    name: str
    description: str
    options: type[MethodOptions]
    build: Callable[[torch.device, str | None], Method]
    needs_checkpoint: bool = False
    train_command: str | None = None
    requires: tuple[RequiredPackage, ...] = ()

    def __post_init__(self) -> None:
        if self.needs_checkpoint and not self.train_command:
            raise ValueError(f"method {self.name} needs a checkpoint: its spec must name a train_command")

    def availability(self) -> tuple[bool, str | None]:
        """(True, None) when the method can run now, else (False, why: a package or checkpoint missing)."""
        for package in self.requires:
            if package.missing():
                return False, (
                    f"{self.name} needs the {package.module} package, which is not installed; "
                    f"install it with `{package.install}`"
                )
        if self.needs_checkpoint and self.train_command:
            return checkpoint_availability(self.name, self.train_command)
        return True, None

    def create(self, device: torch.device, checkpoint: str | None = None) -> Method:
        """A ready instance on ``device``.

        Raises:
            MethodError: a checkpoint given to a method that takes none; none given and none installed
                (or a required package missing) for one that needs it; whatever ``build`` raises
                (e.g. a checkpoint that does not fit).
        """
        if self.needs_checkpoint:
            available, reason = self.availability()
            if checkpoint is None and not available:
                raise MethodError(reason or f"{self.name} needs a checkpoint")
        elif checkpoint is not None:
            raise MethodError(f"method {self.name} takes no checkpoint")
        return self.build(device, checkpoint)
