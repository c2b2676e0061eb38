"""``mono2mesh bench reconstruct``: wall time per stage of a method on real photos, as JSON or a table.

Runs ``backend.methods.pipeline.reconstruct_photo`` + ``export`` (into a temporary folder) on each photo
``repeats`` times after one untimed warm-up on the first photo, and reports per photo the stage timings
of the fastest run (mask, shape, texture, export, total), the silhouette IoU and the vertex count, plus
the mean total over photos. The default photos are the real bird photos in ../shared/data/photos.
``--checkpoint`` names the checkpoint of a method that needs one (as ``mono2mesh reconstruct``).
Goals at default options, per photo: ``fit`` <= 15 s on a 2-core CPU and <= 2 s on a GPU;
``mesh-inversion`` <= 30 s on a 2-core CPU.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag, OptionsCommand
from backend.methods.registry import DEFAULT_METHOD

DEFAULT_PHOTOS = Path("../shared/data/photos")


def run(
    images: list[Path],
    method_name: str,
    device: str,
    options: dict[str, Any],
    repeats: int = 1,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready report (module docstring); ``checkpoint`` as ``mono2mesh reconstruct --checkpoint``."""
    from backend.methods.pipeline import export, reconstruct_photo
    from backend.methods.registry import create_method, parse_options

    method = create_method(method_name, device, checkpoint=checkpoint)
    resolved = parse_options(method_name, options)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        reconstruct_photo(method, images[0], options=resolved)  # warm-up: imports, allocator, caches
        for image in images:
            best: dict[str, Any] | None = None
            for _ in range(repeats):
                started = time.perf_counter()
                result = reconstruct_photo(method, image, options=resolved)
                export(result, scratch, image.stem)
                wall = time.perf_counter() - started
                if best is None or wall < best["wall_s"]:
                    report = result.report()
                    best = {
                        "image": image.name,
                        "wall_s": round(wall, 3),
                        "timings_s": report["timings"],
                        "silhouette_iou": report["silhouette_iou"],
                        "vertices": report["num_vertices"],
                        "checkpoint": report.get("checkpoint"),
                    }
            assert best is not None
            rows.append(best)
    return {
        "benchmark": "reconstruct",
        "method": method_name,
        "device": str(method.device),
        "options": resolved.model_dump(),
        "repeats": repeats,
        "machine": machine_info(),
        "results": rows,
        "mean_wall_s": round(sum(row["wall_s"] for row in rows) / len(rows), 3),
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [f"{report['method']} on {report['device']} ({report['machine']['processor']})"]
    for row in report["results"]:
        stages = "  ".join(f"{k} {v:.2f}" for k, v in row["timings_s"].items() if k != "total")
        lines.append(
            f"{row['image']:>20}: {row['wall_s']:6.2f} s  ({stages})  IoU {row['silhouette_iou']:.3f}"
        )
    lines.append(f"{'mean':>20}: {report['mean_wall_s']:6.2f} s per photo")
    return "\n".join(lines)


class ReconstructBenchOptions(Config):
    """The options of ``mono2mesh bench reconstruct``."""

    images: Annotated[tuple[Path, ...], Flag(positional=True)] = ()
    """Photos (default: the .jpg files in ../shared/data/photos)."""
    method: str = DEFAULT_METHOD
    """Method."""
    device: str = "cpu"
    """Torch device."""
    checkpoint: str | None = None
    """Checkpoint of a method that needs one (default: the newest installed)."""
    option: Annotated[tuple[str, ...], Flag("-o", "--option", repeat=True, metavar="KEY=VALUE")] = ()
    """Method option (repeatable)."""
    repeats: int = 1
    """Timed runs per photo; the fastest is kept."""
    as_json: Annotated[bool, Flag("--json", switch=True)] = False
    """Print the JSON report instead of a table."""


def _main(args: ReconstructBenchOptions) -> int:
    from backend.reconstruct_command import parse_option_pairs

    images = list(args.images) or sorted(DEFAULT_PHOTOS.glob("*.jpg"))
    if not images:
        print(f"error: no photos given and none in {DEFAULT_PHOTOS}", file=sys.stderr)
        return 2
    from backend.methods.errors import MethodError

    try:
        report = run(
            images, args.method, args.device, parse_option_pairs(list(args.option)), max(args.repeats, 1),
            args.checkpoint,
        )  # fmt: skip
    except MethodError as error:  # no checkpoint, a bad option, an unknown method: say which
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.as_json else format_table(report))
    return 0


COMMAND = OptionsCommand(ReconstructBenchOptions, "bench reconstruct", _main)
"""``mono2mesh bench reconstruct``: one flag per field of ``ReconstructBenchOptions``, then ``_main``."""

add_arguments, main = COMMAND.add_arguments, COMMAND.main
