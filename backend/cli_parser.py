"""``DeferredParser``: an ``argparse`` parser whose arguments are added only when it is first used.

Both command lines (``mono2mesh``, ``backend.cli``; ``mono2mesh-train``, ``training.cli``) list every
subcommand in ``--help`` but import a subcommand's module (torch, the networks, Open3D, FastAPI) only when
that subcommand is parsed or its help printed: each is an ``add_parser(name, help=..., build=...)`` of an
``add_subparsers(parser_class=DeferredParser)``. This module imports only ``argparse`` (start-up stays
light: ``tests/backend/test_startup.py``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any


class DeferredParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose arguments are added by ``build(parser)`` the first time it parses or
    formats its usage or help.

    As the parser class of ``add_subparsers``, it lets ``--help`` list every subcommand (the ``help=`` of
    ``add_parser``) while importing only the module of the subcommand that is run.
    """

    def __init__(
        self, *args: Any, build: Callable[[argparse.ArgumentParser], object] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._build = build

    def _build_now(self) -> None:
        build, self._build = self._build, None
        if build is not None:
            build(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._build_now()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._build_now()
        return super().format_usage()

    def format_help(self) -> str:
        self._build_now()
        return super().format_help()
