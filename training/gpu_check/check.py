"""How the GPU check runs its parts: each timed and marked pass / fail / skip, and the JSON summary.

``Check.part(name, work)`` runs one part: ``work()`` returns the part's figures; ``Skip`` marks it a skip
(it cannot run on this machine, which is not a defect), ``PartFailure`` a failure with its own message, any
other exception a failure with its traceback. A failing part never stops the others; ``--only`` leaves out
the parts whose name does not contain one of its patterns (never ``data``). One progress line per part goes
to stderr. ``Check.summary`` is the JSON summary (machine, date, counts, every part).

``run_process`` runs a command of this checkout in a new process, ``require_success`` turns a non-zero
exit into a ``PartFailure`` with the output's tail, ``last_json`` reads a benchmark's JSON report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.gpu_check.options import GpuCheckOptions


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

    def __init__(self, options: GpuCheckOptions, device: str) -> None:
        self.options, self.device = options, device
        self.out: Path = options.out
        self.parts: list[Part] = []

    def part(self, name: str, work: Callable[[], dict[str, Any] | None]) -> Part:
        """Run ``work``; an exception fails the part (``Skip`` skips it). Prints one line per part."""
        if self.options.only and name != "data" and not any(pattern in name for pattern in self.options.only):
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
            "dry_run": self.options.dry_run,
            "machine": machine_info(),
            "date": time.strftime("%Y-%m-%d"),
            "steps": self.options.steps,
            "passed": counts["pass"],
            "failed": counts["fail"],
            "skipped": counts["skip"],
            "seconds": round(total, 1),
            "parts": [asdict(part) for part in self.parts],
        }


class PartFailure(Exception):
    """A part's own check failed (its message says which; no traceback is attached)."""


def run_process(
    command: list[str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command of this checkout (``sys.executable -m ...``) and capture its output."""
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=dict(os.environ), check=False
    )


def require_success(process: subprocess.CompletedProcess[str], what: str) -> None:
    if process.returncode != 0:
        tail = (process.stdout[-1500:] + "\n" + process.stderr[-2500:]).strip()
        raise PartFailure(f"{what} exited with {process.returncode}:\n{tail}")


def last_json(text: str) -> dict[str, Any]:
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
