"""Jobs in a child process the worker can kill: cancel within seconds whatever the job is doing.

A running job stops at its next progress call once canceled (``backend.server.worker``), but some
stages hold the thread for long stretches inside one library call (OpenCV's inpainting of a
4096 x 8192 texture, Poisson reconstruction, xatlas, PNG encoding of a large texture) where no progress
call can come. ``JobProcess`` runs the jobs of one worker in a child process (``multiprocessing`` with
the "spawn" start method: no fork of a threaded server), which keeps its method instances loaded from
job to job like the in-thread worker does:

- the child gets ``("run", job record, folder)`` messages and answers ``("progress", fraction, stage)``
  (at most every ``PROGRESS_INTERVAL`` seconds, and at every change of stage) and one
  ``("done", status, error)``, with the worker's rules for the outcome (``classify``);
- on cancel the parent sets a shared event that the child's progress callback turns into
  ``Cancelled``; a child that has not answered ``grace`` seconds later is killed (SIGKILL) and replaced
  by a fresh one on the next job (its methods are loaded again then); on server stop the child is
  killed at once (its job fails with "interrupted by backend shutdown" either way);
- a child that dies on its own (the kernel's out-of-memory killer, a crash in native code) fails its
  job with the exit code, and the next job gets a fresh child: the server itself survives;
- the child exits when the parent dies (a thread waits on the parent's sentinel), so a kill -9 of the
  server leaves no job running behind it.

The factory and the runner are pickled into the child, so they must be importable module-level objects
(``RegistryMethodFactory``, ``PipelineRunner``, the tests' ``FakeFactory``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.progress import Cancelled
from backend.server.jobs import SHUTDOWN, Job, JobStatus

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess
    from multiprocessing.synchronize import Event as ProcessEvent

    from backend.methods.base import Method
    from backend.progress import ProgressCallback
    from backend.server.catalog import MethodFactory
    from backend.server.worker import JobRunner

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.05
"""Least seconds between two progress messages of the child for the same stage."""
POLL_INTERVAL = 0.05
"""Seconds the parent waits for a message before it looks at the cancel and stop flags again."""

_CONTEXT = multiprocessing.get_context("spawn")


def classify(error: BaseException | None, canceled: bool) -> tuple[JobStatus, str | None]:
    """A job's outcome from what its runner raised (None: it returned): the worker's rules.

    ``Cancelled`` -> canceled when the job was canceled, else failed with the shutdown reason; an
    ``ImageError`` or ``MethodError`` -> failed with its message; anything else -> "internal error: ...".
    """
    from backend.imaging import ImageError
    from backend.methods.base import MethodError

    if error is None:
        return JobStatus.SUCCEEDED, None
    if isinstance(error, Cancelled):
        return (JobStatus.CANCELED, None) if canceled else (JobStatus.FAILED, SHUTDOWN)
    if isinstance(error, (ImageError, MethodError)):
        return JobStatus.FAILED, str(error)
    return JobStatus.FAILED, f"internal error: {type(error).__name__}: {error}"


class JobProcess:
    """The child process of one worker (module docstring).

    Args:
        factory: where the child's methods come from (pickled into it).
        runner: runs one job in the child (pickled into it).
        device: the torch device of the child's methods.
        grace: seconds a canceled job may take to stop by itself before the child is killed.
    """

    def __init__(self, factory: MethodFactory, runner: JobRunner, device: str, grace: float = 1.0) -> None:
        self._factory = factory
        self._runner = runner
        self._device = device
        self._grace = grace
        self._process: SpawnProcess | None = None
        self._connection: Connection | None = None
        self._cancel: ProcessEvent = _CONTEXT.Event()
        self._loaded = False

    def start(self, stop: threading.Event | None = None) -> None:
        """Start the child (if it is not running) and wait until it has loaded the default method (or
        failed to, which it logs), or ``stop`` is set."""
        if self._process is None or not self._process.is_alive():
            self._spawn()
        while not self._loaded and self._connection is not None:
            if stop is not None and stop.is_set():
                return
            if not self._receive_one(None):
                return

    def run(
        self,
        job: Job,
        folder: Path,
        cancel: threading.Event,
        stop: threading.Event,
        progress: ProgressCallback,
    ) -> tuple[JobStatus, str | None]:
        """Run ``job`` (inputs in ``folder``) in the child; its outcome. ``progress(fraction, stage)``
        gets the child's progress in this thread; ``cancel``/``stop`` end the job (module docstring)."""
        if self._process is None or not self._process.is_alive():
            self._spawn()
        connection = self._connection
        assert connection is not None
        self._cancel.clear()
        try:
            connection.send(("run", job.to_record(), str(folder)))
        except OSError as error:
            self.close()
            return JobStatus.FAILED, f"internal error: the job's process cannot be reached: {error}"
        deadline: float | None = None
        while True:
            if stop.is_set() and not cancel.is_set():  # shutdown: no grace, the job fails anyway
                self.close()
                return classify(Cancelled(job.id), False)
            if deadline is None and cancel.is_set():
                self._cancel.set()
                deadline = time.monotonic() + self._grace
            if deadline is not None and time.monotonic() > deadline:
                logger.warning("job %s did not stop within %.1f s of its cancel; killing its process",
                               job.id, self._grace)  # fmt: skip
                self.close()
                return classify(Cancelled(job.id), cancel.is_set())
            try:
                if not connection.poll(POLL_INTERVAL):
                    if self._process is not None and not self._process.is_alive():
                        return self._died()
                    continue
                message = connection.recv()
            except (EOFError, OSError):
                return self._died()
            kind = message[0]
            if kind == "progress":
                progress(message[1], message[2])
            elif kind == "done":
                return JobStatus(message[1]), message[2]
            elif kind == "loaded":
                self._loaded = True

    def close(self) -> None:
        """Kill the child (if any) and forget it; the next ``run`` starts a fresh one."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        self._loaded = False
        if connection is not None:
            connection.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(10)
            process.close()

    # -- internals -------------------------------------------------------------------------------

    def _spawn(self) -> None:
        self.close()
        parent_end, child_end = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=child_main,
            args=(child_end, self._cancel, self._factory, self._runner, self._device),
            name=f"mono2mesh-job-{self._device}",
            daemon=True,
        )
        process.start()
        child_end.close()
        self._process, self._connection = process, parent_end

    def _receive_one(self, timeout: float | None) -> bool:
        """Handle one message from an idle child; False when it has gone."""
        connection = self._connection
        if connection is None:
            return False
        try:
            if timeout is not None and not connection.poll(timeout):
                return True
            message = connection.recv()
        except (EOFError, OSError):
            self._died()
            return False
        if message[0] == "loaded":
            self._loaded = True
        return True

    def _died(self) -> tuple[JobStatus, str | None]:
        code = None
        if self._process is not None:
            self._process.join(5)  # the pipe closes a moment before the process can be reaped
            code = self._process.exitcode
        self.close()
        if code is not None and code < 0:
            reason = f"killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")
        else:
            reason = f"exit code {code}"
        logger.error("the job process ended unexpectedly: %s", reason)
        return JobStatus.FAILED, f"internal error: the job's process ended unexpectedly ({reason})"


# -- the child ---------------------------------------------------------------------------------


def child_main(
    connection: Connection,
    cancel: ProcessEvent,
    factory: MethodFactory,
    runner: JobRunner,
    device: str,
) -> None:
    """The child's loop: load the default method, then run jobs until the pipe closes."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _exit_with_parent()
    methods: dict[str, Method] = {}
    default = factory.default_method
    try:
        methods[default] = factory.create_method(default, device)
    except Exception:
        logger.exception("could not load method %s on %s; its jobs will fail", default, device)
    connection.send(("loaded",))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message[0] != "run":
            continue
        job = Job.from_record(message[1])
        status, error = _run_in_child(
            job, Path(message[2]), connection, cancel, factory, runner, device, methods
        )
        connection.send(("done", status.value, error))


def _run_in_child(
    job: Job,
    folder: Path,
    connection: Connection,
    cancel: ProcessEvent,
    factory: MethodFactory,
    runner: JobRunner,
    device: str,
    methods: dict[str, Method],
) -> tuple[JobStatus, str | None]:
    last: list[Any] = [0.0, None]  # time and stage of the last progress message

    def progress(fraction: float, stage: str) -> None:
        if cancel.is_set():
            raise Cancelled(job.id)
        now = time.monotonic()
        if stage != last[1] or now - last[0] >= PROGRESS_INTERVAL or fraction >= 1.0:
            connection.send(("progress", float(fraction), stage))
            last[0], last[1] = now, stage

    return run_job(job, folder, progress, cancel.is_set, factory, runner, device, methods)


def run_job(
    job: Job,
    folder: Path,
    progress: ProgressCallback,
    canceled: Callable[[], bool],
    factory: MethodFactory,
    runner: JobRunner,
    device: str,
    methods: dict[str, Method],
) -> tuple[JobStatus, str | None]:
    """Run ``job`` with its method (created once per method name into ``methods``) and its parsed
    options; its outcome by ``classify`` (``canceled()`` says whether a cancel was asked for). The one
    body of the in-thread worker and of the child process."""
    try:
        method = methods.get(job.method)
        if method is None:
            method = methods[job.method] = factory.create_method(job.method, device)
        options = factory.parse_options(job.method, job.options)
        runner(method, job, folder, options, progress)
    except Exception as error:
        status, message = classify(error, canceled())
        if message is not None and message.startswith("internal error"):
            logger.exception("job %s failed", job.id)
        return status, message
    return JobStatus.SUCCEEDED, None


def _exit_with_parent() -> None:
    """End this process at once when its parent dies (a thread waits on the parent's sentinel)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="mono2mesh-parent-watch", daemon=True).start()
