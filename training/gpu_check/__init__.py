"""``scripts/gpu_check.sh``: one command that proves the product runs on a CUDA machine, as one JSON summary.

On a machine with CUDA it runs, each part timed and marked pass / fail / skip (a failing part never stops
the others):

- ``tests``: the device-sensitive tests (``pytest -m device``), which are parametrised over ``cpu`` and,
  where CUDA is available, ``cuda``: renderer values and gradients against a float64 CPU reference, the
  renderer under autocast, cameras, ``fit``, each trainer's steps in fp32 / fp16 / bf16.
- ``data``: tiny synthetic sets (``training.datasets.synthetic``) in the layouts the trainers read.
- ``train/<trainer>/<precision>``: ``mono2mesh-train <trainer>`` for ``--steps`` steps (20) with its
  evaluation, image grid and mid-run checkpoint, in fp32, fp16 (GradScaler) and bf16: softras,
  adaptive-flow stage 1 and stage 2 (from stage 1's fp32 checkpoint), pointcloud-poisson,
  texture-completion. A run passes when it exits 0 with finite losses and writes its final checkpoint.
- ``reconstruct/<method>``: ``mono2mesh reconstruct PHOTO --device D`` (a separate process, the real
  command) with ``fit`` and with each trainer's fp32 checkpoint; it passes when the GLB is written and the
  report says it ran on D. ``pointcloud-poisson`` meshes with Open3D: where Open3D is not installed the
  command must fail with the MeshingError that names it, and the part is a skip.
- ``bench/render``, ``bench/reconstruct``, ``bench/effective-loss``, ``bench/serve``, ``bench/throughput``:
  the benchmarks on D (``bench serve`` runs a job through the real HTTP server on D; ``bench-throughput``
  times every trainer in fp32 and bf16, and on CUDA also adaptive-flow stage 2 at the issue's batch 64,
  256^2 input, 64^2 renders).

On a machine without CUDA it says so and exits 0 without running anything. ``--dry-run`` runs every part
on the CPU with the same tiny sizes (precisions other than fp32 then train in fp32, as the loop says),
which is how CI-less machines check the script itself. Exit status: 0 when no part failed, 1 otherwise.
"""

# The package, by what each module holds (this one: ``main``, the parts in order):
# - ``options``: ``GpuCheckOptions``, the command line;
# - ``check``: ``Check`` (runs a part, keeps its result, the summary), ``Part``, ``Skip``, ``PartFailure``;
# - ``trainers``: the synthetic sets and the training runs;
# - ``parts``: the device tests, ``mono2mesh reconstruct`` and the benchmarks.

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from training.gpu_check.check import Check, Part, PartFailure, Skip
from training.gpu_check.options import GpuCheckOptions, build_parser, parse_options
from training.gpu_check.parts import RECONSTRUCT_OPTIONS, bench, benchmarks, reconstruct, run_tests
from training.gpu_check.trainers import (
    FINAL_NAME,
    PRECISIONS,
    TRAINERS,
    make_data,
    run_folder,
    train_one,
    trainer_arguments,
)

__all__ = [
    "FINAL_NAME",
    "PRECISIONS",
    "TRAINERS",
    "Check",
    "GpuCheckOptions",
    "Part",
    "PartFailure",
    "Skip",
    "build_parser",
    "main",
    "make_data",
    "run_folder",
    "train_one",
    "trainer_arguments",
]

DEFAULT_PHOTOS = Path("../shared/data/photos")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check (module docstring); the exit status: 0 when no part failed, 1 otherwise, 2 on bad
    options or no photos."""
    options = parse_options(argv)
    import torch

    if not options.dry_run and not torch.cuda.is_available():
        print(
            json.dumps(
                {
                    "check": "gpu",
                    "cuda": False,
                    "note": "no CUDA device here: nothing was run (--dry-run runs every part on the CPU)",
                }
            )
        )
        return 0
    device = "cpu" if options.dry_run else "cuda"
    photos = list(options.photo) or sorted(DEFAULT_PHOTOS.glob("*.jpg"))
    if not photos:
        print("scripts/gpu_check.sh: error: no photos (pass --photo PATH)", file=sys.stderr)
        return 2
    options.out.mkdir(parents=True, exist_ok=True)
    check = Check(options, device)
    started = time.perf_counter()
    if not options.skip_tests:
        check.part("tests", lambda: run_tests(check))
    check.part("data", partial(make_data, options.out))
    for trainer in TRAINERS:
        for precision in PRECISIONS:
            work = partial(train_one, trainer, precision, device, options.out, options.steps)
            check.part(f"train/{trainer}/{precision}", work)
    for method in RECONSTRUCT_OPTIONS:
        check.part(f"reconstruct/{method}", partial(reconstruct, check, method, photos[0]))
    for name, arguments in benchmarks(device, photos, options.out).items():
        check.part(name, partial(bench, check, arguments))
    summary = check.summary(time.perf_counter() - started)
    text = json.dumps(summary, indent=2)
    print(text)
    if options.json_out is not None:
        options.json_out.parent.mkdir(parents=True, exist_ok=True)
        options.json_out.write_text(text + "\n")
    return 1 if summary["failed"] else 0
