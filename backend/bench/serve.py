"""``mono2mesh bench serve``: what the HTTP server adds to a job, against the same job run in process.

The benchmark starts a real server (``python -m backend.server``, port 0, a temporary jobs folder and
state file, the token passed through the environment), then, for one input photo and one method with
one set of options, alternates two ways of running the same job ``jobs`` times:

- **direct**: ``reconstruct_photo`` + ``export`` in this process, on a method instance made once with
  ``registry.create_method``, timed from the call to the written files;
- **http**: ``POST /v1/jobs`` (multipart upload), wait for the job (the long-poll
  ``GET /v1/jobs/{id}?wait=S`` by default, or plain polling every ``--poll-interval`` seconds), then
  ``GET .../result.glb``, timed from the first byte sent to the last byte received, on one keep-alive
  connection as a client would hold it.

The per-job overhead is http minus direct, paired job by job (the order alternates so that drift of
the machine hits both sides), summarised by median and mean: ``overhead_ms``. The two sides are
separate runs of a job that takes seconds, and on a shared machine their compute times differ by more
than the overhead itself, so a second estimate of the same quantity removes that noise:
``net_overhead_ms`` = (http - the server's compute time) - (direct - its compute time), where a compute
time is ``timings.total`` of the job's report (decode, mask, method stages, export). It leaves what
HTTP, validation, queueing, status writes and polling cost. Goal: at most ``GOAL_MS`` per job; the
report says whether each estimate's median meets it. One warm-up job of each kind is not counted.

The input is ``--image``, else a bird photo from ``../shared/data/photos`` beside the checkout, else a
generated 256 x 256 disc. The default options keep a job to about a second on a laptop CPU.

Run it as ``mono2mesh bench serve [--json]`` or ``python -m backend.bench.serve [--json]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
from PIL import Image, ImageDraw
from pydantic import PositiveInt

from backend import __version__
from backend.bench.machine import machine_info
from backend.config import Config
from backend.config_cli import Flag, OptionsCommand
from backend.methods import registry

GOAL_MS = 50.0
DEFAULT_OPTIONS = {"iterations": 10, "resolution": 32, "hypotheses": 1, "texture_size": 64, "crop_size": 128}
PHOTO_NAMES = ("bird_warbler.jpg", "bird_bunting.jpg", "bird_cartoon.jpg")
_TERMINAL = {"succeeded", "failed", "canceled"}
_REPO = Path(__file__).resolve().parents[2]


class ServeBenchOptions(Config):
    """The options of ``mono2mesh bench serve``."""

    jobs: PositiveInt = 6
    """Timed jobs of each kind."""
    image: Path | None = None
    """Input photo (default: a bird photo)."""
    method: str = registry.DEFAULT_METHOD
    """Method."""
    options: dict[str, Any] = DEFAULT_OPTIONS
    """The method's options as JSON."""
    device: str = "auto"
    """Torch device of both sides: auto, cpu, cuda, mps."""
    poll_interval: float = 0.0
    """Poll every this many seconds instead of long-polling (0: long-poll)."""
    as_json: Annotated[bool, Flag("--json", switch=True)] = False
    """Print the JSON report instead of a table."""


def _main(args: ServeBenchOptions) -> int:
    """Run the benchmark and print its report; 0 on success, 1 when a job failed or the server did."""
    try:
        options = dict(args.options)
        registry.parse_options(args.method, options)
    except ValueError as error:
        print(f"bench serve: bad --options: {error}", file=sys.stderr)
        return 2
    try:
        report = run(args.image, args.method, options, args.device, args.jobs, args.poll_interval)
    except (RuntimeError, TimeoutError, httpx.HTTPError) as error:
        print(f"bench serve: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.as_json else format_table(report))
    return 0


COMMAND = OptionsCommand(ServeBenchOptions, "bench serve", _main)
"""``mono2mesh bench serve``: one flag per field of ``ServeBenchOptions``, then ``_main``."""

add_arguments, main = COMMAND.add_arguments, COMMAND.main


def find_photo(image: Path | None) -> tuple[bytes, str]:
    """The input's bytes and a name: ``image``, else a bird photo from the shared data, else a disc."""
    if image is not None:
        return image.read_bytes(), str(image)
    for folder in (_REPO.parent / "shared" / "data" / "photos", _REPO.parent / "shared" / "data"):
        for name in PHOTO_NAMES:
            if (folder / name).is_file():
                return (folder / name).read_bytes(), str(folder / name)
    disc = Image.new("RGB", (256, 256), (235, 235, 235))
    ImageDraw.Draw(disc).ellipse((64, 48, 192, 208), fill=(190, 60, 40))
    buffer = io.BytesIO()
    disc.save(buffer, "PNG")
    return buffer.getvalue(), "generated disc 256 x 256"


@dataclass
class Server:
    """A server subprocess started for the benchmark."""

    process: subprocess.Popen[bytes]
    url: str
    token: str


def start_server(folder: Path, device: str, timeout: float = 120.0) -> Server:
    """Start ``python -m backend.server`` on a free port in ``folder``; wait until it is ready."""
    token = secrets.token_urlsafe(32)
    state_file = folder / "server.json"
    command = [sys.executable, "-m", "backend.server", "--port", "0", "--device", device]
    command += ["--state-file", str(state_file), "--jobs-dir", str(folder / "jobs")]
    env = {**os.environ, "MONO2MESH_TOKEN": token, "PYTHONPATH": str(_REPO)}
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(command, cwd=_REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + timeout
    try:
        while not state_file.exists():
            if process.poll() is not None:
                log_text = (folder / "server.log").read_text(errors="replace")
                raise RuntimeError(f"the server exited with {process.returncode}: {log_text}")
            if time.monotonic() > deadline:
                raise TimeoutError("the server wrote no state file")
            time.sleep(0.05)
        url = json.loads(state_file.read_text())["url"]
        while not httpx.get(f"{url}/v1/health").json()["ready"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the server never became ready")
            time.sleep(0.05)
    except BaseException:
        stop_server(process)
        raise
    return Server(process, url, token)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def http_job(
    client: httpx.Client, image: bytes, method: str, options: dict[str, Any], poll_interval: float
) -> dict[str, Any]:
    """One job through HTTP; its wall time (ms) in parts, and the server's compute time from its report."""
    started = time.perf_counter()
    response = client.post(
        "/v1/jobs",
        files={"image": ("photo", image, "application/octet-stream")},
        data={"method": method, "options": json.dumps(options)},
    )
    if response.status_code != 202:
        raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
    job = response.json()
    submitted = time.perf_counter()
    while job["status"] not in _TERMINAL:
        if poll_interval > 0:
            time.sleep(poll_interval)
            job = client.get(f"/v1/jobs/{job['id']}").json()
        else:
            job = client.get(f"/v1/jobs/{job['id']}", params={"wait": 10}).json()
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['status']}: {job['error']}")
    finished = time.perf_counter()
    glb = client.get(job["results"]["glb"])
    glb.raise_for_status()
    done = time.perf_counter()
    report = client.get(job["results"]["report"]).json()
    return {
        "total_ms": (done - started) * 1e3,
        "submit_ms": (submitted - started) * 1e3,
        "wait_ms": (finished - submitted) * 1e3,
        "download_ms": (done - finished) * 1e3,
        "server_compute_ms": report["timings"]["total"] * 1e3,
        "glb_bytes": len(glb.content),
    }


def direct_job(method: Any, image: bytes, options: Any, out_dir: Path) -> dict[str, Any]:
    """One job in process: ``reconstruct_photo`` + ``export``; wall time and the report's compute time."""
    from backend.methods.pipeline import export, reconstruct_photo

    started = time.perf_counter()
    result = reconstruct_photo(method, image, options=options)
    paths = export(result, out_dir, "result")
    total = (time.perf_counter() - started) * 1e3
    return {"total_ms": total, "compute_ms": result.report()["timings"]["total"] * 1e3, "files": len(paths)}


def run(
    image_path: Path | None,
    method_name: str,
    options: dict[str, Any],
    device: str,
    jobs: int,
    poll_interval: float,
) -> dict[str, Any]:
    """The benchmark (module docstring); returns the JSON-ready report."""
    image, image_name = find_photo(image_path)
    device = str(registry.resolve_device(device))
    method = registry.create_method(method_name, device)
    parsed = registry.parse_options(method_name, options)
    direct: list[dict[str, Any]] = []
    http: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mono2mesh-bench-serve-") as scratch:
        folder = Path(scratch)
        server = start_server(folder, device)
        try:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=600.0
            ) as client:
                direct_job(method, image, parsed, folder / "warm-up")
                http_job(client, image, method_name, options, poll_interval)
                for index in range(jobs):
                    out_dir = folder / f"direct-{index}"
                    if index % 2 == 0:
                        direct.append(direct_job(method, image, parsed, out_dir))
                        http.append(http_job(client, image, method_name, options, poll_interval))
                    else:
                        http.append(http_job(client, image, method_name, options, poll_interval))
                        direct.append(direct_job(method, image, parsed, out_dir))
        finally:
            stop_server(server.process)
    overhead = [h["total_ms"] - d["total_ms"] for h, d in zip(http, direct, strict=True)]
    net = [
        (h["total_ms"] - h["server_compute_ms"]) - (d["total_ms"] - d["compute_ms"])
        for h, d in zip(http, direct, strict=True)
    ]
    decoded = Image.open(io.BytesIO(image))
    return {
        "benchmark": "serve",
        "version": __version__,
        "machine": machine_info(),
        "device": str(method.device),
        "method": method_name,
        "options": parsed.model_dump(mode="json"),
        "image": {"name": image_name, "size": list(decoded.size), "bytes": len(image)},
        "jobs": jobs,
        "polling": f"every {poll_interval * 1e3:g} ms" if poll_interval > 0 else "long-poll (?wait=10)",
        "direct_ms": _rounded([d["total_ms"] for d in direct]),
        "direct_compute_ms": _rounded([d["compute_ms"] for d in direct]),
        "http_ms": _rounded([h["total_ms"] for h in http]),
        "http_server_compute_ms": _rounded([h["server_compute_ms"] for h in http]),
        "http_parts_median_ms": {
            part: round(statistics.median(h[part] for h in http), 2)
            for part in ("submit_ms", "wait_ms", "download_ms", "server_compute_ms")
        },
        "overhead_ms": _summary(overhead),
        "net_overhead_ms": _summary(net),
        "goal_ms": GOAL_MS,
        "goal_met": {
            "overhead_median": statistics.median(overhead) <= GOAL_MS,
            "net_overhead_median": statistics.median(net) <= GOAL_MS,
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """A short human-readable version of ``run``'s report."""
    lines = [
        f"bench serve: {report['method']} on {report['device']}, {report['jobs']} jobs, "
        f"{report['image']['name']} ({report['image']['size'][0]} x {report['image']['size'][1]}), "
        f"polling: {report['polling']}",
        f"{'':34}{'median':>10}{'mean':>10}{'min':>10}{'max':>10}",
    ]
    rows = {
        "direct job (ms)": _summary(report["direct_ms"]),
        "http job (ms)": _summary(report["http_ms"]),
        "overhead: http - direct (ms)": report["overhead_ms"],
        "net overhead (ms)": report["net_overhead_ms"],
    }
    for name, row in rows.items():
        lines.append(f"{name:34}" + "".join(f"{row[key]:>10.1f}" for key in ("median", "mean", "min", "max")))
    met = {name: "met" if value else "NOT met" for name, value in report["goal_met"].items()}
    lines.append(
        f"goal: median overhead <= {report['goal_ms']:g} ms: {met['overhead_median']} (raw), "
        f"{met['net_overhead_median']} (net of compute-time noise)"
    )
    return "\n".join(lines)


def _summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(array)), 2),
        "mean": round(float(array.mean()), 2),
        "min": round(float(array.min()), 2),
        "max": round(float(array.max()), 2),
    }


def _rounded(values: list[float]) -> list[float]:
    return [round(value, 2) for value in values]


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m backend.bench.serve")
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
