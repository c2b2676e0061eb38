"""backend.config and backend.config_cli: errors that name the field, text parsing, and the flags a model
generates (nested, switches, repeatable, positional, required), as the benches use them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, PositiveInt

from backend.config import Config, ConfigError, apply_overrides, parse_text
from backend.config_cli import Flag, add_config_arguments, config_from_args, options_from_args


class Inner(Config):
    """A nested config."""

    size: PositiveInt = 8
    """Side in pixels."""


class Options(Config):
    """Bench-like options."""

    out: Path
    """Work folder."""
    inner: Inner = Inner()
    """Nested settings."""
    images: Annotated[tuple[Path, ...], Flag(positional=True)] = ()
    """Photos."""
    option: Annotated[tuple[str, ...], Flag("-o", "--option", repeat=True, metavar="KEY=VALUE")] = ()
    """Repeatable."""
    as_json: Annotated[bool, Flag("--json", switch=True)] = False
    """Print JSON."""
    cutoff: float | None = None
    """Optional number."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """A JSON object."""


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Options, extras=False)
    return config_from_args(Options, parser.parse_args(argv))


def test_flags_of_every_kind() -> None:
    options = parse(["a.jpg", "b.jpg", "--out", "o", "-o", "x=1", "--option", "y=2", "--json",
                     "--inner.size", "16", "--cutoff", "2.5", "--extra", '{"k": [1]}'])  # fmt: skip
    assert options.images == (Path("a.jpg"), Path("b.jpg")) and options.out == Path("o")
    assert options.option == ("x=1", "y=2") and options.as_json is True and options.inner.size == 16
    assert options.cutoff == 2.5 and options.extra == {"k": [1]}
    assert parse(["--out", "o", "--cutoff", "none"]) == Options(out=Path("o"))


def test_help_shows_the_docstrings_and_defaults() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    add_config_arguments(parser, Options, extras=False)
    text = " ".join(parser.format_help().split())
    assert (
        "--inner.size INT Side in pixels. (default: 8)" in text
        and "--out PATH Work folder. (required)" in text
    )
    assert "-o KEY=VALUE, --option KEY=VALUE Repeatable." in text and "--json Print JSON." in text
    assert "--config" not in text and "--preset" not in text  # extras=False: options, not a config


def test_bad_or_missing_values_name_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="out: Field required"):
        parse([])
    with pytest.raises(ConfigError, match=r"inner.size: Input should be greater than 0 \(got '0'\)"):
        parse(["--out", "o", "--inner.size", "0"])
    with pytest.raises(ConfigError, match=r"extra: '\{oops' is not valid JSON"):
        parse(["--out", "o", "--extra", "{oops"])
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Options, extras=False)
    assert options_from_args(Options, parser.parse_args(["--inner.size", "x"]), "bench x") is None
    err = capsys.readouterr().err
    assert err.startswith("bench x: error: ") and "out: Field required" in err and "inner.size:" in err


def test_configs_are_frozen_and_overrides_validate() -> None:
    options = Options(out=Path("o"))
    with pytest.raises(ValueError, match="frozen"):
        options.out = Path("p")  # type: ignore[misc]
    assert apply_overrides(options, {"inner.size": 4}).inner == Inner(size=4)
    with pytest.raises(ConfigError, match=r"inner\.size: Input should be greater than 0"):
        apply_overrides(options, ["inner.size=-1"])


def test_text_parsing_follows_the_field_type() -> None:
    assert parse_text("1, 2,", tuple[int, ...], "x") == ["1", "2"]
    assert parse_text("[1, 2]", list[int], "x") == [1, 2]
    assert parse_text("null", int | None, "x") is None and parse_text("3", int | None, "x") == "3"
    assert parse_text('{"size": 2}', Inner, "x") == {"size": 2}
    assert parse_text("true", bool, "x") == "true"  # pydantic turns it into True
