"""``mono2mesh mask-model status|download``: the salient-object mask model (``backend.imaging.salient``).

- ``status [--mask-model PATH]`` prints the status JSON (``mask_model_status``): ``{"available", "path",
  "name", "source", "searched", "reason", "download_url"}``; exit 0 whether a model is found or not.
- ``download [--name NAME] [--url URL]`` fetches a model into the cache folder
  (``<data dir>/models/mask/<name>.onnx``): ``NAME`` from the registry (default ``u2netp``, ~4.6 MB),
  from ``URL`` when given (http, https or file; a known name keeps its registry checksum, another name is
  only checked by loading it). It prints where it put the file on stderr and the new status JSON on
  stdout. Exit 0 when downloaded, 1 when the download or its checks failed (nothing is kept), 2 for a
  bad name or URL.

This is the only command that downloads anything; ``reconstruct`` and ``serve`` never do. The imaging
modules are imported by the functions that run, not at the top (``mono2mesh --help`` stays light).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mask-model",
        type=Path,
        default=None,
        help="a model file to check instead of $MONO2MESH_MASK_MODEL or the cache folder",
    )


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        default=None,
        help="registry name (u2netp, u2net, isnet-general-use, birefnet-general-lite; default u2netp), "
        "or any name with --url",
    )
    parser.add_argument("--url", default=None, help="download from this URL (http, https or file://)")


def status_main(args: argparse.Namespace) -> int:
    from backend.imaging.salient import mask_model_status

    print(json.dumps(mask_model_status(args.mask_model), indent=2))
    return 0


def download_main(args: argparse.Namespace) -> int:
    from backend.imaging.salient import (
        DEFAULT_MODEL,
        MaskModelDownloadError,
        MaskModelError,
        download_model,
        mask_model_status,
    )

    name = args.name or DEFAULT_MODEL
    try:
        path = download_model(name, args.url)
    except MaskModelDownloadError as error:
        print(f"mono2mesh mask-model download: {error}", file=sys.stderr)
        return 1
    except MaskModelError as error:  # a bad name or URL, or onnxruntime missing
        print(f"mono2mesh mask-model download: {error}", file=sys.stderr)
        return 2
    print(f"mask model {name} saved to {path}", file=sys.stderr)
    print(json.dumps(mask_model_status(), indent=2))
    return 0
