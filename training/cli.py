"""The ``mono2mesh-train`` command.

Every subcommand lives with its code as one typed value, its module's ``COMMAND``
(``training.commands``: a trainer's ``TrainerSpec``, a benchmark's ``BenchSpec``; ``command_of(module)``):
its ``register(subparsers)`` adds its parser to the ``add_subparsers`` object and sets ``run`` (``args ->
exit status``) as a default. A module with hand-made arguments (``make-synthetic``) has a
``register(subparsers)`` function instead. To add a subcommand, add its name, module and one-line help to
``COMMANDS`` (``tests/training/test_cli.py`` checks that the help is the one ``register`` gives).

A subcommand's module (torch, the datasets, the trainers) is imported, and its ``register`` called, only
when that subcommand is parsed or its help printed (``backend.cli_parser.DeferredParser``): ``--help`` and
``--version`` import none of them.

``DEPRECATED`` maps retired subcommand names to their current ones: ``main`` still runs them, after a
warning on stderr (``pointcloud-texture`` is now ``texture-completion``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any, Protocol, cast

from backend import __version__
from backend.cli_parser import DeferredParser

COMMANDS: dict[str, tuple[str, str]] = {
    "make-synthetic": (
        "training.datasets.make_synthetic",
        "write a synthetic category dataset (known 3D) in a real dataset's layout",
    ),
    "softras": ("training.softras", "train the Soft Rasterizer baseline (method softras)"),
    "bench-softras": (
        "training.bench_softras",
        "train softras on a synthetic category and compare encoders, untrained and fit (JSON)",
    ),
    "adaptive-flow": (
        "training.adaptive_flow",
        "train the adaptive-gradient texture-flow model (method adaptive-flow; two stages)",
    ),
    "bench-adaptive-flow": (
        "training.bench_adaptive_flow",
        "train adaptive-flow on synthetic birds: full model vs. no D_var vs. no FID, timings (JSON)",
    ),
    "pointcloud-poisson": (
        "training.pointcloud_poisson",
        "train the point-cloud network of pointcloud-poisson (DPC network, effective loss)",
    ),
    "bench-effective-loss": (
        "training.bench_effective_loss",
        "time the effective loss (eq. 6) against a soft-rasterised silhouette loss (JSON)",
    ),
    "texture-completion": (
        "training.texture_completion",
        "train the texture-completion network of pointcloud-poisson (method texture-completion)",
    ),
    "mesh-inversion-gan": (
        "training.mesh_inversion",
        "pre-train MeshInversion's textured-mesh GAN (method mesh-inversion)",
    ),
    "bench-pointcloud": (
        "training.bench_pointcloud",
        "pointcloud-poisson vs softras and fit on held-out synthetic objects: Chamfer and IoU (JSON)",
    ),
    "unsup3d": (
        "training.unsup3d",
        "train Unsup3d: symmetric depth, albedo, light and view from raw images (method unsup3d)",
    ),
    "bench-unsup3d": (
        "training.bench_unsup3d",
        "unsup3d on synthetic faces: full model vs. no flip vs. no confidence, SIDE/MAD, steps/s (JSON)",
    ),
    "bench-mesh-inversion": (
        "training.bench_mesh_inversion",
        "mesh-inversion vs adaptive-flow, softras and fit on held-out synthetic birds: IoU, SSIM, Chamfer, "
        "FID, ablation (JSON)",
    ),
    "bench-novel-view": (
        "training.bench_novel_view",
        "novel-view silhouette IoU and Chamfer vs the flat cut-out on held-out synthetic objects (JSON)",
    ),
    "bench-throughput": (
        "training.bench_throughput",
        "training throughput of every trainer: images/s, peak memory, host syncs, fp32 vs bf16 losses (JSON)",
    ),
}
"""Subcommand name -> (the module whose ``COMMAND`` adds it, its one-line help), in ``--help`` order."""

DEPRECATED: dict[str, str] = {"pointcloud-texture": "texture-completion"}
"""Retired subcommand name -> its current name (still accepted, with a warning; not listed in --help)."""


class Command(Protocol):
    """What ``COMMANDS`` names: a module's ``COMMAND`` (or the module itself, with its ``register``)."""

    def register(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add the subcommand to ``subparsers`` (``add_subparsers``'s) and return its parser."""
        ...


def command_of(module: str) -> Command:
    """``module``'s ``COMMAND``, or the module itself when it has a ``register`` function instead (imported
    now)."""
    imported = importlib.import_module(module)
    return cast(Command, getattr(imported, "COMMAND", imported))


class _OneParser:
    """The ``subparsers`` a ``register`` function is handed: ``add_parser(name, ...)`` configures and
    returns the subcommand's already listed (deferred) parser instead of adding another."""

    _SETTABLE = ("description", "epilog", "usage", "formatter_class")

    def __init__(self, name: str, parser: argparse.ArgumentParser) -> None:
        self.name, self.parser = name, parser

    def add_parser(self, name: str, *, help: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
        if name != self.name:
            raise RuntimeError(f"COMMANDS lists {self.name!r} but its register function adds {name!r}")
        for key, value in kwargs.items():
            if key not in self._SETTABLE:
                raise TypeError(f"add_parser({key}=...) is not supported for deferred subcommands")
            setattr(self.parser, key, value)
        return self.parser


def _register(name: str, module: str) -> Callable[[argparse.ArgumentParser], None]:
    def build(parser: argparse.ArgumentParser) -> None:
        command_of(module).register(_OneParser(name, parser))

    return build


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mono2mesh-train", description="Train the checkpoints the Mono2Mesh backend loads."
    )
    parser.add_argument("--version", action="version", version=f"mono2mesh-train {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=DeferredParser
    )
    for name, (module, summary) in COMMANDS.items():
        subparsers.add_parser(name, help=summary, build=_register(name, module))
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in DEPRECATED:
        current = DEPRECATED[arguments[0]]
        print(
            f"mono2mesh-train: {arguments[0]!r} is deprecated and will be removed; use {current!r}",
            file=sys.stderr,
        )
        arguments[0] = current
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help()
        return 2
    run: Callable[[argparse.Namespace], int] = args.run
    return int(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
