"""The shape every ``mono2mesh-train <method>`` command shares: config flags in, a run, the checkpoint out.

``register_training_command(subparsers, name, help, description, config_class, datasets, run)`` adds a
subcommand whose flags are every field of ``config_class`` (plus ``--preset``, ``--set``, ``--config``;
``training.config``). Running it builds the config, loads the data with ``datasets(config)`` (a
``ValueError`` or ``FileNotFoundError`` there, or in the config, prints ``<prog>: error: ...`` and exits 2),
trains with ``run(config, train_set, eval_set)`` and prints the final checkpoint and metrics (exit 0).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from training.config import add_config_arguments, config_from_args
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
