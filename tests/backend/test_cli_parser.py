"""``DeferredParser``: a subcommand's arguments are added the first time it parses or prints its help."""

from __future__ import annotations

import argparse
import contextlib
import io

from backend.cli_parser import DeferredParser


def _parser(built: list[str]) -> argparse.ArgumentParser:
    def build(parser: argparse.ArgumentParser) -> None:
        built.append(parser.prog)
        parser.add_argument("--size", type=int, default=1)

    parser = argparse.ArgumentParser(prog="tool")
    commands = parser.add_subparsers(dest="command", parser_class=DeferredParser)
    commands.add_parser("run", help="run it", build=build)
    commands.add_parser("other", help="another")
    return parser


def test_arguments_are_added_once_when_the_subcommand_parses() -> None:
    built: list[str] = []
    parser = _parser(built)
    with contextlib.redirect_stdout(io.StringIO()) as text, contextlib.suppress(SystemExit):
        parser.parse_args(["--help"])
    assert built == [] and "run it" in text.getvalue()  # the top-level help lists it unbuilt
    assert parser.parse_args(["other"]).command == "other" and built == []
    assert parser.parse_args(["run", "--size", "3"]).size == 3
    assert parser.parse_args(["run"]).size == 1
    assert built == ["tool run"]


def test_the_subcommand_help_builds_it() -> None:
    built: list[str] = []
    with contextlib.redirect_stdout(io.StringIO()) as text, contextlib.suppress(SystemExit):
        _parser(built).parse_args(["run", "--help"])
    assert built == ["tool run"] and "--size" in text.getvalue()
