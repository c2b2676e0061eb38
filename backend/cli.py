"""The ``mono2mesh`` command line (also ``python -m backend``).

Subcommands:
    reconstruct    photos -> textured meshes (GLB, OBJ), previews, masks and reports.
    methods        the reconstruction methods, whether they can run, and their options.
    serve          the local backend server (HTTP API v1) the Blender add-on talks to.
    mask-model status|download  the salient-object mask model: where it is looked for; fetch it.
    addon build    the Blender extension zip, checked by Blender's own validator.
    bench render   forward + backward cost of the differentiable renderer, beside DEODR (--json for JSON).
    bench reconstruct  per-stage wall time of a method on real photos.
    bench serve    overhead of a job through the HTTP server against calling the method directly.
    bench fit-multiview  one mesh fitted to 120 real silhouettes with known cameras; IoU per view.
    bench blender  submit -> object in a Blender scene, split into backend, download and import time.
    bench meshing  point cloud -> mesh stage against the raw Open3D Poisson call; unwrap and bake times.
Each command's module holds its arguments and its work; this one only dispatches.

Start-up stays light: a command's module is imported, and its arguments added, only when that command
is parsed or its help is printed (``backend.cli_parser.DeferredParser``), and those modules import torch,
the networks, Open3D and FastAPI where they run, not at the top. ``mono2mesh --version`` and ``--help``
import none of them (``tests/backend/test_startup.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from typing import Any

from backend import __version__
from backend.cli_parser import DeferredParser


def _arguments_of(module: str, function: str = "add_arguments") -> Callable[[argparse.ArgumentParser], None]:
    """A ``build`` that imports ``module`` and calls its ``function(parser)`` (``add_arguments``)."""

    def build(parser: argparse.ArgumentParser) -> None:
        getattr(importlib.import_module(module), function)(parser)

    return build


def build_parser() -> argparse.ArgumentParser:
    """The whole ``mono2mesh`` parser; each subcommand's module is imported when that subcommand is parsed."""
    parser = argparse.ArgumentParser(prog="mono2mesh", description="Single photo -> textured 3D mesh.")
    parser.add_argument("--version", action="version", version=f"mono2mesh {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=DeferredParser)
    commands.add_parser(
        "reconstruct",
        help="photos -> textured meshes and previews",
        build=_arguments_of("backend.reconstruct_command"),
    )
    commands.add_parser(
        "serve", help="start the local backend server", build=_arguments_of("backend.server.command")
    )
    mask_model = commands.add_parser("mask-model", help="the salient-object mask model: status, download")
    mask_model_commands = mask_model.add_subparsers(dest="mask_model_command", required=True)
    mask_model_commands.add_parser(
        "status",
        help="where the mask model is looked for and whether it is found (JSON)",
        build=_arguments_of("backend.mask_model_command", "add_status_arguments"),
    )
    mask_model_commands.add_parser(
        "download",
        help="download a mask model into the cache folder (the only command that downloads)",
        build=_arguments_of("backend.mask_model_command", "add_download_arguments"),
    )
    addon = commands.add_parser("addon", help="the Blender add-on")
    addon_commands = addon.add_subparsers(dest="addon", required=True)
    addon_commands.add_parser(
        "build", help="build and validate the extension zip", build=_arguments_of("backend.addon_build")
    )
    methods = commands.add_parser("methods", help="list the reconstruction methods")
    methods.add_argument("--options", action="store_true", help="also list each method's options")
    methods.add_argument("--json", action="store_true", help="print JSON")

    bench = commands.add_parser("bench", help="run a benchmark (a table, or JSON with --json)")
    benches = bench.add_subparsers(dest="bench", required=True)
    benches.add_parser(
        "render",
        help="renderer forward+backward per image, beside DEODR",
        build=_arguments_of("backend.bench.render_command"),
    )

    benches.add_parser(
        "reconstruct",
        help="per-stage time of a method on real photos",
        build=_arguments_of("backend.bench.reconstruct"),
    )
    benches.add_parser(
        "serve", help="overhead of a job through HTTP", build=_arguments_of("backend.bench.serve")
    )
    benches.add_parser(
        "fit-multiview",
        help="fit one mesh to SoftRas's 120 airplane silhouettes",
        build=_arguments_of("backend.bench.fit_multiview"),
    )
    benches.add_parser(
        "blender", help="submit -> object in a Blender scene", build=_arguments_of("backend.bench.blender")
    )
    benches.add_parser(
        "meshing",
        help="meshing stage vs raw Open3D Poisson on 8k points (JSON)",
        build=_arguments_of("backend.bench.meshing"),
    )
    return parser


def _methods(args: argparse.Namespace) -> int:
    from backend.methods.registry import method_info

    info = method_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for entry in info:
        state = "ready" if entry["available"] else f"unavailable: {entry['reason']}"
        print(f"{entry['name']:<20} {state}\n    {entry['description']}")
        for index, checkpoint in enumerate(entry["checkpoints"]):
            metrics = ", ".join(f"{k} {v:.3g}" for k, v in sorted(checkpoint["metrics"].items())[:4])
            default = " (default)" if index == 0 else ""
            print(f"    checkpoint {checkpoint['path']}{default}: step {checkpoint['step']}; {metrics}")
        if args.options:
            for key, field in entry["options_schema"]["properties"].items():
                described = f"{_range_text(field)}{field.get('description', '')}"
                line = f"    -o {key}={field.get('default')!s:<26} {described}"
                print(line[:130])
    return 0


def _range_text(field: dict[str, Any]) -> str:
    """``[low..high] `` of a numeric option's JSON schema (also inside ``anyOf``), or "" when unbounded."""
    for variant in [field, *field.get("anyOf", [])]:
        lower = variant.get("minimum", variant.get("exclusiveMinimum"))
        upper = variant.get("maximum", variant.get("exclusiveMaximum"))
        if lower is not None and upper is not None:
            return f"[{lower:g}..{upper:g}] "
    return ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "reconstruct":
        from backend import reconstruct_command

        return reconstruct_command.main(args)
    if args.command == "methods":
        return _methods(args)
    if args.command == "serve":
        from backend.server import command as serve_command

        return serve_command.main(args)
    if args.command == "mask-model":
        from backend import mask_model_command

        if args.mask_model_command == "status":
            return mask_model_command.status_main(args)
        return mask_model_command.download_main(args)
    if args.command == "addon" and args.addon == "build":
        from backend import addon_build

        return addon_build.main(args)
    if args.command == "bench" and args.bench == "meshing":
        from backend.bench import meshing as bench_meshing

        return bench_meshing.main(args)
    if args.command == "bench" and args.bench == "blender":
        from backend.bench import blender as bench_blender

        return bench_blender.main(args)
    if args.command == "bench" and args.bench == "fit-multiview":
        from backend.bench import fit_multiview as bench_fit_multiview

        return bench_fit_multiview.main(args)
    if args.command == "bench" and args.bench == "serve":
        from backend.bench import serve as bench_serve

        return bench_serve.main(args)
    if args.command == "bench" and args.bench == "reconstruct":
        from backend.bench import reconstruct as bench_reconstruct

        return bench_reconstruct.main(args)
    if args.command == "bench" and args.bench == "render":
        from backend.bench import render_command

        return render_command.main(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
