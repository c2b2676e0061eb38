"""``mono2mesh reconstruct IMAGE... --out DIR``: photos in, result files out, one progress bar per photo.

For each photo it runs ``backend.methods.pipeline.reconstruct_photo`` and ``export`` (the files are
listed there), prints a line per result, and goes on after a failure; the exit code is 1 when any photo
failed (the message says which and why), 2 for a usage error (unknown method, bad option, a
``--mask-model`` file that does not exist).

A photo with neither ``--mask`` nor an alpha channel is segmented by the salient-object mask model when
one is found (``--mask-model PATH``, else ``$MONO2MESH_MASK_MODEL``, else the cache folder that
``mono2mesh mask-model download`` fills), else by GrabCut; nothing is downloaded here.

The methods, torch and the mesh IO are imported by ``main``: ``mono2mesh`` builds its parser from
``add_arguments``, which must stay cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from backend.methods.registry import DEFAULT_METHOD


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photos of objects")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results (created)")
    parser.add_argument(
        "--mask",
        type=Path,
        action="append",
        default=None,
        help="mask image (white object on black, or transparency); give one per IMAGE, in order",
    )
    parser.add_argument("--method", default=DEFAULT_METHOD, help=f"method (default {DEFAULT_METHOD})")
    parser.add_argument("--checkpoint", default=None, help="checkpoint for methods that need one")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option, e.g. -o iterations=400 (see `mono2mesh methods --options`)",
    )
    parser.add_argument(
        "--refine", type=Path, default=None, help="mesh (GLB/OBJ) to refine instead of the template"
    )
    parser.add_argument(
        "--mask-model",
        type=Path,
        default=None,
        help="salient-object mask model (ONNX) for photos without mask or alpha (default "
        "$MONO2MESH_MASK_MODEL, else the file `mono2mesh mask-model download` saved; else GrabCut)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_option_pairs(pairs: list[str]) -> dict[str, Any]:
    """``["iterations=400", "seed=2"]`` -> ``{"iterations": 400, "seed": 2}`` (JSON values if they parse)."""
    from backend.methods.base import MethodError

    options: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise MethodError(f"options are KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def _unique_stems(images: list[Path]) -> list[str]:
    stems: list[str] = []
    for image in images:
        stem, number = image.stem, 2
        while stem in stems:
            stem, number = f"{image.stem}_{number}", number + 1
        stems.append(stem)
    return stems


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.geometry.io import load_mesh
    from backend.imaging import ImageError
    from backend.methods.base import MethodError
    from backend.methods.pipeline import export, reconstruct_photo
    from backend.methods.registry import create_method, parse_options

    masks: list[Path | None] = list(args.mask) if args.mask else [None] * len(args.images)
    if len(masks) != len(args.images):
        print(
            f"error: {len(args.images)} images but {len(masks)} masks; give one --mask per image",
            file=sys.stderr,
        )
        return 2
    mask_model = getattr(args, "mask_model", None)
    if mask_model is not None and not Path(mask_model).expanduser().is_file():
        print(f"error: the --mask-model file {mask_model} does not exist", file=sys.stderr)
        return 2
    try:
        options = parse_options(args.method, parse_option_pairs(args.option))
        method = create_method(args.method, args.device, args.checkpoint)
        init_mesh = load_mesh(args.refine) if args.refine is not None else None
    except (MethodError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failures = 0
    for image, mask, stem in zip(args.images, masks, _unique_stems(args.images), strict=True):
        started = time.perf_counter()
        with tqdm(total=100, desc=stem, unit="%", disable=args.quiet, leave=False, file=sys.stderr) as bar:
            shown: list[Any] = [None, None]  # the (percent, stage) on the bar

            def progress(fraction: float, stage: str, bar: tqdm = bar, shown: list[Any] = shown) -> None:
                percent = round(100 * fraction)
                if [percent, stage] != shown:
                    shown[:] = [percent, stage]
                    bar.n = percent
                    bar.set_postfix_str(stage, refresh=False)
                    bar.refresh()

            try:
                result = reconstruct_photo(
                    method,
                    image,
                    mask=mask,
                    options=options,
                    progress=progress,
                    init_mesh=init_mesh,
                    mask_model=mask_model,
                )
                paths = export(result, args.out, stem, progress)
            except (ImageError, MethodError, ValueError, OSError) as error:
                failures += 1
                bar.close()
                print(f"{image}: failed: {error}", file=sys.stderr)
                continue
        report = result.report()
        print(
            f"{image} -> {paths['glb']}  (IoU {report['silhouette_iou']:.3f}, "
            f"{report['num_vertices']} vertices, {time.perf_counter() - started:.1f} s)"
        )
    if failures:
        print(f"{failures} of {len(args.images)} images failed", file=sys.stderr)
    return 1 if failures else 0
