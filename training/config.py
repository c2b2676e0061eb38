"""Typed training configuration: defaults written once, a docstring under every field, a CLI over them.

``TrainConfig`` holds what every method's training shares (device, precision, batch, schedule, intervals,
seed, output, resume, pretrained weights). A method's config subclasses it (frozen too) and adds its own
fields, notably ``model`` (the backend's model config dataclass) and its data options::

    @dataclass(frozen=True)
    class SoftRasTrainConfig(TrainConfig):
        model: SoftRasModelConfig = field(default_factory=SoftRasModelConfig)
        \"\"\"Network hyper-parameters (saved in every checkpoint; the backend rebuilds from them).\"\"\"
        PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": {"iterations": 250_000, ...}}

A subclass that defines ``__post_init__`` calls ``super().__post_init__()`` (the shared validation); the
names ``config``, ``preset`` and ``set`` are taken by the command line and cannot be fields.

The generic helpers work on any such (nested) dataclass: ``config_to_dict`` / ``config_from_dict``
(JSON types; unknown keys are a ``ConfigError`` listing the valid ones), ``apply_overrides`` (dotted keys,
``"model.encoder=resnet"`` strings), ``apply_preset`` (named override sets from ``PRESETS`` along the
class hierarchy), ``field_docs`` (the docstrings under the fields) and ``build_parser`` /
``config_from_args`` (one ``--flag`` per field, ``--preset``, ``--set key=value``, ``--config file.json``).
Precedence, lowest first: defaults, ``--config`` file, presets in order, flags, ``--set`` in order.

``lr_factor`` is the learning-rate schedule the loop applies (a multiplier of ``lr``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import math
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "fp16", "bf16")
SCHEDULES = ("constant", "step", "inverse", "cosine")
PRETRAINED_POLICIES = ("auto", "none", "download", "require")
RESUME_AUTO = "auto"

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration value, key, preset or override that is not valid; the message names it."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings every method's training shares. Subclass (frozen) to add a method's own fields."""

    device: str = "auto"
    """Torch device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps"."""

    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Arithmetic: "fp16"/"bf16" use torch.amp autocast (+ GradScaler for fp16) on CUDA; fp32 elsewhere."""

    batch_size: int = 64
    """Global batch (images per optimiser step, summed over all processes); divisible by the process count."""

    eval_batch_size: int = 0
    """Batch of the evaluation loader; 0 means batch_size divided by the process count."""

    iterations: int = 1000
    """Optimiser steps to train for (ignored when epochs is set)."""

    epochs: int = 0
    """When > 0, train for this many passes over the training set instead of a number of iterations."""

    lr: float = 1e-4
    """Base learning rate of the Adam optimiser (multiplied by the schedule's factor)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""

    weight_decay: float = 0.0
    """Adam's L2 weight decay (unsup3d uses 5e-4)."""

    lr_schedule: Literal["constant", "step", "inverse", "cosine"] = "constant"
    """Learning-rate schedule: constant; step (times lr_gamma at each of lr_milestones, SoftRas: x0.3 at
    150k/250k); inverse (1 / (1 + step * lr_inverse_decay), UMR); cosine (from 1 to lr_min_factor)."""

    lr_milestones: tuple[int, ...] = ()
    """Steps at which the "step" schedule multiplies the learning rate by lr_gamma."""

    lr_gamma: float = 0.3
    """Factor applied at each milestone of the "step" schedule."""

    lr_inverse_decay: float = 5e-4
    """Decay rate k of the "inverse" schedule lr0 / (1 + step * k) (UMR: 5e-4)."""

    lr_min_factor: float = 0.0
    """Final learning-rate factor of the "cosine" schedule."""

    grad_clip: float = 0.0
    """Clip the global gradient L2 norm to this value; 0 disables clipping."""

    log_every: int = 50
    """Steps between scalar logs (TensorBoard, history.jsonl, progress bar)."""

    eval_every: int = 1000
    """Steps between evaluations (there is always one at the end); 0 evaluates only at the end."""

    image_every: int = 1000
    """Steps between image grids (input | reconstruction | novel views); 0 disables them."""

    image_count: int = 4
    """Number of evaluation items shown in each image grid."""

    checkpoint_every: int = 1000
    """Steps between resumable checkpoints (always also at the end); 0 writes only the final one."""

    keep_checkpoints: int = 2
    """Periodic checkpoints kept in <out>/checkpoints (older ones are deleted); 0 keeps all."""

    seed: int = 0
    """Seed of python's, numpy's and torch's generators, of the shuffling and of the loader workers."""

    workers: int = 0
    """DataLoader worker processes (0 loads in the main process; resume is bitwise exact only then)."""

    shuffle: bool = True
    """Shuffle the training set every epoch (a permutation derived from seed and epoch)."""

    out: str = "runs/train"
    """Run folder: checkpoints/, <method>.safetensors + .json (final), history.jsonl, report/, tensorboard/"""

    resume: str = ""
    """Resume: "" starts fresh (refused if out already holds a run), "auto" continues from the newest
    checkpoint in out (or starts fresh), a path continues from that <stem>.state.json."""

    pretrained: Literal["auto", "none", "download", "require"] = "auto"
    """ImageNet encoder weights: auto (use them if already on this machine, else random init with a
    warning), none (random init), download (let torchvision fetch them), require (error if absent)."""

    pretrained_path: str = ""
    """A weights file (.pth state dict or .safetensors) or a folder holding torchvision's file; "" uses the
    torch hub cache ($TORCH_HOME/hub/checkpoints)."""

    tensorboard: bool = True
    """Write TensorBoard scalars and images to <out>/tensorboard when tensorboard is installed."""

    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "iterations": 20,
            "epochs": 0,
            "batch_size": 8,
            "log_every": 5,
            "eval_every": 10,
            "image_every": 10,
            "checkpoint_every": 10,
        },
    }

    def __post_init__(self) -> None:
        validate_train_config(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict of every field."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Build from a (partial) dict; missing keys keep their defaults, unknown keys are a ConfigError."""
        return config_from_dict(cls, data)


def validate_train_config(config: TrainConfig) -> None:
    """``ConfigError`` for values outside their documented range."""
    device = config.device
    if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICES)} or cuda:N")
    _choice("precision", config.precision, PRECISIONS)
    _choice("lr_schedule", config.lr_schedule, SCHEDULES)
    _choice("pretrained", config.pretrained, PRETRAINED_POLICIES)
    positive = {
        "batch_size": config.batch_size,
        "image_count": config.image_count,
        "log_every": config.log_every,
    }
    if config.epochs == 0:
        positive["iterations"] = config.iterations
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    for name in (
        "eval_batch_size", "epochs", "eval_every", "image_every", "checkpoint_every", "keep_checkpoints",
        "workers", "grad_clip", "weight_decay", "lr_inverse_decay",
    ):  # fmt: skip
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.lr <= 0 or not math.isfinite(config.lr):
        raise ConfigError(f"lr must be a positive number, got {config.lr}")
    if list(config.lr_milestones) != sorted(config.lr_milestones):
        raise ConfigError(f"lr_milestones must be increasing, got {list(config.lr_milestones)}")
    if not 0.0 <= config.lr_min_factor <= 1.0:
        raise ConfigError(f"lr_min_factor must be in [0, 1], got {config.lr_min_factor}")


def _choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(choices)}")


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of ``config.lr`` for optimiser step ``step`` (0-based) of ``total_steps``.

    >>> cfg = TrainConfig(lr_schedule="step", lr_milestones=(150, 250), lr_gamma=0.3)
    >>> [round(lr_factor(cfg, s, 300), 4) for s in (0, 149, 150, 250)]
    [1.0, 1.0, 0.3, 0.09]
    >>> lr_factor(TrainConfig(lr_schedule="inverse"), 2000, 10_000)
    0.5
    """
    if config.lr_schedule == "step":
        return float(config.lr_gamma ** sum(step >= milestone for milestone in config.lr_milestones))
    if config.lr_schedule == "inverse":
        return 1.0 / (1.0 + step * config.lr_inverse_decay)
    if config.lr_schedule == "cosine":
        progress = min(step / max(total_steps, 1), 1.0)
        low = config.lr_min_factor
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


# --- generic dataclass helpers -------------------------------------------------------------------------


def _config_fields(cls: type) -> list[dataclasses.Field[Any]]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return [f for f in dataclasses.fields(cls) if f.init]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Every field of dataclass ``config`` as JSON types (tuples become lists, nested dataclasses dicts)."""
    return {f.name: _to_json(getattr(config, f.name)) for f in _config_fields(type(config))}


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def config_from_dict(cls: type[C], data: Mapping[str, Any], *, where: str = "") -> C:
    """Build dataclass ``cls`` from ``data`` (JSON types); missing keys keep their defaults.

    Raises:
        ConfigError: unknown keys (the message lists the valid ones), values of the wrong type, or values
            the class's own validation rejects.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, not {type(data).__name__}")
    known = {f.name: f for f in _config_fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(known))}"
        )
    hints = _hints(cls)
    values = {
        name: _coerce(value, hints[name], f"{where}.{name}" if where else name, from_string=False)
        for name, value in data.items()
    }
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid {where or cls.__name__}: {error}") from error


def _coerce(value: Any, hint: Any, where: str, *, from_string: bool) -> Any:
    """``value`` converted to type ``hint`` (from JSON types, or from command-line text when from_string)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (from_string and str(value).lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where, from_string=from_string)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors) or f"{where}: {value!r} does not fit {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if from_string and isinstance(value, str):
            value = _parse_json(value, where)
        if dataclasses.is_dataclass(value) and isinstance(value, hint):
            return value
        return config_from_dict(hint, value, where=where)
    if origin in (tuple, list) or hint in (tuple, list):
        if from_string and isinstance(value, str):
            text = value.strip()
            value = _parse_json(text, where) if text.startswith("[") else [v for v in text.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, where, from_string=from_string) for v, a in zip(value, args, strict=True)]
        else:
            item_hint = args[0] if args else Any
            items = [_coerce(v, item_hint, where, from_string=from_string) for v in value]
        return tuple(items) if (origin is tuple or hint is tuple) else items
    if origin is dict or hint is dict:
        if from_string and isinstance(value, str):
            value = _parse_json(value, where)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_string and isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_string and isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_string and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if hint is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    raise ConfigError(f"{where}: fields of type {hint} are not supported by the config helpers")


_BOOLS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: {text!r} is not valid JSON ({error.msg})") from None


def _field_hint(cls: type, dotted: str) -> Any:
    hint: Any = cls
    for part in dotted.split("."):
        if not (dataclasses.is_dataclass(hint) and isinstance(hint, type)):
            raise ConfigError(f"unknown config key {dotted!r}: {part!r} is inside a non-config value")
        hints = {f.name: _hints(hint)[f.name] for f in _config_fields(hint)}
        if part not in hints:
            raise ConfigError(
                f"unknown config key {dotted!r} for {cls.__name__}; "
                f"valid keys here: {', '.join(sorted(hints))}"
            )
        hint = hints[part]
    return hint


def apply_overrides(config: C, overrides: Mapping[str, Any] | Sequence[str]) -> C:
    """A copy of ``config`` with dotted-key overrides applied in order.

    ``overrides`` is a mapping (``{"model.encoder": "resnet", "lr": 3e-4}``, values as JSON types or text)
    or ``"key=value"`` strings as given to ``--set`` (values parsed as text: ``lr=3e-4``,
    ``lr_milestones=150000,250000``, ``betas=[0.9,0.99]``, ``model={"encoder": "resnet"}``).
    """
    items: list[tuple[str, Any, bool]] = []
    if isinstance(overrides, Mapping):
        items = [(str(k), v, isinstance(v, str)) for k, v in overrides.items()]
    else:
        for text in overrides:
            key, sep, value = text.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {text!r} is not of the form key=value")
            items.append((key.strip(), value.strip(), True))
    data = config_to_dict(config)
    for key, value, from_string in items:
        hint = _field_hint(type(config), key)
        coerced = _coerce(value, hint, key, from_string=from_string)
        *parents, last = key.split(".")
        target = data
        for part in parents:
            target = target[part]
        target[last] = _to_json(coerced)
    return config_from_dict(type(config), data)


def available_presets(cls: type) -> dict[str, dict[str, Any]]:
    """Named override sets of ``cls`` and its bases (a subclass's preset replaces a base's of that name)."""
    presets: dict[str, dict[str, Any]] = {}
    for klass in reversed(cls.__mro__):
        presets.update(vars(klass).get("PRESETS", {}))
    return presets


def apply_preset(config: C, name: str) -> C:
    """``config`` with the overrides of preset ``name``; ``ConfigError`` listing the presets if unknown."""
    presets = available_presets(type(config))
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(sorted(presets)) or 'none'}")
    return apply_overrides(config, presets[name])


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (and its bases), whitespace-collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        statements = body.body
        for node, following in itertools.pairwise(statements):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


# --- command line --------------------------------------------------------------------------------------


def _flag_names(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted name, type hint, help) for every leaf field, nested dataclasses flattened."""
    docs = field_docs(cls)
    hints = _hints(cls)
    leaves: list[tuple[str, Any, str]] = []
    for f in _config_fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            leaves.extend(_flag_names(hint, f"{prefix}{f.name}."))
        else:
            leaves.append((prefix + f.name, hint, docs.get(f.name, "")))
    return leaves


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config``, ``--preset``, ``--set`` and one ``--<field>`` per (nested: dotted) field of ``cls``.

    Field flags use dashes for underscores (``--batch-size``, ``--model.encoder``); booleans take a value
    (``--tensorboard false``). Flags default to "not given", so ``config_from_args`` knows what was set.
    """
    presets = available_presets(cls)
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", metavar="JSON", help="start from this config file (a saved config)")
    group.add_argument(
        "--preset",
        action="append",
        default=[],
        metavar="NAME",
        help=f"apply a named preset, repeatable (available: {', '.join(sorted(presets)) or 'none'})",
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override any field by dotted key, repeatable (e.g. --set model.encoder=resnet)",
    )
    fields_group = parser.add_argument_group("fields")
    for dotted, hint, doc in _flag_names(cls):
        default = _default_of(cls, dotted)
        fields_group.add_argument(
            "--" + dotted.replace("_", "-"),
            dest="field:" + dotted,
            default=argparse.SUPPRESS,
            metavar=_metavar(hint),
            help=f"{doc} (default: {json.dumps(_to_json(default))})".replace("%", "%%"),
        )


def _default_of(cls: type, dotted: str) -> Any:
    try:
        value: Any = cls()
    except (TypeError, ValueError):  # a config with required fields: no default to show
        return None
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _metavar(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "{" + ",".join(map(str, typing.get_args(hint))) + "}"
    if typing.get_origin(hint) in (tuple, list):
        return "A,B,..."
    return getattr(hint, "__name__", "VALUE").upper()


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The config ``args`` (from a parser given ``add_config_arguments(parser, cls)``) describe."""
    config = cls()
    config_file = getattr(args, "config", None)
    if config_file:
        try:
            data = json.loads(Path(config_file).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read config file {config_file}: {error}") from error
        config = config_from_dict(cls, data)
    for name in getattr(args, "preset", []) or []:
        config = apply_preset(config, name)
    flags = {key.split(":", 1)[1]: value for key, value in vars(args).items() if key.startswith("field:")}
    if flags:
        config = apply_overrides(config, flags)
    return apply_overrides(config, list(getattr(args, "overrides", []) or []))


def build_parser(
    cls: type, prog: str | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """A parser with ``add_config_arguments(parser, cls)``; description defaults to the class docstring."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description or inspect.getdoc(cls),
    )
    add_config_arguments(parser, cls)
    return parser


def parse_config(cls: type[C], argv: Sequence[str] | None = None) -> C:
    """Parse ``argv`` with ``build_parser(cls)``; ``ConfigError`` becomes a usage error (exit status 2)."""
    parser = build_parser(cls)
    args = parser.parse_args(argv)
    try:
        return config_from_args(cls, args)
    except ConfigError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits
