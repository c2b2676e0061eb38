"""``mono2mesh bench serve``: its options, input choice and report formatting (the run itself is a
command whose figures go to docs/BENCHMARKS.md, not a test)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from backend.bench import serve
from backend.config_cli import options_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_small_and_valid() -> None:
    args = options_from_args(serve.ServeBenchOptions, parse(), "bench serve")
    assert args is not None
    assert args.jobs >= 3 and args.method == "fit" and args.poll_interval == 0.0
    assert args.options["iterations"] <= 20
    assert json.loads(json.dumps(args.options)) == args.options


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(parse("--options", '{"nope": 1}')) == 2
    assert "bad --options" in capsys.readouterr().err
    assert serve.main(parse("--jobs", "0")) == 2


def test_input_choice(tmp_path: Path) -> None:
    given = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(given)
    assert serve.find_photo(given) == (given.read_bytes(), str(given))
    data, name = serve.find_photo(None)
    assert Image.open(io.BytesIO(data)).size[0] > 0 and name


def test_table_names_both_estimates() -> None:
    row = {"median": 10.0, "mean": 12.0, "min": 5.0, "max": 20.0}
    report = {
        "method": "fit",
        "device": "cpu",
        "jobs": 2,
        "image": {"name": "bird", "size": [256, 256]},
        "polling": "long-poll",
        "direct_ms": [1000.0, 1100.0],
        "http_ms": [1010.0, 1120.0],
        "overhead_ms": row,
        "net_overhead_ms": row,
        "goal_ms": 50.0,
        "goal_met": {"overhead_median": True, "net_overhead_median": False},
    }
    table = serve.format_table(report)
    assert "http - direct" in table and "net overhead" in table and "NOT met (net" in table
