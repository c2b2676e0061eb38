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
- ``bench/render``, ``bench/reconstruct``, ``bench/effective-loss``, ``bench/serve``: the benchmarks on
  D (``bench serve`` runs a job through the real HTTP server on D).

On a machine without CUDA it says so and exits 0 without running anything. ``--dry-run`` runs every part
on the CPU with the same tiny sizes (precisions other than fp32 then train in fp32, as the loop says),
which is how CI-less machines check the script itself. Exit status: 0 when no part failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_PHOTOS = Path("../shared/data/photos")
NO_OPEN3D = "open3d"
"""Text the MeshingError for a missing Open3D contains (the part is then a skip, not a failure)."""


@dataclass
class Part:
    """One part of the check: its name, status ("pass", "fail", "skip"), wall seconds and a detail."""

    name: str
    status: str = "pass"
    seconds: float = 0.0
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """Raised by a part that cannot run on this machine for a reason that is not a defect."""


class Check:
    """Runs the parts in order and keeps their results."""

    def __init__(self, args: argparse.Namespace, device: str) -> None:
        self.args, self.device = args, device
        self.out: Path = args.out
        self.parts: list[Part] = []

    def part(self, name: str, work: Callable[[], dict[str, Any] | None]) -> Part:
        """Run ``work``; an exception fails the part (``Skip`` skips it). Prints one line per part."""
        if self.args.only and name != "data" and not any(pattern in name for pattern in self.args.only):
            return Part(name, "skip", detail="not selected (--only)")
        result = Part(name)
        started = time.perf_counter()
        try:
            result.figures = work() or {}
        except Skip as reason:
            result.status, result.detail = "skip", str(reason)
        except Exception as error:  # a failing part must not stop the others
            result.status = "fail"
            result.detail = f"{type(error).__name__}: {error}"[-2000:]
            if not isinstance(error, PartFailure):
                result.detail += "\n" + traceback.format_exc()[-3000:]
        result.seconds = round(time.perf_counter() - started, 2)
        self.parts.append(result)
        print(f"[gpu-check] {result.status:4} {result.seconds:7.1f} s  {name}", file=sys.stderr, flush=True)
        if result.status == "fail":
            print("    " + result.detail.replace("\n", "\n    ")[-1500:], file=sys.stderr, flush=True)
        return result

    def summary(self, total: float) -> dict[str, Any]:
        from backend.bench.machine import machine_info

        counts = {status: sum(p.status == status for p in self.parts) for status in ("pass", "fail", "skip")}
        return {
            "check": "gpu",
            "device": self.device,
            "dry_run": self.args.dry_run,
            "machine": machine_info(),
            "date": time.strftime("%Y-%m-%d"),
            "steps": self.args.steps,
            "passed": counts["pass"],
            "failed": counts["fail"],
            "skipped": counts["skip"],
            "seconds": round(total, 1),
            "parts": [asdict(part) for part in self.parts],
        }


class PartFailure(Exception):
    """A part's own check failed (its message says which; no traceback is attached)."""


def _run(command: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command of this checkout (``sys.executable -m ...``) and capture its output."""
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=dict(os.environ), check=False
    )


def _require_success(process: subprocess.CompletedProcess[str], what: str) -> None:
    if process.returncode != 0:
        tail = (process.stdout[-1500:] + "\n" + process.stderr[-2500:]).strip()
        raise PartFailure(f"{what} exited with {process.returncode}:\n{tail}")


def _last_json(text: str) -> dict[str, Any]:
    """The last top-level JSON object printed in ``text`` (benchmarks print progress lines before it)."""
    start = text.rfind("\n{")
    start = 0 if start < 0 and text.startswith("{") else start + 1
    try:
        value = json.loads(text[start:])
    except json.JSONDecodeError as error:
        raise PartFailure(f"no JSON report in the output: {text[-500:]!r}") from error
    if not isinstance(value, dict):
        raise PartFailure("the report is not a JSON object")
    return value


# --- the parts ---------------------------------------------------------------------------------------


def run_tests(check: Check) -> dict[str, Any]:
    """``pytest -m device``: the device-parametrised tests (cuda variants where CUDA is available)."""
    # only the files that hold device tests: collecting the rest would import what this machine may lack
    files = sorted(
        str(path)
        for path in Path("tests").rglob("test_*.py")
        if "tests.devices import" in path.read_text() or "pytest.mark.device" in path.read_text()
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device", *files]
    process = _run(command, timeout=check.args.test_timeout)
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    outcome = lines[-1] if lines else ""
    if process.returncode != 0:
        failed = [line for line in process.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        raise PartFailure(
            f"pytest exited with {process.returncode}: {outcome}\n"
            + "\n".join(failed[:30])
            + "\n"
            + process.stdout[-2500:]
        )
    return {"outcome": outcome}


def make_data(root: Path) -> dict[str, Any]:
    """The tiny synthetic sets every trainer reads, under ``root/data`` (generated once, then reused)."""
    from training.datasets.synthetic import SyntheticConfig, generate

    splits = (("train", 0.75), ("val", 0.25))
    sets = {
        "shapenet64": SyntheticConfig(
            category="bird", n=8, layout="shapenet", views=4, seed=3, splits=splits
        ),
        "shapenet32": SyntheticConfig(
            category="bird", n=8, layout="shapenet", views=4, size=32, seed=3, splits=splits
        ),
        "cub64": SyntheticConfig(
            category="bird",
            n=12,
            layout="cub",
            size=64,
            seed=5,
            background="noise",
            splits=(("train", 0.75), ("test", 0.25)),
        ),
        "folder32": SyntheticConfig(
            category="bird", n=10, layout="folder", size=32, seed=2, background="noise"
        ),
    }
    for name, config in sets.items():
        if not (root / "data" / name / ".complete").is_file():
            generate(root / "data" / name, config)
            (root / "data" / name / ".complete").touch()
    return {"sets": sorted(sets)}


COMMON = ["--progress", "false", "--tensorboard", "false"]


def sets(*pairs: str) -> list[str]:
    """``--set KEY=VALUE`` flags for each pair."""
    return [item for pair in pairs for item in ("--set", pair)]


def run_folder(root: Path, trainer: str, precision: str) -> Path:
    """Where ``train_one`` puts the run of ``trainer`` in ``precision``."""
    return root / "runs" / f"{trainer}-{precision}"


def trainer_arguments(trainer: str, precision: str, device: str, root: Path, steps: int) -> list[str]:
    """The ``mono2mesh-train`` arguments of one tiny run of ``steps`` steps with evaluation and images,
    reading ``make_data(root)``'s sets and writing ``run_folder(root, trainer, precision)``."""
    data, out = root / "data", str(run_folder(root, trainer, precision))
    base = ["--device", device, "--precision", precision, "--out", out, "--iterations", str(steps), *COMMON]
    base += ["--log-every", "1"]
    if trainer == "softras":
        return [
            "softras",
            "--data",
            str(data / "shapenet64"),
            "--preset",
            "smoke",
            *base,
            "--batch-size",
            "4",
            "--eval-views",
            "1",
        ]
    adaptive = sets(
        "model.image_size=64",
        "model.flow_height=32",
        "model.flow_width=64",
        "render_size=32",
        "batch_size=4",
        "lr=1e-3",
        "vgg_layers=1",
        "fid_features=conv",
        "fid_dims=8",
        "eval_items=3",
        "pretrained=none",
    )
    adaptive = ["adaptive-flow", "--data", str(data / "cub64"), "--preset", "smoke", *adaptive, *base]
    if trainer == "adaptive-flow-stage1":
        return [*adaptive, "--preset", "stage1"]
    if trainer == "adaptive-flow-stage2":
        stage1 = run_folder(root, "adaptive-flow-stage1", "fp32") / "adaptive-flow.safetensors"
        if not stage1.is_file():
            raise PartFailure(f"stage 2 needs stage 1's fp32 checkpoint {stage1}, which is missing")
        return [*adaptive, *sets(f"stage1_checkpoint={stage1}")]
    if trainer == "pointcloud-poisson":
        return [
            "pointcloud-poisson",
            "--data",
            str(data / "shapenet32"),
            "--preset",
            "cpu",
            *base,
            *sets("model.image_size=32", "model.channels=4", "model.z_dim=32", "model.hidden=32"),
            "--batch-size",
            "2",
            "--views-per-item",
            "2",
            "--eval-views",
            "1",
            "--eval-objects",
            "1",
            "--ground-truth-points",
            "500",
            "--eval-every",
            "10",
            "--image-every",
            "10",
            "--checkpoint-every",
            "10",
        ]
    if trainer == "texture-completion":
        return [
            "texture-completion",
            "--data",
            str(data / "folder32"),
            "--preset",
            "cpu",
            *base,
            "--batch-size",
            "4",
            "--pretrained",
            "none",
            "--eval-every",
            "10",
            "--image-every",
            "10",
            "--checkpoint-every",
            "10",
            *sets("model.image_size=32", "model.depth=3"),
        ]
    raise ValueError(f"unknown trainer {trainer!r}")


TRAINERS = (
    "softras",
    "adaptive-flow-stage1",
    "adaptive-flow-stage2",
    "pointcloud-poisson",
    "texture-completion",
)
FINAL_NAME = {
    "softras": "softras",
    "adaptive-flow-stage1": "adaptive-flow",
    "adaptive-flow-stage2": "adaptive-flow",
    "pointcloud-poisson": "pointcloud-poisson",
    "texture-completion": "texture-completion",
}


def train_one(trainer: str, precision: str, device: str, root: Path, steps: int) -> dict[str, Any]:
    """One tiny training run in this process (``trainer_arguments``): raises ``PartFailure`` unless it exits
    0 with finite losses and writes its final checkpoint with the precision and step count it was given."""
    from training.cli import main as train_main

    arguments = trainer_arguments(trainer, precision, device, root, steps)
    out = run_folder(root, trainer, precision)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    status = train_main(arguments)
    if status != 0:
        raise PartFailure(f"mono2mesh-train {' '.join(arguments)} exited with {status}")
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line]
    losses = [r["loss"] for r in records if r.get("kind") == "train"]
    if len(losses) < 2 or not all(math.isfinite(v) for v in losses):
        raise PartFailure(f"training losses are missing or not finite: {losses}")
    checkpoint = out / f"{FINAL_NAME[trainer]}.safetensors"
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    if meta["config"]["precision"] != precision or meta["step"] != steps:
        raise PartFailure(f"the checkpoint says precision {meta['config']['precision']}, step {meta['step']}")
    evaluations = [r for r in records if r.get("kind") == "eval"]
    steps_per_second = [r["steps_per_second"] for r in records if "steps_per_second" in r]
    return {
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
        "evaluations": len(evaluations),
        "steps_per_second": round(steps_per_second[-1], 2) if steps_per_second else None,
        "checkpoint": str(checkpoint),
    }


RECONSTRUCT_OPTIONS: dict[str, list[str]] = {
    "fit": ["iterations=60", "resolution=64", "texture_size=128", "crop_size=256"],
    "softras": ["iterations=30", "resolution=64", "texture_size=128", "crop_size=256"],
    "adaptive-flow": ["crop_size=256", "texture_scale=1"],
    "pointcloud-poisson": ["crop_size=256", "depth=6", "texture_size=256", "camera_iterations=30"],
}


def reconstruct(check: Check, method: str, photo: Path) -> dict[str, Any]:
    """``mono2mesh reconstruct PHOTO --method M --device D`` in a new process; the GLB and report exist."""
    out = check.out / "reconstruct" / method
    command = [
        sys.executable,
        "-m",
        "backend",
        "reconstruct",
        str(photo),
        "--out",
        str(out),
        "--method",
        method,
        "--device",
        check.device,
        "--quiet",
    ]
    for option in RECONSTRUCT_OPTIONS[method]:
        command += ["-o", option]
    if method != "fit":
        trainer = {
            "softras": "softras",
            "adaptive-flow": "adaptive-flow-stage2",
            "pointcloud-poisson": "pointcloud-poisson",
        }[method]
        checkpoint = run_folder(check.out, trainer, "fp32") / f"{FINAL_NAME[trainer]}.safetensors"
        if not checkpoint.is_file():
            raise PartFailure(f"the {trainer} fp32 run wrote no checkpoint {checkpoint}")
        command += ["--checkpoint", str(checkpoint)]
        if method == "pointcloud-poisson":
            texture = run_folder(check.out, "texture-completion", "fp32") / "texture-completion.safetensors"
            if texture.is_file():
                command += ["-o", f"texture_checkpoint={texture}", "-o", "texture=gan"]
    process = _run(command, timeout=check.args.part_timeout)
    if process.returncode != 0 and method == "pointcloud-poisson" and _open3d_missing():
        if NO_OPEN3D in process.stderr + process.stdout:
            named = [line for line in (process.stderr + process.stdout).splitlines() if NO_OPEN3D in line]
            raise Skip(f"Open3D is not installed here; meshing stopped with: {named[-1].strip()[:300]}")
    _require_success(process, "mono2mesh reconstruct")
    report = json.loads((out / f"{photo.stem}.json").read_text())
    if not str(report["device"]).startswith(check.device):
        raise PartFailure(f"the report says it ran on {report['device']}, not {check.device}")
    if not (out / f"{photo.stem}.glb").is_file():
        raise PartFailure("no GLB was written")
    return {"silhouette_iou": report["silhouette_iou"], "timings_s": report["timings"]}


def _open3d_missing() -> bool:
    try:
        import open3d  # noqa: F401
    except ImportError:
        return True
    return False


def benchmarks(device: str, photos: list[Path]) -> dict[str, list[str]]:
    """Part name -> the ``python -m`` arguments of each benchmark the check runs on ``device`` (JSON out)."""
    return {
        "bench/render": ["backend", "bench", "render", "--devices", device, "--sizes", "64,128,256",
                         "--batches", "1,16,64", "--repeats", "3", "--no-deodr", "--json"],
        "bench/reconstruct": ["backend", "bench", "reconstruct", *map(str, photos), "--device", device,
                              "--repeats", "1", "--json"],
        "bench/effective-loss": ["training.cli", "bench-effective-loss", "--device", device, "--points",
                                 "8000", "--views", "4", "--batch-size", "8", "--image-size", "64",
                                 "--cutoff", "10", "--repeats", "3"],
        "bench/serve": ["backend", "bench", "serve", "--device", device, "--jobs", "2", "--image",
                        str(photos[0]), "--json"],
    }  # fmt: skip


def bench(check: Check, arguments: list[str]) -> dict[str, Any]:
    """Run one benchmark in a new process; its JSON report (which must name ``check.device`` if it names a
    device) is the part's figures."""
    process = _run([sys.executable, "-m", *arguments], timeout=check.args.part_timeout)
    _require_success(process, " ".join(arguments[:3]))
    report = _last_json(process.stdout)
    if "device" in report and not str(report["device"]).startswith(check.device):
        raise PartFailure(f"{' '.join(arguments[:3])} ran on {report['device']}, not {check.device}")
    return {"report": report}


# --- the command -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/gpu_check.sh",
        description="Run every trainer, method and benchmark on CUDA and print one JSON summary.",
    )
    parser.add_argument("--dry-run", action="store_true", help="run every part on the CPU (same tiny sizes)")
    parser.add_argument(
        "--out", type=Path, default=Path("out/gpu_check"), help="work folder (default out/gpu_check)"
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps per run (default 20)")
    parser.add_argument(
        "--photo",
        type=Path,
        action="append",
        default=None,
        help="photo for reconstruct and the benchmarks, repeatable (default: ../shared/data/photos/*.jpg)",
    )
    parser.add_argument("--only", action="append", default=[], help="run only parts whose name contains this")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the pytest part")
    parser.add_argument("--test-timeout", type=float, default=420.0, help="seconds for the pytest part")
    parser.add_argument("--part-timeout", type=float, default=300.0, help="seconds for each other part")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the summary to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
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
    device = "cpu" if args.dry_run else "cuda"
    photos = args.photo or sorted(DEFAULT_PHOTOS.glob("*.jpg"))
    if not photos:
        print("scripts/gpu_check.sh: error: no photos (pass --photo PATH)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args, device)
    started = time.perf_counter()
    if not args.skip_tests:
        check.part("tests", lambda: run_tests(check))
    check.part("data", partial(make_data, args.out))
    for trainer in TRAINERS:
        for precision in PRECISIONS:
            work = partial(train_one, trainer, precision, device, args.out, args.steps)
            check.part(f"train/{trainer}/{precision}", work)
    for method in RECONSTRUCT_OPTIONS:
        check.part(f"reconstruct/{method}", partial(reconstruct, check, method, photos[0]))
    for name, arguments in benchmarks(device, photos).items():
        check.part(name, partial(bench, check, arguments))
    summary = check.summary(time.perf_counter() - started)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
