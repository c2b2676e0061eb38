"""The shape every ``mono2mesh-train`` command shares: flags generated from a config model, then a run.

``register_training_command(subparsers, name, help, description, config_class, datasets, run)`` adds a
subcommand whose flags are every field of ``config_class`` (plus ``--preset``, ``--set``, ``--config``;
``backend.config_cli``). Running it builds the config, loads the data with ``datasets(config)`` (a
``ValueError`` or ``FileNotFoundError`` there, or in the config, prints ``<prog>: error: ...`` and exits 2),
trains with ``run(config, train_set, eval_set)`` and prints the final checkpoint and metrics (exit 0).

``register_options_command(subparsers, name, help, description, options_class, run)`` is the same for a
benchmark: one flag per field of ``options_class`` (no presets, ``--set`` or ``--config``), then
``run(options)`` gives the exit status (invalid options: the error and exit status 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from backend.config import Config
from backend.config_cli import add_config_arguments, config_from_args
from training.loop import RunResult


def register_training_command(
    subparsers: Any,
    name: str,
    help: str,
    description: str | None,
    config_class: type[Any],
    datasets: Callable[[Any], tuple[Any, Any]],
    run: Callable[[Any, Any, Any], RunResult],
) -> argparse.ArgumentParser:
    """Add the ``name`` training subcommand (module docstring) and return its parser."""
    parser = subparsers.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, config_class)

    def run_command(args: argparse.Namespace) -> int:
        try:
            config = config_from_args(config_class, args)
            train_set, eval_set = datasets(config)
        except (ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
            print(f"mono2mesh-train {name}: error: {error}")
            return 2
        result = run(config, train_set, eval_set)
        if result.checkpoint is not None:
            print(f"checkpoint: {result.checkpoint}")
            print(f"metrics: {result.metrics}")
        return 0

    parser.set_defaults(run=run_command)
    return parser


def register_options_command(
    subparsers: Any,
    name: str,
    help: str,
    description: str | None,
    options_class: type[Config],
    run: Callable[[Any], int],
) -> argparse.ArgumentParser:
    """Add the ``name`` benchmark subcommand (module docstring) and return its parser."""
    parser = subparsers.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, options_class, extras=False)

    def run_command(args: argparse.Namespace) -> int:
        try:
            options = config_from_args(options_class, args)
        except ValueError as error:  # ConfigError is a ValueError
            print(f"mono2mesh-train {name}: error: {error}")
            return 2
        return run(options)

    parser.set_defaults(run=run_command)
    return parser
