"""The ``mono2mesh-train`` command.

Every subcommand lives with its code and registers itself: a function ``register(subparsers)`` adds its
parser to the ``add_subparsers`` object and sets ``run`` (``args -> exit status``) as a default. To add one,
append its register function to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from backend import __version__
from training import (
    adaptive_flow,
    bench_adaptive_flow,
    bench_effective_loss,
    bench_pointcloud,
    bench_softras,
    pointcloud_poisson,
    softras,
    texture_gan,
)
from training.datasets import make_synthetic

COMMANDS: list[Callable[[Any], argparse.ArgumentParser]] = [
    make_synthetic.register,
    softras.register,
    bench_softras.register,
    adaptive_flow.register,
    bench_adaptive_flow.register,
    pointcloud_poisson.register,
    bench_effective_loss.register,
    texture_gan.register,
    bench_pointcloud.register,
]
"""The register functions of the subcommands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mono2mesh-train", description="Train the checkpoints the Mono2Mesh backend loads."
    )
    parser.add_argument("--version", action="version", version=f"mono2mesh-train {__version__}")
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run: Callable[[argparse.Namespace], int] = args.run
    return int(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
