"""The ``mono2mesh-train make-synthetic`` command: write a synthetic category dataset, with a progress bar.

``mono2mesh-train make-synthetic --category bird --n 2000 --size 128 --out DIR [--layout shapenet|cub|folder]
[--views 24] [--seed 0] [--background plain|noise|image] [--background-dir DIR] [--split-fractions
train=0.8,val=0.1,test=0.1] [--threads 1]``.

``--category face`` writes Unsup3d's kind of data instead (``training.datasets.synthetic_faces``:
symmetric faces under random light and small views, with ground-truth depth), in the "folder" layout only,
64 x 64 by default, one view per face, over its own background plane (no ``--views`` or ``--background``).

``register(subparsers)`` adds it to the ``mono2mesh-train`` parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from training.datasets._io import IMAGE_SUFFIXES
from training.datasets.synthetic import (
    CATEGORIES,
    DEFAULT_SPLITS,
    LAYOUTS,
    SyntheticConfig,
    generate,
    parse_split_fractions,
)
from training.datasets.synthetic_faces import FACE_CATEGORY, SyntheticFacesConfig, generate_faces
from training.datasets.synthetic_texture import BACKGROUNDS


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``make-synthetic`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "make-synthetic",
        help="write a synthetic category dataset (known 3D) in a real dataset's layout",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--category", required=True, choices=(*CATEGORIES, FACE_CATEGORY),
        help="object category (face: Unsup3d's symmetric faces with ground-truth depth)",
    )  # fmt: skip
    parser.add_argument("--n", type=int, default=2000, help="number of objects (default 2000)")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (default 64 for shapenet and face, else 128)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default=None,
        help="on-disk layout (default shapenet; folder for face, its only layout)",
    )  # fmt: skip
    parser.add_argument(
        "--views", type=int, default=None,
        help="renders per object (default 24 for shapenet, with SoftRas's cameras; else 1)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--background", choices=BACKGROUNDS, default=None, help="background (default plain)")
    parser.add_argument(
        "--background-dir", type=Path, default=None,
        help="photos to crop 'image' backgrounds from (default: procedural scenes)",
    )  # fmt: skip
    default_splits = ",".join(f"{name}={fraction}" for name, fraction in DEFAULT_SPLITS)
    parser.add_argument(
        "--split-fractions", default=default_splits,
        help=f"name=fraction pairs, or train,val,test fractions (default {default_splits})",
    )  # fmt: skip
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the renders are small, more threads only add overhead)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate the dataset the parsed ``args`` describe; exit status 0, or 2 on bad arguments."""
    if args.category == FACE_CATEGORY:
        return run_faces(args)
    images: tuple[Path, ...] = ()
    if args.background_dir is not None:
        if not args.background_dir.is_dir():
            print(f"error: --background-dir {args.background_dir} is not a directory", file=sys.stderr)
            return 2
        images = tuple(
            sorted(p for p in args.background_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        )
        if not images:
            print(f"error: no images in --background-dir {args.background_dir}", file=sys.stderr)
            return 2
    try:
        config = SyntheticConfig(
            category=args.category,
            n=args.n,
            size=args.size,
            layout=args.layout or "shapenet",
            views=args.views,
            seed=args.seed,
            background=args.background or "plain",
            background_images=images,
            splits=parse_split_fractions(args.split_fractions),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    with tqdm(total=config.n, desc=f"make-synthetic {config.category}", unit="object") as bar:
        data = generate(args.out, config, progress=bar.update)
    splits = ", ".join(f"{name} {count}" for name, count in data["splits"].items())
    print(
        f"wrote {config.n} {config.category} objects ({splits}) in the {config.layout} layout to {args.out}"
    )
    return 0


def run_faces(args: argparse.Namespace) -> int:
    """``--category face``: the synthetic faces (module docstring); exit status 0, or 2 on bad arguments."""
    refused = {
        "--layout": args.layout not in (None, "folder"),
        "--views": args.views not in (None, 1),
        "--background": args.background is not None,
        "--background-dir": args.background_dir is not None,
    }
    for flag, bad in refused.items():
        if bad:
            print(f"error: {flag} does not apply to --category face (folder layout, one view, its own "
                  "background plane)", file=sys.stderr)  # fmt: skip
            return 2
    try:
        config = SyntheticFacesConfig(
            n=args.n,
            size=args.size or 64,
            seed=args.seed,
            splits=parse_split_fractions(args.split_fractions),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    with tqdm(total=config.n, desc="make-synthetic face", unit="face") as bar:
        data = generate_faces(args.out, config, progress=bar.update)
    splits = ", ".join(f"{name} {count}" for name, count in data["splits"].items())
    print(f"wrote {config.n} face objects ({splits}) in the folder layout to {args.out}")
    return 0
