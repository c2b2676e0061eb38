"""The job queue and its worker threads: one thread per device, consuming one FIFO queue of job ids.

Each worker creates its method instances once (the default method when it starts, others on their
first job) through the ``MethodFactory`` and keeps them; ``ready`` turns true when every worker has
loaded its default method. A job is run by a ``JobRunner``: ``PipelineRunner`` runs
``backend.methods.pipeline.reconstruct_photo`` (with the job's mesh as ``init_mesh`` when it has one)
and ``export`` into ``<job>/result/``. The progress callback records progress in the ``JobStore`` and
raises ``Cancelled`` once the job's cancel flag (or the pool's stop flag) is set, so a running job
stops at the method's next progress call.

Outcomes: success -> succeeded; ``Cancelled`` -> canceled (or failed with "interrupted by backend
shutdown" when the pool is stopping); an ``ImageError`` or ``MethodError`` (bad input found late, e.g. a
GrabCut mask that is empty) -> failed with its message; anything else -> failed with
"internal error: ..." and the traceback in the log. The worker survives every job.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from backend.geometry.io import load_glb
from backend.imaging import ImageError
from backend.methods.base import Cancelled, Method, MethodError, MethodOptions, ProgressCallback
from backend.methods.pipeline import export, reconstruct_photo
from backend.server.catalog import MethodFactory
from backend.server.jobs import (
    IMAGE_FILE,
    MASK_FILE,
    MESH_FILE,
    RESULT_DIR,
    RESULT_STEM,
    SHUTDOWN,
    Job,
    JobStatus,
    JobStore,
)

logger = logging.getLogger(__name__)


class WorkerPool:
    """Worker threads over one FIFO queue (see the module docstring).

    Args:
        store: the job store the ids refer to.
        factory: where method instances come from.
        devices: one worker thread per entry (torch device names, e.g. ["cpu"]).
        runner: runs one job (``PipelineRunner`` in the server, a fake in some tests).
    """

    def __init__(
        self,
        store: JobStore,
        factory: MethodFactory,
        devices: Sequence[str],
        runner: JobRunner,
    ) -> None:
        if not devices:
            raise ValueError("a worker pool needs at least one device")
        self._store = store
        self._factory = factory
        self._devices = list(devices)
        self._runner = runner
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loaded = 0
        self._loaded_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether every worker has loaded its default method (or tried and logged why it could not)."""
        with self._loaded_lock:
            return self._loaded == len(self._devices)

    def start(self) -> None:
        """Start one thread per device."""
        if self._threads:
            raise RuntimeError("the worker pool is already started")
        for index, device in enumerate(self._devices):
            thread = threading.Thread(
                target=self._work, args=(device,), name=f"mono2mesh-worker-{index}-{device}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, job_id: str) -> None:
        """Queue job ``job_id`` (already added to the store) behind the others."""
        self._queue.put(job_id)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the running jobs (they fail with "interrupted by backend shutdown"), end the threads.

        Queued jobs stay queued on disk (the next start runs them). Threads that do not end within
        ``timeout`` seconds (a method deep in a step without progress calls) are left behind; they are
        daemons, so the process can still exit, and their job is failed at the next start.
        """
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    # -- the worker thread -----------------------------------------------------------------------

    def _work(self, device: str) -> None:
        methods: dict[str, Method] = {}
        default = self._factory.default_method
        try:
            methods[default] = self._factory.create_method(default, device)
        except Exception:
            logger.exception("could not load method %s on %s; its jobs will fail", default, device)
        finally:
            with self._loaded_lock:
                self._loaded += 1
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stop.is_set():
                break
            try:
                started = self._store.start(job_id)
                if started is None:  # canceled while queued
                    continue
                job, cancel = started
                status, error = self._run(job, cancel, device, methods)
                self._store.finish(job.id, status, error)
            except Exception:  # e.g. status.json cannot be written: log it, keep serving the queue
                logger.exception("the worker could not record the state of job %s", job_id)

    def _run(
        self, job: Job, cancel: threading.Event, device: str, methods: dict[str, Method]
    ) -> tuple[JobStatus, str | None]:
        def progress(fraction: float, stage: str) -> None:
            if cancel.is_set() or self._stop.is_set():
                raise Cancelled(job.id)
            self._store.set_progress(job.id, fraction, stage)

        try:
            method = methods.get(job.method)
            if method is None:
                method = methods[job.method] = self._factory.create_method(job.method, device)
            options = self._factory.parse_options(job.method, job.options)
            self._runner(method, job, self._store.job_dir(job.id), options, progress)
        except Cancelled:
            if cancel.is_set():
                return JobStatus.CANCELED, None
            return JobStatus.FAILED, SHUTDOWN
        except (ImageError, MethodError) as error:
            return JobStatus.FAILED, str(error)
        except Exception as error:
            logger.exception("job %s failed", job.id)
            return JobStatus.FAILED, f"internal error: {type(error).__name__}: {error}"
        return JobStatus.SUCCEEDED, None


class JobRunner(Protocol):
    """Runs one job: reads its inputs from ``folder`` and writes its results to ``folder/result/``."""

    def __call__(
        self, method: Method, job: Job, folder: Path, options: MethodOptions, progress: ProgressCallback
    ) -> None: ...


class PipelineRunner:
    """The ``JobRunner`` of the server: ``reconstruct_photo`` (the job's mesh as ``init_mesh``) + ``export``.

    Args:
        max_bytes, max_pixels: limits passed to the image decoder.
    """

    def __init__(self, max_bytes: int, max_pixels: int) -> None:
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    def __call__(
        self, method: Method, job: Job, folder: Path, options: MethodOptions, progress: ProgressCallback
    ) -> None:
        result = reconstruct_photo(
            method,
            folder / IMAGE_FILE,
            mask=folder / MASK_FILE if job.has_mask else None,
            options=options,
            progress=progress,
            init_mesh=load_glb(folder / MESH_FILE) if job.has_mesh else None,
            max_bytes=self.max_bytes,
            max_pixels=self.max_pixels,
        )
        export(result, folder / RESULT_DIR, RESULT_STEM, progress=progress)
