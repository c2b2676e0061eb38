"""The ``mono2mesh-train`` command. Trainers register their subcommands here as they land."""

from __future__ import annotations

import argparse

from backend import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mono2mesh-train", description="Train the checkpoints the Mono2Mesh backend loads."
    )
    parser.add_argument("--version", action="version", version=f"mono2mesh-train {__version__}")
    parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("\nno trainer is available in this version yet")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
