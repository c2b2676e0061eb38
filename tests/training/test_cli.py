"""The ``mono2mesh-train`` command line: every subcommand listed, each module imported only when run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.cli import COMMANDS, build_parser, command_of, main

ROOT = Path(__file__).resolve().parents[2]


def test_listed_help_is_what_each_register_function_gives() -> None:
    subparsers = argparse.ArgumentParser().add_subparsers()
    for module, _ in COMMANDS.values():
        command_of(module).register(subparsers)
    registered = {action.dest: action.help for action in subparsers._choices_actions}
    assert registered == {name: summary for name, (_, summary) in COMMANDS.items()}


def test_help_lists_every_subcommand_without_importing_them() -> None:
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys

        from training.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(["--help"])
        modules = {sorted({module for module, _ in COMMANDS.values()})!r}
        heavy = [m for m in sys.modules if m in modules or m.split(".")[0] in ("torch", "open3d")]
        print(json.dumps({{"help": out.getvalue(), "imported": sorted(heavy)}}))
        """
    )
    wide = {**os.environ, "COLUMNS": "500"}  # no wrapping inside the help column
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=wide,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["imported"] == []
    text = " ".join(report["help"].split())
    for name, (_, summary) in COMMANDS.items():
        assert f"{name} {' '.join(summary.split())}" in text


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_builds_its_own_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: mono2mesh-train {name}")


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "make-synthetic" in capsys.readouterr().out and "make-synthetic" in build_parser().format_help()
