"""The shape every ``mono2mesh-train`` command shares: one typed value per command module, its ``COMMAND``,
which ``training.cli`` reads (``COMMAND.register(subparsers)`` adds the subcommand and returns its parser).

``TrainerSpec(name, help, description, config, datasets, prepare)`` is a trainer. ``spec.run(config,
train_set=None, eval_set=None)`` trains (the trainer module's ``run``): the data sets default to
``datasets(config)``, ``prepare(config, train_set, eval_set)`` gives the loop's method and the dataset
record every checkpoint stores, and ``training.loop.train`` runs them; the result names the final
checkpoint. The command's flags are every field of ``config`` (plus ``--preset``, ``--set``,
``--config``; ``backend.config_cli``). Running it builds the config, loads the data with
``datasets(config)`` (a ``ValueError`` or ``FileNotFoundError`` there, or in the config, prints
``<prog>: error: ...`` and exits 2), trains with ``run`` and prints the final checkpoint and metrics
(exit 0).

``BenchSpec(name, help, description, options, run)`` is a benchmark: one flag per field of ``options``
(no presets, ``--set`` or ``--config``), then ``run(options)`` gives the exit status (invalid options: the
error and exit status 2).

``help`` is the one-line summary ``training.cli.COMMANDS`` lists too; ``description`` (the module
docstring) heads the command's ``--help``.

The trainers on ShapeNet renderings (``softras``, ``pointcloud-poisson``) share their data and record:
``renderings_datasets(config)`` and ``renderings_prepare(method_class)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from torch.utils.data import Dataset

from backend.config import Config
from backend.config_cli import add_config_arguments, config_from_args
from training.config import TrainConfig
from training.datasets.shapenet import (
    RenderingsSettings,
    ShapeNetRenderings,
    renderings_info,
    renderings_splits,
)
from training.loop import RunResult, TrainingMethod, train

ConfigT = TypeVar("ConfigT", bound=TrainConfig)
OptionsT = TypeVar("OptionsT", bound=Config)
MethodT = TypeVar("MethodT", bound=TrainingMethod)
RenderingsT = TypeVar("RenderingsT", bound="RenderingsConfig")

Splits = tuple[Dataset[Any], Dataset[Any] | None]
"""A trainer's training set and evaluation set (None: no evaluation)."""


@dataclass(frozen=True)
class CommandSpec:
    """What every ``mono2mesh-train`` command has: its name, one-line help and description."""

    name: str
    help: str
    description: str | None

    def add_parser(self, subparsers: Any) -> argparse.ArgumentParser:
        """The command's parser, added to ``subparsers`` (its arguments still to add)."""
        parser: argparse.ArgumentParser = subparsers.add_parser(
            self.name,
            help=self.help,
            description=self.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    def error(self, error: Exception) -> int:
        """Print ``<prog>: error: <error>``; exit status 2."""
        print(f"mono2mesh-train {self.name}: error: {error}")
        return 2


@dataclass(frozen=True)
class TrainerSpec(CommandSpec, Generic[ConfigT]):
    """A training command (module docstring)."""

    config: type[ConfigT]
    datasets: Callable[[ConfigT], Splits]
    prepare: Callable[[ConfigT, Dataset[Any], Dataset[Any] | None], tuple[TrainingMethod, Mapping[str, Any]]]

    def run(
        self, config: ConfigT, train_set: Dataset[Any] | None = None, eval_set: Dataset[Any] | None = None
    ) -> RunResult:
        """Train as ``config`` says (the trainer's module docstring); the result names the final checkpoint.

        The data sets default to ``datasets(config)``.
        """
        if train_set is None:
            train_set, eval_set = self.datasets(config)
        method, dataset_info = self.prepare(config, train_set, eval_set)
        return train(method, config, train_set, eval_set, dataset_info=dataset_info)

    def register(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add the ``name`` training subcommand (module docstring) and return its parser."""
        parser = self.add_parser(subparsers)
        add_config_arguments(parser, self.config)

        def run_command(args: argparse.Namespace) -> int:
            try:
                config = config_from_args(self.config, args)
                train_set, eval_set = self.datasets(config)
            except (ValueError, FileNotFoundError) as error:  # ConfigError is a ValueError
                return self.error(error)
            result = self.run(config, train_set, eval_set)
            if result.checkpoint is not None:
                print(f"checkpoint: {result.checkpoint}")
                print(f"metrics: {result.metrics}")
            return 0

        parser.set_defaults(run=run_command)
        return parser


@dataclass(frozen=True)
class BenchSpec(CommandSpec, Generic[OptionsT]):
    """A benchmark command (module docstring)."""

    options: type[OptionsT]
    run: Callable[[OptionsT], int]

    def register(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add the ``name`` benchmark subcommand (module docstring) and return its parser."""
        parser = self.add_parser(subparsers)
        add_config_arguments(parser, self.options, extras=False)

        def run_command(args: argparse.Namespace) -> int:
            try:
                options = config_from_args(self.options, args)
            except ValueError as error:  # ConfigError is a ValueError
                return self.error(error)
            return self.run(options)

        parser.set_defaults(run=run_command)
        return parser


class ImageInput(Protocol):
    """A network config with the side of its square input images."""

    @property
    def image_size(self) -> int: ...


class RenderingsConfig(RenderingsSettings, Protocol):
    """The config of a trainer on ShapeNet renderings: its splits' fields and its network's input size."""

    @property
    def model(self) -> ImageInput: ...


def renderings_datasets(config: RenderingsConfig) -> tuple[ShapeNetRenderings, ShapeNetRenderings | None]:
    """The training set (``views_per_item`` views) and the evaluation set (``eval_views`` views) at the
    network's input size (``training.datasets.shapenet.renderings_splits``)."""
    return renderings_splits(config, config.model.image_size)


def renderings_prepare(
    method: Callable[[RenderingsT], MethodT],
) -> Callable[[RenderingsT, Dataset[Any], Dataset[Any] | None], tuple[MethodT, dict[str, Any]]]:
    """The ``prepare`` of a trainer on ``renderings_datasets``: ``method(config)``, and ``renderings_info``
    as the dataset record."""

    def prepare(
        config: RenderingsT, train_set: Dataset[Any], eval_set: Dataset[Any] | None
    ) -> tuple[MethodT, dict[str, Any]]:
        return method(config), renderings_info(config, train_set, eval_set)

    return prepare
