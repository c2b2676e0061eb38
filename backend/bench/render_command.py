"""``mono2mesh bench render`` on the command line: its options (``RenderBenchOptions``) and ``main``.

The flags come from ``RenderBenchOptions`` (``backend.config_cli``). The work is
``backend.bench.render``, imported only when the command runs: this module imports pydantic and nothing
heavy, so ``mono2mesh`` can parse the command without torch. ``main(args)`` prints the table, or the JSON
report with ``--json``; invalid options print the problem and return 2.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

from pydantic import Field, PositiveInt

from backend.config import Config
from backend.config_cli import Flag, OptionsCommand


class RenderBenchOptions(Config):
    """The options of ``mono2mesh bench render``."""

    sizes: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (64, 128, 256)
    """Image sizes (comma-separated)."""
    batches: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (1, 16)
    """Batch sizes (comma-separated)."""
    devices: tuple[str, ...] | None = None
    """Comma-separated torch devices (default: every available device)."""
    repeats: PositiveInt = 5
    """Timed runs per case; the minimum is reported."""
    sigma: float | None = None
    """Fixed SoftRas sigma (default 1e-4*(64/S)^2)."""
    no_deodr: Annotated[bool, Flag(switch=True)] = False
    """Skip the DEODR comparison."""
    backends: Annotated[tuple[Literal["auto", "torch", "triton", "numba"], ...], Field(min_length=1)] = (
        "auto",
    )
    """Raster backends to time (comma-separated: auto, torch, triton, numba); one that cannot run is
    skipped."""
    silhouette: Annotated[bool, Flag(switch=True)] = False
    """Also time the soft silhouette rendered alone (the fit loop's render) for each case."""
    ops: Annotated[bool, Flag(switch=True)] = False
    """Also report aten ops and host syncs per render call (CPU profiler) for each raster backend."""
    ops_size: PositiveInt = 128
    """Image size of the --ops count."""
    ops_batch: PositiveInt = 16
    """Batch of the --ops count."""
    as_json: Annotated[bool, Flag("--json", switch=True)] = False
    """Print the JSON report instead of a table."""


def available_devices() -> list[str]:
    """``cpu`` and, when present, ``cuda`` and ``mps``."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _main(options: RenderBenchOptions) -> int:
    """Run the benchmark and print its table or JSON."""
    from backend.bench import render as bench_render

    with_deodr = not options.no_deodr
    if with_deodr:
        try:
            import deodr  # noqa: F401
        except ImportError:
            print("deodr is not installed (pip install 'mono2mesh[bench]'); skipping it", file=sys.stderr)
            with_deodr = False
    devices = list(options.devices) if options.devices else available_devices()
    report = bench_render.run(
        list(options.sizes), list(options.batches), devices, options.repeats, with_deodr, options.sigma,
        backends=list(options.backends), ops=(options.ops_size, options.ops_batch) if options.ops else None,
        silhouette=options.silhouette,
    )  # fmt: skip
    print(json.dumps(report, indent=2) if options.as_json else bench_render.format_table(report))
    return 0


COMMAND = OptionsCommand(RenderBenchOptions, "mono2mesh bench render", _main)
"""``mono2mesh bench render``: one flag per field of ``RenderBenchOptions``, then ``_main``."""

add_arguments, main = COMMAND.add_arguments, COMMAND.main
