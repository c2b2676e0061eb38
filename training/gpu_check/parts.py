"""The GPU check's other parts: the device tests, ``mono2mesh reconstruct`` with each checkpoint, the
benchmarks.

- ``run_tests``: ``pytest -m device`` over the files that hold device tests;
- ``reconstruct``: ``mono2mesh reconstruct PHOTO --method M --device D`` in a new process, with ``fit`` and
  with the fp32 checkpoint of each trainer (``RECONSTRUCT_OPTIONS``); the GLB and the report (which must
  name D) are written. Where Open3D is missing, ``pointcloud-poisson`` must stop with the MeshingError that
  names it (``NO_OPEN3D``): a skip;
- ``bench``: one of ``benchmarks(device, photos)`` in a new process; its JSON report is the part's figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from training.gpu_check.check import Check, PartFailure, Skip, last_json, require_success, run_process
from training.gpu_check.trainers import FINAL_NAME, run_folder

NO_OPEN3D = "open3d"
"""Text the MeshingError for a missing Open3D contains (the part is then a skip, not a failure)."""


def run_tests(check: Check) -> dict[str, Any]:
    """``pytest -m device``: the device-parametrised tests (cuda variants where CUDA is available)."""
    # only the files that hold device tests: collecting the rest would import what this machine may lack
    files = sorted(
        str(path)
        for path in Path("tests").rglob("test_*.py")
        if "tests.devices import" in path.read_text() or "pytest.mark.device" in path.read_text()
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device", *files]
    process = run_process(command, timeout=check.options.test_timeout)
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


RECONSTRUCT_OPTIONS: dict[str, list[str]] = {
    "fit": ["iterations=60", "resolution=64", "texture_size=128", "crop_size=256"],
    "softras": ["iterations=30", "resolution=64", "texture_size=128", "crop_size=256"],
    "adaptive-flow": ["crop_size=256", "texture_scale=1"],
    "pointcloud-poisson": ["crop_size=256", "depth=6", "texture_size=256", "camera_iterations=30"],
    "mesh-inversion": ["crop_size=256", "random_z=64", "stage_iterations=10"],
    "unsup3d": ["crop_size=128"],
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
            "mesh-inversion": "mesh-inversion-gan",
            "unsup3d": "unsup3d",
        }[method]
        checkpoint = run_folder(check.out, trainer, "fp32") / f"{FINAL_NAME[trainer]}.safetensors"
        if not checkpoint.is_file():
            raise PartFailure(f"the {trainer} fp32 run wrote no checkpoint {checkpoint}")
        command += ["--checkpoint", str(checkpoint)]
        if method == "pointcloud-poisson":
            texture = run_folder(check.out, "texture-completion", "fp32") / "texture-completion.safetensors"
            if texture.is_file():
                command += ["-o", f"texture_checkpoint={texture}", "-o", "texture=gan"]
    process = run_process(command, timeout=check.options.part_timeout)
    if process.returncode != 0 and method == "pointcloud-poisson" and _open3d_missing():
        if NO_OPEN3D in process.stderr + process.stdout:
            named = [line for line in (process.stderr + process.stdout).splitlines() if NO_OPEN3D in line]
            raise Skip(f"Open3D is not installed here; meshing stopped with: {named[-1].strip()[:300]}")
    require_success(process, "mono2mesh reconstruct")
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


def benchmarks(device: str, photos: list[Path], out: Path) -> dict[str, list[str]]:
    """Part name -> the ``python -m`` arguments of each benchmark the check runs on ``device`` (JSON out);
    ``out`` is the check's folder (the throughput bench makes its synthetic sets under it)."""
    parts: dict[str, list[str]] = {
        "bench/render": ["backend", "bench", "render", "--devices", device, "--sizes", "64,128,256",
                         "--batches", "1,16,64", "--repeats", "3", "--no-deodr", "--backends", "torch,triton",
                         "--ops", "--json"],
        "bench/reconstruct": ["backend", "bench", "reconstruct", *map(str, photos), "--device", device,
                              "--repeats", "1", "--json"],
        "bench/effective-loss": ["training.cli", "bench-effective-loss", "--device", device, "--points",
                                 "8000", "--views", "4", "--batch-size", "8", "--image-size", "64",
                                 "--cutoff", "10", "--repeats", "3"],
        "bench/serve": ["backend", "bench", "serve", "--device", device, "--jobs", "2", "--image",
                        str(photos[0]), "--json"],
        "bench/throughput": ["training.cli", "bench-throughput", "--out", str(out / "throughput"), "--device",
                             device, "--precisions", "fp32,bf16", "--warmup", "2", "--steps", "5",
                             "--profile", "--profile-steps", "1"],
    }  # fmt: skip
    if device == "cuda":  # the workload; far too slow for a dry run on the CPU
        parts["bench/throughput-adaptive-flow-64"] = [
            "training.cli", "bench-throughput", "--out", str(out / "throughput"), "--device", device,
            "--trainers", "adaptive-flow-stage2", "--precisions", "fp32,bf16", "--batch-size", "64",
            "--set", "adaptive-flow-stage2:model.image_size=256",
            "--set", "adaptive-flow-stage2:render_size=64",
            "--set", "workers=8", "--warmup", "3", "--steps", "10", "--profile", "--profile-steps", "1",
        ]  # fmt: skip
    return parts


def bench(check: Check, arguments: list[str]) -> dict[str, Any]:
    """Run one benchmark in a new process; its JSON report (which must name ``check.device`` if it names a
    device) is the part's figures."""
    process = run_process([sys.executable, "-m", *arguments], timeout=check.options.part_timeout)
    require_success(process, " ".join(arguments[:3]))
    report = last_json(process.stdout)
    if "device" in report and not str(report["device"]).startswith(check.device):
        raise PartFailure(f"{' '.join(arguments[:3])} ran on {report['device']}, not {check.device}")
    return {"report": report}
