"""``mono2mesh bench blender``: time from submitting a photo to its object being in a Blender scene.

Runs the add-on's headless batch script (``blender_addon/batch.py --sequential --report F``) with the
Python of the Blender environment (``--blender-python``, default ``.venv-blender/bin/python``, which
has the bpy module; a ``blender`` executable works the same way with ``-b --python``), letting it
start a backend with this interpreter. The backend never imports the add-on: the script is run as a
file. Photos are submitted one after the other, so each row splits cleanly into

- ``backend_s``: submit -> the job seen succeeded (upload, queue, compute, polling),
- ``download_s``: GLB, texture, preview and report fetched over HTTP,
- ``import_s``: the glTF import, normalisation, material and properties (the add-on's own work),
- ``total_s``: submit -> object in the scene;

``backend_compute_s`` is the job report's ``timings.total``. Goal: ``import_s`` <= ``IMPORT_GOAL_S``
for every photo; the summary says whether it holds. Prints JSON (``--json``) or a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

from backend.config import Config
from backend.config_cli import Flag, OptionsCommand

REPO_ROOT = Path(__file__).resolve().parents[2]
BATCH_SCRIPT = REPO_ROOT / "blender_addon" / "batch.py"
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "data" / "photos"
IMPORT_GOAL_S = 0.3
FAST_OPTIONS = {"iterations": 10, "resolution": 32, "crop_size": 64, "texture_size": 32}


class BlenderBenchOptions(Config):
    """The options of ``mono2mesh bench blender``."""

    images: Annotated[tuple[Path, ...], Flag(positional=True)] = ()
    """Photos (default: the .jpg files in ../shared/data/photos)."""
    blender_python: Path | None = None
    """Python with the bpy module, or a blender executable (default .venv-blender/bin/python)."""
    method: str = "fit"
    """Reconstruction method."""
    options: dict[str, Any] = FAST_OPTIONS
    """Method options as JSON (default: a fast fit, the import does not depend on it)."""
    as_json: Annotated[bool, Flag("--json", switch=True)] = False
    """Print JSON instead of a table."""


def _blender_command(explicit: Path | None) -> list[str]:
    candidate = explicit or REPO_ROOT / ".venv-blender" / "bin" / "python"
    if candidate.is_file():
        if candidate.name.startswith("blender"):
            return [str(candidate), "-b", "--factory-startup", "--python-exit-code", "1", "--python"]
        return [str(candidate)]
    blender = shutil.which("blender")
    if explicit is None and blender is not None:
        return [blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python"]
    raise FileNotFoundError(
        f"no Python with bpy at {candidate}; run bash scripts/bootstrap.sh --blender or pass --blender-python"
    )


def run(images: list[Path], blender: list[str], method: str, options: str) -> dict[str, Any]:
    """Run the batch script on ``images``; the JSON-ready report (module docstring)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        report_file = folder / "timings.json"
        command = [
            *blender,
            str(BATCH_SCRIPT),
            "--",
            "--input",
            *map(str, images),
            "--out",
            str(folder / "out"),
        ]
        command += ["--backend-python", sys.executable, "--method", method, "--options", options]
        command += ["--sequential", "--report", str(report_file)]
        env = {**os.environ, "BLENDER_USER_RESOURCES": str(folder / "user")}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False)
        if not report_file.is_file():
            raise RuntimeError(f"the batch script failed ({done.returncode}): {done.stderr[-2000:]}")
        rows = json.loads(report_file.read_text(encoding="utf-8"))
    succeeded = [row for row in rows if row["ok"]]
    imports = [row["import_s"] for row in succeeded]
    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "method": method,
        "options": json.loads(options),
        "photos": rows,
        "summary": {
            "succeeded": len(succeeded),
            "failed": len(rows) - len(succeeded),
            "max_import_s": max(imports, default=None),
            "mean_total_s": sum(row["total_s"] for row in succeeded) / len(succeeded) if succeeded else None,
            "import_goal_s": IMPORT_GOAL_S,
            "import_goal_met": bool(imports) and max(imports) <= IMPORT_GOAL_S,
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """One line per photo and the summary."""
    lines = [
        f"{'photo':<24} {'backend s':>9} {'compute s':>9} {'download s':>10} {'import s':>8} {'total s':>8}"
    ]
    for row in report["photos"]:
        if not row["ok"]:
            lines.append(f"{row['image']:<24} FAILED: {row.get('error')}")
            continue
        lines.append(
            f"{row['image']:<24} {row['backend_s']:>9.3f} {row['backend_compute_s'] or 0:>9.3f} "
            f"{row['download_s']:>10.3f} {row['import_s']:>8.3f} {row['total_s']:>8.3f}"
        )
    summary = report["summary"]
    goal = "met" if summary["import_goal_met"] else "NOT met"
    lines.append(f"import goal <= {summary['import_goal_s']} s: {goal} (max {summary['max_import_s']})")
    return "\n".join(lines)


def _main(args: BlenderBenchOptions) -> int:
    """Run the benchmark with parsed ``args``; 0 when every photo was imported, else 1."""
    images = list(args.images) or sorted(DEFAULT_PHOTOS.glob("*.jpg"))
    if not images:
        print(f"no photos given and none in {DEFAULT_PHOTOS}", file=sys.stderr)
        return 2
    try:
        report = run(images, _blender_command(args.blender_python), args.method, json.dumps(args.options))
    except (FileNotFoundError, RuntimeError) as error:
        print(f"mono2mesh bench blender: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.as_json else format_table(report))
    return 0 if report["summary"]["failed"] == 0 else 1


COMMAND = OptionsCommand(BlenderBenchOptions, "mono2mesh bench blender", _main)
"""``mono2mesh bench blender``: one flag per field of ``BlenderBenchOptions``, then ``_main``."""

add_arguments, main = COMMAND.add_arguments, COMMAND.main


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m backend.bench.blender", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
