"""A command line generated from a ``backend.config.Config`` model: one flag per field, help from its docs.

``add_config_arguments(parser, cls)`` adds ``--<field>`` for every (nested: dotted) field of ``cls``, with
dashes for underscores (``--batch-size``, ``--model.image-size``) and the field's docstring plus its
default as help. Booleans take a value (``--tensorboard false``). By default it also adds ``--config
FILE`` (a saved config, or a checkpoint's ``.json`` whose ``config`` is used), ``--preset NAME``
(repeatable; ``backend.config.available_presets``) and ``--set KEY=VALUE`` (repeatable, any dotted key);
``extras=False`` leaves them out (bench options). ``config_from_args(cls, args)`` builds the config;
precedence, lowest first: defaults, ``--config``, presets in order, flags, ``--set`` in order. Values are
text parsed by ``backend.config.parse_text`` and validated by pydantic; problems are ``ConfigError``.

A field can say how it appears with ``Annotated[type, Flag(...)]``: other spellings (``Flag("-o",
"--option")``), a switch that takes no value (``switch=True``: a bool set to True), a repeatable option
collecting one value per use (``repeat=True``) or positional arguments (``positional=True``, any number).
``build_parser(cls)`` / ``parse_config(cls, argv)`` are the stand-alone forms (``parse_config_with(parser,
cls, argv)`` with a parser of one's own; a ``ConfigError`` there is a usage error, exit status 2);
``options_from_args(cls, args, command)`` prints the error for a command's ``main`` to return 2.
``OptionsCommand(cls, command, run)`` is a command module's ``add_arguments`` and ``main`` for options
``cls`` (the ``mono2mesh bench`` commands): ``main`` returns ``run(options)``, or 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from backend.config import (
    Config,
    ConfigError,
    apply_preset,
    available_presets,
    config_class,
    overridden,
    override_items,
)

C = TypeVar("C", bound=Config)
EXTRAS = ("config", "preset", "set")
"""Flags ``extras=True`` adds; no field of such a model may be named after them."""
_PREFIX = "field:"


@dataclass(frozen=True, init=False)
class Flag:
    """How a field appears on the command line when it is not a plain ``--field-name VALUE`` option."""

    names: tuple[str, ...]
    switch: bool
    repeat: bool
    positional: bool
    metavar: str | None

    def __init__(
        self,
        *names: str,
        switch: bool = False,
        repeat: bool = False,
        positional: bool = False,
        metavar: str | None = None,
    ) -> None:
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "switch", switch)
        object.__setattr__(self, "repeat", repeat)
        object.__setattr__(self, "positional", positional)
        object.__setattr__(self, "metavar", metavar)


def _flag(info: FieldInfo) -> Flag:
    return next((m for m in info.metadata if isinstance(m, Flag)), Flag())


def _leaves(cls: type[Config], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """(dotted name, field) of every leaf field, nested configs flattened."""
    leaves: list[tuple[str, FieldInfo]] = []
    for name, info in cls.model_fields.items():
        nested = config_class(info.annotation)
        if nested is not None and issubclass(nested, Config):
            leaves.extend(_leaves(nested, f"{prefix}{name}."))
        else:
            leaves.append((prefix + name, info))
    return leaves


_REQUIRED = object()


def _default_of(cls: type[Config], dotted: str) -> Any:
    """The JSON default of the (nested) field ``dotted``, or ``_REQUIRED`` when it has none."""
    first, *rest = dotted.split(".")
    info = cls.model_fields[first]
    if info.is_required():
        return _REQUIRED
    value = info.get_default(call_default_factory=True)
    for part in rest:
        value = getattr(value, part)
    return to_jsonable_python(value)


def _metavar(annotation: Any) -> str:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _metavar(options[0]) if len(options) == 1 else "VALUE"
    if origin is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(annotation))) + "}"
    if origin in (tuple, list, set, frozenset):
        return "A,B,..."
    return str(getattr(annotation, "__name__", "VALUE")).upper()


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[Config], *, extras: bool = True) -> None:
    """Add one argument per (nested) field of ``cls``, and ``--config``/``--preset``/``--set`` when
    ``extras`` (module docstring). Nothing given stays unset, so ``config_from_args`` knows what was."""
    if extras:
        clash = sorted(set(EXTRAS) & set(cls.model_fields))
        if clash:
            raise TypeError(f"{cls.__name__} has fields named {clash}, which the command line takes")
        presets = ", ".join(sorted(available_presets(cls))) or "none"
        group = parser.add_argument_group("configuration")
        group.add_argument(
            "--config",
            metavar="JSON",
            help="start from this config file (a saved config, a checkpoint .json)",
        )
        group.add_argument("--preset", action="append", default=[], metavar="NAME",
                           help=f"apply a named preset, repeatable (available: {presets})")  # fmt: skip
        group.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            dest="overrides",
            help="override any field by dotted key, repeatable (e.g. --set model.encoder=resnet)",
        )
    fields_group = parser.add_argument_group("fields") if extras else parser
    for dotted, info in _leaves(cls):
        flag = _flag(info)
        text, default = info.description or "", _default_of(cls, dotted)
        if default is _REQUIRED:
            text += " (required)"
        elif not flag.switch and default is not None:
            text += f" (default: {json.dumps(default)})"
        options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if flag.positional:
            fields_group.add_argument(_PREFIX + dotted, nargs="*", metavar=flag.metavar or dotted, **options)
            continue
        names = flag.names or ("--" + dotted.replace("_", "-"),)
        if flag.switch:
            options["action"] = "store_true"
        else:
            options["metavar"] = flag.metavar or _metavar(info.annotation)
            if flag.repeat:
                options["action"] = "append"
        fields_group.add_argument(*names, dest=_PREFIX + dotted, **options)


def read_config_file(cls: type[C], path: str | Path) -> C:
    """The config saved in ``path``: a config's JSON, or a checkpoint's ``.json`` (its ``config``)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    if isinstance(data, dict) and "method" in data and isinstance(data.get("config"), dict):
        data = data["config"]  # a checkpoint's metadata (backend.checkpoints.CheckpointMeta)
    return cls.model_validate(data)


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The config ``args`` (from a parser given ``add_config_arguments(parser, cls)``) describe.

    Validated once, at the end (a field without a default must then have been given)."""
    config_file = getattr(args, "config", None)
    data = read_config_file(cls, config_file).model_dump() if config_file else {}
    for name in getattr(args, "preset", None) or []:
        data = apply_preset(cls.model_validate(data), name).model_dump()
    flags = [(key[len(_PREFIX) :], value) for key, value in vars(args).items() if key.startswith(_PREFIX)]
    data = overridden(cls, data, flags)
    data = overridden(cls, data, override_items(getattr(args, "overrides", None) or []))
    return cls.model_validate(data)


def build_parser(
    cls: type[Config], prog: str | None = None, description: str | None = None, *, extras: bool = True
) -> argparse.ArgumentParser:
    """A parser with ``add_config_arguments(parser, cls)``; description defaults to the class docstring."""
    parser = argparse.ArgumentParser(prog=prog, description=description or inspect.getdoc(cls))
    add_config_arguments(parser, cls, extras=extras)
    return parser


def parse_config(cls: type[C], argv: Sequence[str] | None = None, *, extras: bool = True) -> C:
    """Parse ``argv`` with ``build_parser(cls)``; a ``ConfigError`` is a usage error (exit status 2)."""
    return parse_config_with(build_parser(cls, extras=extras), cls, argv)


def parse_config_with(parser: argparse.ArgumentParser, cls: type[C], argv: Sequence[str] | None = None) -> C:
    """``cls`` from ``argv`` parsed by ``parser`` (a ``build_parser(cls, ...)``); a ``ConfigError`` is a
    usage error (exit status 2)."""
    args = parser.parse_args(argv)
    try:
        return config_from_args(cls, args)
    except ConfigError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def options_from_args(cls: type[C], args: argparse.Namespace, command: str) -> C | None:
    """``config_from_args(cls, args)``, or None after printing ``<command>: error: <problem>`` to stderr
    (a command's ``main`` then returns exit status 2)."""
    try:
        return config_from_args(cls, args)
    except ConfigError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return None


@dataclass(frozen=True)
class OptionsCommand(Generic[C]):
    """A subcommand whose arguments are the fields of ``options`` (``extras=False``), as the
    ``add_arguments(parser)`` and ``main(namespace) -> exit status`` pair of a command module: ``main``
    builds the options and returns ``run(options)``, or 2 after ``options_from_args``'s error (``command``
    names the command in it)."""

    options: type[C]
    command: str
    run: Callable[[C], int]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One flag per field of ``options``."""
        add_config_arguments(parser, self.options, extras=False)

    def main(self, namespace: argparse.Namespace) -> int:
        """``run(options)`` with the options ``namespace`` gives; 2 when they are invalid."""
        options = options_from_args(self.options, namespace, self.command)
        return 2 if options is None else self.run(options)
