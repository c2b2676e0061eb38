"""``scripts/gpu_check.sh``'s flags: one per field of ``GpuCheckOptions``, parsed by the config generator."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from training.gpu_check.options import GpuCheckOptions, build_parser, parse_options

ROOT = Path(__file__).resolve().parents[3]


def test_defaults() -> None:
    options = parse_options([])
    assert options == GpuCheckOptions()
    assert options.out == Path("out/gpu_check") and options.steps == 20 and options.json_out is None
    assert options.photo == () and options.only == () and not options.dry_run and not options.skip_tests
    assert (options.test_timeout, options.part_timeout) == (420.0, 300.0)


def test_every_flag() -> None:
    options = parse_options([
        "--dry-run", "--out", "/tmp/gc", "--steps", "3", "--photo", "a,b.jpg", "--photo", "c.jpg",
        "--only", "train/softras", "--only", "bench", "--skip-tests", "--test-timeout", "240",
        "--part-timeout", "150", "--json-out", "summary.json",
    ])  # fmt: skip
    assert options.dry_run and options.skip_tests
    assert options.out == Path("/tmp/gc") and options.steps == 3
    assert options.photo == (Path("a,b.jpg"), Path("c.jpg"))  # repeated, never split at commas
    assert options.only == ("train/softras", "bench")
    assert (options.test_timeout, options.part_timeout) == (240.0, 150.0)
    assert options.json_out == Path("summary.json")


def test_a_bad_value_is_a_usage_error() -> None:
    with contextlib.redirect_stderr(io.StringIO()) as text, pytest.raises(SystemExit) as exit_:
        parse_options(["--steps", "many"])
    assert exit_.value.code == 2 and "steps" in text.getvalue()
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        parse_options(["--set", "steps=3"])  # bench-style options: no --set, --preset or --config


def test_help_names_the_script_and_every_flag() -> None:
    text = build_parser().format_help()
    assert text.startswith("usage: scripts/gpu_check.sh")
    for flag in ("--dry-run", "--out", "--steps", "--photo", "--only", "--skip-tests", "--test-timeout",
                 "--part-timeout", "--json-out"):  # fmt: skip
        assert flag in text, flag


def test_the_script_prints_its_help_without_importing_torch() -> None:
    result = subprocess.run(["bash", "scripts/gpu_check.sh", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--json-out" in result.stdout
    code = (
        "import contextlib, sys\n"
        "from training.gpu_check import main\n"
        "with contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "assert 'torch' not in sys.modules, 'gpu_check --help imported torch'\n"
    )
    light = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           timeout=120, check=False)  # fmt: skip
    assert light.returncode == 0, light.stderr
