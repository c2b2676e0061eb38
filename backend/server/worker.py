"""The job queue and its worker threads: one thread per device, consuming one FIFO queue of job ids.

Each worker creates its method instances once (the default method when it starts, others on their
first job) through the ``MethodFactory`` and keeps them; ``ready`` turns true when every worker has
loaded its default method. A job is run by a ``JobRunner``: ``PipelineRunner`` runs
``backend.methods.pipeline.reconstruct_photo`` (with the job's mesh as ``init_mesh`` when it has one)
and ``export`` into ``<job>/result/``. The progress callback records progress in the ``JobStore`` and
raises ``Cancelled`` once the job's cancel flag (or the pool's stop flag) is set, so a running job
stops at the method's next progress call.

With ``isolate`` (what ``mono2mesh serve`` uses) each worker runs its jobs in a child process instead
(``backend.server.isolation.JobProcess``): the child holds the methods, and a job that does not stop
within ``cancel_grace`` seconds of its cancel is killed with its process, so a cancel acts within
seconds even inside a long library call; a child that dies (out of memory) fails only its job.

A succeeded job gets the SHA-256 of its result files recorded (``JobStore.result_checksums``); the
``result/`` folder of a job that did not succeed is removed (a killed export leaves partial files).

Outcomes: success -> succeeded; ``Cancelled`` -> canceled (or failed with "interrupted by backend
shutdown" when the pool is stopping); an ``ImageError`` or ``MethodError`` (bad input found late, e.g. a
GrabCut mask that is empty) -> failed with its message; anything else -> failed with
"internal error: ..." and the traceback in the log. The worker survives every job.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from backend.geometry.io import load_glb
from backend.methods.base import Cancelled, Method, MethodOptions, ProgressCallback
from backend.methods.pipeline import export, reconstruct_photo
from backend.server.catalog import MethodFactory
from backend.server.isolation import JobProcess, classify, run_job
from backend.server.jobs import (
    IMAGE_FILE,
    MASK_FILE,
    MESH_FILE,
    RESULT_DIR,
    RESULT_STEM,
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
        isolate: run each worker's jobs in a child process it can kill (module docstring).
        cancel_grace: with ``isolate``, seconds a canceled job may take before its process is killed.
        admit: called with a job before it runs and returns a context that is held while it runs (the
            server's memory budget); None runs every job at once.
    """

    def __init__(
        self,
        store: JobStore,
        factory: MethodFactory,
        devices: Sequence[str],
        runner: JobRunner,
        *,
        isolate: bool = False,
        cancel_grace: float = 1.0,
        admit: Callable[[Job], AbstractContextManager[object]] | None = None,
    ) -> None:
        if not devices:
            raise ValueError("a worker pool needs at least one device")
        self._store = store
        self._factory = factory
        self._devices = list(devices)
        self._runner = runner
        self._isolate = isolate
        self._cancel_grace = cancel_grace
        self._admit = admit
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
        child: JobProcess | None = None
        default = self._factory.default_method
        try:
            if self._isolate:
                child = JobProcess(self._factory, self._runner, device, self._cancel_grace)
                child.start(self._stop)
            else:
                methods[default] = self._factory.create_method(default, device)
        except Exception:
            logger.exception("could not load method %s on %s; its jobs will fail", default, device)
        finally:
            with self._loaded_lock:
                self._loaded += 1
        try:
            while not self._stop.is_set():
                job_id = self._queue.get()
                if job_id is None or self._stop.is_set():
                    break
                self._serve(job_id, device, methods, child)
        finally:
            if child is not None:
                child.close()

    def _serve(self, job_id: str, device: str, methods: dict[str, Method], child: JobProcess | None) -> None:
        """Run one queued job to its end and record the outcome (never raises)."""
        try:
            started = self._store.start(job_id)
            if started is None:  # canceled while queued, or its folder is gone (failed by start)
                return
            job, cancel = started
            with self._admit(job) if self._admit is not None else nullcontext():
                if cancel.is_set() or self._stop.is_set():
                    status, error = classify(Cancelled(job.id), cancel.is_set())
                elif child is not None:
                    folder = self._store.job_dir(job.id)
                    status, error = child.run(job, folder, cancel, self._stop, self._progress(job.id))
                else:
                    status, error = self._run(job, cancel, device, methods)
            checksums = None
            if status is JobStatus.SUCCEEDED:
                checksums = self._store.result_checksums(job.id)
            else:
                shutil.rmtree(self._store.job_dir(job.id) / RESULT_DIR, ignore_errors=True)
            self._store.finish(job.id, status, error, checksums)
        except Exception as error:  # the job must still end: record it as failed, keep serving the queue
            logger.exception("the worker could not record the state of job %s", job_id)
            with contextlib.suppress(Exception):
                self._store.finish(
                    job_id, JobStatus.FAILED, f"internal error: {type(error).__name__}: {error}"
                )

    def _progress(self, job_id: str) -> ProgressCallback:
        def progress(fraction: float, stage: str) -> None:
            self._store.set_progress(job_id, fraction, stage)

        return progress

    def _run(
        self, job: Job, cancel: threading.Event, device: str, methods: dict[str, Method]
    ) -> tuple[JobStatus, str | None]:
        def progress(fraction: float, stage: str) -> None:
            if cancel.is_set() or self._stop.is_set():
                raise Cancelled(job.id)
            self._store.set_progress(job.id, fraction, stage)

        folder = self._store.job_dir(job.id)
        return run_job(job, folder, progress, cancel.is_set, self._factory, self._runner, device, methods)


class JobRunner(Protocol):
    """Runs one job: reads its inputs from ``folder`` and writes its results to ``folder/result/``."""

    def __call__(
        self, method: Method, job: Job, folder: Path, options: MethodOptions, progress: ProgressCallback
    ) -> None: ...


class PipelineRunner:
    """The ``JobRunner`` of the server: ``reconstruct_photo`` (the job's mesh as ``init_mesh``) + ``export``.

    Args:
        max_bytes, max_pixels: limits passed to the image decoder.
        mask_model: the salient-object mask model file (``serve --mask-model``), or None: each job looks
            it up when it runs (``backend.imaging.salient.find_mask_model``), so a model downloaded
            while the server runs is used by the next job.
    """

    def __init__(self, max_bytes: int, max_pixels: int, mask_model: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.mask_model = mask_model

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
            mask_model=self.mask_model,
        )
        export(result, folder / RESULT_DIR, RESULT_STEM, progress=progress)
