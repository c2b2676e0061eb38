"""``GpuCheckOptions``: the flags of ``scripts/gpu_check.sh``, one per field (``backend.config_cli``).

``--dry-run``, ``--out DIR``, ``--steps N``, ``--photo PATH`` (repeatable), ``--only NAME`` (repeatable),
``--skip-tests``, ``--test-timeout S``, ``--part-timeout S``, ``--json-out FILE``; ``--help`` lists them
with their defaults. ``parse_options(argv)`` builds the options (a bad value is a usage error, exit
status 2). This module imports no torch: ``--help`` stays light.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from backend.config import Config
from backend.config_cli import Flag, parse_config_with
from backend.config_cli import build_parser as build_config_parser

PROG = "scripts/gpu_check.sh"
DESCRIPTION = "Run every trainer, method and benchmark on CUDA and print one JSON summary."


class GpuCheckOptions(Config):
    """The options of ``scripts/gpu_check.sh`` (``python -m training.gpu_check``)."""

    dry_run: Annotated[bool, Flag(switch=True)] = False
    """Run every part on the CPU (same tiny sizes)."""

    out: Path = Path("out/gpu_check")
    """Work folder."""

    steps: int = 20
    """Training steps per run."""

    photo: Annotated[tuple[Path, ...], Flag(repeat=True, metavar="PATH")] = ()
    """Photo for reconstruct and the benchmarks, repeatable; none: every ../shared/data/photos/*.jpg."""

    only: Annotated[tuple[str, ...], Flag(repeat=True, metavar="NAME")] = ()
    """Run only the parts whose name contains this, repeatable; none: every part."""

    skip_tests: Annotated[bool, Flag(switch=True)] = False
    """Leave out the pytest part."""

    test_timeout: float = 420.0
    """Seconds for the pytest part."""

    part_timeout: float = 300.0
    """Seconds for each other part."""

    json_out: Path | None = None
    """Also write the summary to this file."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``GpuCheckOptions`` (no ``--config``, ``--preset`` or ``--set``)."""
    return build_config_parser(GpuCheckOptions, prog=PROG, description=DESCRIPTION, extras=False)


def parse_options(argv: Sequence[str] | None = None) -> GpuCheckOptions:
    """The options ``argv`` (default ``sys.argv[1:]``) give; a bad value exits with status 2."""
    return parse_config_with(build_parser(), GpuCheckOptions, argv)
