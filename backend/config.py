"""Typed configuration: one pydantic base for training configs, model configs and bench options.

``Config`` is a frozen pydantic model that refuses unknown keys and takes the docstring written under
each field as that field's ``description`` (the command-line help, ``backend.config_cli``)::

    class WidgetConfig(Config):
        width: int = 4
        \"\"\"Channels of the first layer.\"\"\"

Building one (``WidgetConfig(width=8)``, ``WidgetConfig.model_validate(data)``,
``WidgetConfig.model_validate_json(text)``) raises ``ConfigError`` (a ``ValueError``) for anything pydantic
or a validator rejects. The message names the dotted field (``model.width: Input should be a valid
integer ... (got 'wide')``); unknown keys are listed together with the valid ones (``unknown config
key(s) model.depth for WidgetModel; valid keys: encoder, width``). Values are coerced the pydantic
("lax") way: ``"8"`` is accepted for an int, ``[0.9, 0.99]`` for a tuple. ``model_dump(mode="json")``
is the JSON form a checkpoint stores and ``model_validate`` reads it back (``from_dict`` is the same
call, kept for the network builders of ``backend.methods``). Cross-field rules are
``@model_validator(mode="after")`` methods; their messages name the fields themselves.

Presets are typed values: ``PRESETS`` maps a name to an instance of the class built with only the
fields the preset sets (pydantic's ``model_fields_set``, recursively for nested configs), assigned
after the class so that it is checked when the module is imported::

    WidgetConfig.PRESETS = {"wide": WidgetConfig(width=64)}

``available_presets(cls)`` merges the presets along the class hierarchy (a subclass's preset replaces a
base's of the same name); ``apply_preset(config, name)`` writes the preset's set fields over ``config``.
``apply_overrides(config, overrides)`` applies dotted-key changes (``{"model.width": 8}`` or
``["model.width=8", "lr=3e-4"]``), command-line text parsed by ``parse_text``: JSON for objects, JSON or
comma-separated items for lists and tuples, ``none``/``null`` for optional fields, anything else handed to
pydantic as text. This module imports only pydantic (command-line start-up stays light).
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A configuration value, key, preset or override that is not valid; the message names it."""


class Config(BaseModel):
    """Base of every configuration model (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    PRESETS: ClassVar[Mapping[str, Config]] = {}
    """Named presets of this class (instances built with only the fields they set); see the module."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ConfigError(describe(error, type(self))) from error

    # Marked as pydantic's own __init__: nested configs are then validated by pydantic-core directly, so
    # their errors keep their dotted locations instead of arriving as this ConfigError.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Build from a (partial) mapping; missing keys keep their defaults. ``ConfigError`` if invalid."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as error:
            raise ConfigError(describe(error, cls)) from error

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Build from JSON text; ``ConfigError`` if invalid."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as error:
            raise ConfigError(describe(error, cls)) from error

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """``model_validate(data)``, kept for the network builders in ``backend.methods``."""
        return cls.model_validate(data)


# --- error messages -------------------------------------------------------------------------------------


def describe(error: ValidationError, cls: type[BaseModel]) -> str:
    """One line per problem of ``error`` (raised validating ``cls``), each naming the dotted field."""
    messages: list[str] = []
    unknown: dict[tuple[str, ...], list[str]] = {}
    for item in error.errors(include_url=False):
        where = tuple(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden" and where:
            unknown.setdefault(where[:-1], []).append(where[-1])
            continue
        messages.append(_message(_dotted(item["loc"]), item))
    for parent, names in unknown.items():
        model = model_at(cls, ".".join(parent)) if parent else cls
        prefix = "".join(f"{part}." for part in parent)
        valid = ", ".join(sorted(model.model_fields)) if model is not None else "?"
        name = model.__name__ if model is not None else ".".join(parent)
        keys = ", ".join(prefix + key for key in sorted(names))
        messages.insert(0, f"unknown config key(s) {keys} for {name}; valid keys: {valid}")
    return "; ".join(messages) or str(error)


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(where: str, item: Any) -> str:
    text = str(item["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if item["type"] in ("value_error", "assertion_error"):  # a validator's message names its fields
        return text if not where or text.startswith(where) else f"{where}: {text}"
    value = item.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        text += f" (got {value!r})"
    return f"{where}: {text}" if where else text


# --- field types ------------------------------------------------------------------------------------------


def _bare(annotation: Any) -> Any:
    """``annotation`` without ``Annotated[...]`` metadata."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def config_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class a field's annotation names (``Optional`` allowed), else None."""
    annotation = _bare(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in map(config_class, typing.get_args(annotation)) if a is not None]
        return models[0] if len(models) == 1 else None
    return None


def model_at(cls: type[BaseModel], dotted: str) -> type[BaseModel] | None:
    """The model class of the (nested) field ``dotted`` of ``cls`` ("" is ``cls``), else None."""
    model: type[BaseModel] | None = cls
    for part in filter(None, dotted.split(".")):
        if model is None or part not in model.model_fields:
            return None
        model = config_class(model.model_fields[part].annotation)
    return model


def field_annotation(cls: type[BaseModel], dotted: str) -> Any:
    """The annotation of the (nested) field ``dotted`` of ``cls``; ``ConfigError`` for an unknown key."""
    model: type[BaseModel] = cls
    annotation: Any = None
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        if part not in model.model_fields:
            raise ConfigError(
                f"unknown config key {dotted!r} for {cls.__name__}; "
                f"valid keys here: {', '.join(sorted(model.model_fields))}"
            )
        annotation = model.model_fields[part].annotation
        inner = config_class(annotation)
        if index < len(parts) - 1:
            if inner is None:
                raise ConfigError(f"unknown config key {dotted!r}: {part!r} is not a nested config")
            model = inner
    return annotation


def parse_text(text: str, annotation: Any, where: str) -> Any:
    """Command-line ``text`` for a field of type ``annotation``, ready for pydantic to validate.

    Nested configs and dicts: JSON. Lists, tuples and sets: a JSON array or comma-separated items.
    Optional fields: ``none`` or ``null`` is None. Anything else stays text (pydantic coerces it).
    """
    annotation = _bare(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        options = [a for a in args if a is not type(None)]
        return parse_text(text, options[0], where) if len(options) == 1 else text
    if config_class(annotation) is not None or dict in (origin, annotation):
        return _json(text, where)
    if {origin, annotation} & {list, tuple, set, frozenset}:
        stripped = text.strip()
        if stripped.startswith("["):
            return _json(stripped, where)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return text


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: {text!r} is not valid JSON ({error.msg})") from None


# --- presets and overrides ----------------------------------------------------------------------------------


def available_presets(cls: type[Config]) -> dict[str, Config]:
    """The presets of ``cls`` and its bases (a subclass's preset replaces a base's of that name)."""
    presets: dict[str, Config] = {}
    for klass in reversed(cls.__mro__):
        presets.update(vars(klass).get("PRESETS", {}))
    return presets


def apply_preset(config: C, name: str) -> C:
    """``config`` with the fields preset ``name`` sets; ``ConfigError`` listing the presets if unknown."""
    presets = available_presets(type(config))
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(sorted(presets)) or 'none'}")
    preset = presets[name]
    if not isinstance(config, type(preset)):
        raise ConfigError(f"preset {name!r} is a {type(preset).__name__}, not a {type(config).__name__}")
    return type(config).model_validate(_with_set_fields(config.model_dump(), preset))


def _with_set_fields(data: dict[str, Any], preset: BaseModel) -> dict[str, Any]:
    """``data`` (a dumped config) with the fields ``preset`` sets, nested configs merged field by field."""
    for name in preset.model_fields_set:
        value = getattr(preset, name)
        if isinstance(value, BaseModel) and isinstance(data.get(name), dict):
            data[name] = _with_set_fields(data[name], value)
        else:
            data[name] = value
    return data


def apply_overrides(config: C, overrides: Mapping[str, Any] | Sequence[str]) -> C:
    """A copy of ``config`` with dotted-key overrides applied in order (validated once, at the end).

    ``overrides`` is a mapping (``{"model.encoder": "resnet", "lr": 3e-4}``; string values are parsed as
    command-line text) or ``"key=value"`` strings as given to ``--set`` (``lr=3e-4``,
    ``lr_milestones=150000,250000``, ``betas=[0.9,0.99]``, ``model={"encoder": "resnet"}``).
    """
    cls = type(config)
    return cls.model_validate(overridden(cls, config.model_dump(), override_items(overrides)))


def override_items(overrides: Mapping[str, Any] | Sequence[str]) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` pairs of a mapping or of ``"key=value"`` strings (``apply_overrides``)."""
    if isinstance(overrides, Mapping):
        return [(str(key), value) for key, value in overrides.items()]
    items = []
    for text in [overrides] if isinstance(overrides, str) else overrides:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {text!r} is not of the form key=value")
        items.append((key.strip(), value.strip()))
    return items


def overridden(
    cls: type[BaseModel], data: dict[str, Any], items: Sequence[tuple[str, Any]]
) -> dict[str, Any]:
    """``data`` (a dumped, possibly partial, ``cls``) with the ``(dotted key, value)`` items set in order;
    string values are parsed as command-line text (``parse_text``). Not validated."""
    for key, value in items:
        annotation = field_annotation(cls, key)
        if isinstance(value, str):
            value = parse_text(value, annotation, key)
        *parents, last = key.split(".")
        target = data
        for part in parents:
            if isinstance(target.get(part), BaseModel):
                target[part] = target[part].model_dump()
            elif not isinstance(target.setdefault(part, {}), dict):
                raise ConfigError(f"{key}: {part} is {target[part]!r}, not a nested config")
            target = target[part]
        target[last] = value
    return data
