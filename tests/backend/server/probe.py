"""A hostile client's probe of a running backend server: counts 500 answers and "internal error" jobs.

It sends, over real HTTP:

- for every numeric option of the method (from ``GET /v1/methods``): values below and above its range,
  far out of range (+-1e300), ``1e309`` (infinity once parsed), ``Infinity``, ``-Infinity``, ``NaN``,
  2^64, an integer of 4,301 digits, a string, null, true, [], {} and its two bounds (valid: those
  become jobs, on top of small settings so they finish quickly);
- options nested 5,000 / 20,000 / 100,000 deep, 70,000 characters long, not an object, not JSON;
- malformed requests: job ids with path traversal, bad ``wait`` values, no image, an empty image, a
  text file as image.

Jobs that were accepted are waited for (``--job-timeout`` each, then canceled); the report counts the
answers by status code, the 500s, and the jobs that ended "failed" with an "internal error".

Run it against a server that is up (``--url`` and ``--token``, or ``--state-file``), or let it start one:
``python -m tests.backend.server.probe --spawn`` (from the repository root; the real ``fit`` method).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.backend.server.support import ROOT, SMALL_FIT, TERMINAL, ServerProcess, disc_image, png_bytes


@dataclass
class ProbeResult:
    """What the probe saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # the cases answered 5xx
    internal_error_jobs: list[str] = field(default_factory=list)  # case: error
    job_outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        return (
            f"{self.requests} requests: statuses {dict(sorted(self.statuses.items()))}; "
            f"{len(self.server_errors)} answered 5xx; jobs {dict(self.job_outcomes)}; "
            f"{len(self.internal_error_jobs)} failed with an internal error"
        )


def option_cases(
    schema: dict[str, Any], base: dict[str, Any], fields: list[str] | None = None
) -> list[tuple[str, str]]:
    """(case name, options text) for every numeric field of ``schema`` (or those of ``fields``), on top
    of ``base``."""
    cases: list[tuple[str, str]] = []
    for name, spec in schema["properties"].items():
        if fields is not None and name not in fields:
            continue
        variants = [spec, *spec.get("anyOf", [])]
        numeric = [variant for variant in variants if variant.get("type") in ("integer", "number")]
        if not numeric:
            continue
        variant = numeric[0]
        lower = variant.get("minimum", variant.get("exclusiveMinimum"))
        upper = variant.get("maximum", variant.get("exclusiveMaximum"))
        raw = ["1e309", "-1e309", "Infinity", "-Infinity", "NaN", str(2**64), "9" * 4301, '"text"']
        raw += ["null", "true", "[]", "{}", "1e300", "-1e300"]
        if lower is not None:
            raw += [json.dumps(lower), json.dumps(lower - 1)]
        if upper is not None:
            raw += [json.dumps(upper), json.dumps(upper + 1), json.dumps(upper * 10)]
        rest = json.dumps({key: value for key, value in base.items() if key != name})[1:-1]
        for text in raw:
            body = f'{{{rest}, "{name}": {text}}}' if rest else f'{{"{name}": {text}}}'
            cases.append((f"{name}={text[:20]}", body))
    return cases


def structural_cases() -> list[tuple[str, str]]:
    """(case name, options text) of options that are not flat JSON objects."""
    cases = []
    for depth in (5_000, 20_000, 100_000):
        cases.append((f"array-depth-{depth}", "[" * depth + "]" * depth))
        cases.append((f"object-depth-{depth}", '{"a":' * depth + "1" + "}" * depth))
    cases += [
        ("long-text", '{"iterations": 1' + " " * 70_000 + "}"),
        ("not-json", "{iterations: 5"),
        ("array", "[1, 2]"),
        ("string", '"text"'),
        ("number", "1e309"),
        ("nested-object", '{"iterations": {"a": {"b": 1}}}'),
        ("unicode-key", '{"\u00e9\u0000": 1}'),
        ("duplicate-keys", '{"iterations": 5, "iterations": 1e309}'),
    ]
    return cases


def run_probe(
    url: str,
    token: str,
    *,
    method: str = "fit",
    job_timeout: float = 60.0,
    fields: list[str] | None = None,
) -> ProbeResult:
    """Send every case to the server at ``url`` and wait for the jobs (module docstring); ``fields``
    limits the per-option cases to those options (default: every numeric one)."""
    result = ProbeResult()
    image = png_bytes(disc_image())
    jobs: dict[str, str] = {}  # job id -> case
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0) as client:

        def send(case: str, request: httpx.Request) -> httpx.Response:
            response = client.send(request)
            result.statuses[response.status_code] += 1
            if response.status_code >= 500:
                result.server_errors.append(f"{case}: {response.status_code} {response.text[:200]}")
            return response

        def submit(case: str, options: str, files: dict[str, Any] | None = None) -> None:
            request = client.build_request(
                "POST",
                "/v1/jobs",
                files=files if files is not None else {"image": ("disc.png", image, "image/png")},
                data={"method": method, "options": options},
            )
            response = send(case, request)
            if response.status_code == 202:
                jobs[response.json()["id"]] = case

        methods = client.get("/v1/methods").json()["methods"]
        schema = next(entry["options_schema"] for entry in methods if entry["name"] == method)
        base = SMALL_FIT if method == "fit" else {}
        for case, options in option_cases(schema, base, fields) + structural_cases():
            submit(case, options)
        submit("no-image", json.dumps(base), files={"mask": ("m.png", image, "image/png")})
        submit("empty-image", json.dumps(base), files={"image": ("e.png", b"", "image/png")})
        submit("text-image", json.dumps(base), files={"image": ("t.png", b"hello", "image/png")})
        for path in ("/v1/jobs/..%2F..%2Fetc%2Fpasswd", "/v1/jobs/" + "a" * 5000, "/v1/jobs/%00"):
            send(path[:40], client.build_request("GET", path))
            send(path[:40], client.build_request("POST", path + "/cancel"))
            send(path[:40], client.build_request("GET", path + "/result.glb"))
        for wait in ("-1", "nan", "1e309", "inf", "abc", "9" * 400):
            send(
                f"wait={wait[:10]}",
                client.build_request("GET", "/v1/jobs/" + "0" * 32, params={"wait": wait}),
            )

        deadline_each = job_timeout
        for job_id, case in jobs.items():
            deadline = time.monotonic() + deadline_each
            job = client.get(f"/v1/jobs/{job_id}").json()
            while job["status"] not in TERMINAL and time.monotonic() < deadline:
                job = client.get(f"/v1/jobs/{job_id}", params={"wait": 2}).json()
            if job["status"] not in TERMINAL:
                client.post(f"/v1/jobs/{job_id}/cancel")
                while job["status"] not in TERMINAL:
                    job = client.get(f"/v1/jobs/{job_id}", params={"wait": 2}).json()
            result.job_outcomes[job["status"]] += 1
            if job["status"] == "failed" and "internal error" in (job["error"] or ""):
                result.internal_error_jobs.append(f"{case}: {job['error']}")
    return result


def _spawn(folder: Path) -> ServerProcess:
    log = folder / "server.log"
    command = [sys.executable, "-m", "backend.server", "--port", "0", "--state-file", str(folder / "s.json")]
    command += ["--jobs-dir", str(folder / "jobs"), "--device", "cpu"]
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(process, folder / "s.json", folder / "jobs", log)
    server.wait_ready(120)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.backend.server.probe", description=__doc__)
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--state-file", type=Path)
    parser.add_argument("--spawn", action="store_true", help="start a server (real methods) to probe")
    parser.add_argument("--method", default="fit")
    parser.add_argument("--job-timeout", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = _spawn(Path(scratch)) if args.spawn else None
        try:
            if server is not None:
                url, token = server.url, server.token
            elif args.state_file is not None:
                state = json.loads(args.state_file.read_text())
                url, token = state["url"], state["token"]
            else:
                url, token = args.url, args.token
            if not url or not token:
                parser.error("give --url and --token, --state-file, or --spawn")
            started = time.monotonic()
            result = run_probe(url, token, method=args.method, job_timeout=args.job_timeout)
        finally:
            if server is not None:
                server.stop()
    print(result.summary(), f"in {time.monotonic() - started:.0f} s")
    for line in result.server_errors + result.internal_error_jobs:
        print("  ", line)
    return 1 if result.server_errors or result.internal_error_jobs else 0


if __name__ == "__main__":
    sys.exit(main())
