"""Jobs and the store that keeps them: in memory for the API, on disk for durability.

Each job has a folder ``<jobs_dir>/<id>/`` holding its inputs under fixed names (``input_image``,
``input_mask``, ``input_mesh.glb``; a client's file name is only ever text in ``image_name``), its
``status.json`` and, once it has run, ``result/`` (the files of ``backend.methods.pipeline.export`` with
the stem "result"). The status decides everything (never "does a file exist"); it is written atomically
(a temporary file in the folder, then ``os.replace``) on every change of status and, for progress alone,
at most once per ``progress_write_interval``. A job folder appears whole: the intake fills a staging
folder (``.staging-*``) and ``JobStore.add`` renames it.

Lifecycle: queued -> running -> succeeded | failed | canceled; queued -> canceled. The last three are
terminal. ``JobStore.recover`` (start-up) reads every folder back: running jobs become failed with
"interrupted by backend restart" and queued ones are returned, oldest first, to be queued again; a job
folder whose ``status.json`` cannot be read becomes a failed job (in memory only, the folder is left as
it is) whose error says why.

A job whose folder vanished (or whose ``status.json`` cannot be written) still reaches a terminal state:
the in-memory record is authoritative, so ``start`` fails the job with the reason, ``cancel`` cancels it
and ``finish`` records the outcome (a success becomes a failure, its results being gone).

Integrity: ``finish`` of a succeeded job records the SHA-256 of every result file (``checksums``,
computed by ``result_checksums`` right after the files are written); ``verified_result`` hashes a file
again before it is served and, when it differs or is missing, fails the job with
"result damaged: ..." and raises ``ResultDamaged``. Jobs written before checksums existed are served
unchecked.

The jobs folder is created with mode 0700, and an existing one readable or writable by others is
tightened to 0700 (``secure_folder``; a warning is logged when that is not possible).

Every method is thread-safe (one lock); ``wait_for_change`` lets an asyncio handler sleep until a job
changes without holding a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

IMAGE_FILE = "input_image"
MASK_FILE = "input_mask"
MESH_FILE = "input_mesh.glb"
STATUS_FILE = "status.json"
RESULT_DIR = "result"
RESULT_STEM = "result"
STAGING_PREFIX = ".staging-"

RESULT_FILES: dict[str, tuple[str, str, str]] = {
    # kind: (route name, file name under result/, media type)
    "glb": ("result.glb", f"{RESULT_STEM}.glb", "model/gltf-binary"),
    "preview": ("preview.png", f"{RESULT_STEM}_preview.png", "image/png"),
    "report": ("report.json", f"{RESULT_STEM}.json", "application/json"),
    "texture": ("texture.png", f"{RESULT_STEM}_texture.png", "image/png"),
    "mask": ("mask.png", f"{RESULT_STEM}_mask.png", "image/png"),
}
"""The downloadable results: kind -> (route ``/v1/jobs/{id}/<route name>``, file, media type)."""

INTERRUPTED = "interrupted by backend restart"
SHUTDOWN = "interrupted by backend shutdown"
DAMAGED = "result damaged"
FOLDER_GONE = "the job's folder is gone or cannot be written"

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_NOTIFY_INTERVAL = 0.2  # least seconds between two progress-only wake-ups of long-polling clients


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class JobNotFound(KeyError):
    """No job has this id."""


class JobConflict(ValueError):
    """The job is in a state that does not allow the operation (e.g. cancel of a finished job)."""


class ResultDamaged(OSError):
    """A result file no longer matches the checksum recorded when it was written (or is missing)."""


def secure_folder(path: Path) -> str | None:
    """Create ``path`` (mode 0700) or tighten an existing one to 0700 when others may read or write it.

    Returns None when the folder is private, else a warning saying why it could not be made so (POSIX
    only: on Windows the mode bits mean nothing and None is returned).
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "nt":
        return None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077 == 0:
        return None
    try:
        os.chmod(path, 0o700)
    except OSError as error:
        return (
            f"the jobs folder {path} has mode {mode:04o} (other users may read or change jobs) and "
            f"could not be made private: {error.strerror or error}"
        )
    logger.warning("the jobs folder %s had mode %04o; it is now 0700", path, mode)
    return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def new_job_id() -> str:
    """A fresh job id: 32 lower-case hex digits (a random UUID)."""
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the form of a job id (so it is safe as a folder name)."""
    return bool(_JOB_ID.match(text))


@dataclass
class Job:
    """One job's record, as stored in ``status.json``.

    Attributes:
        id: 32 hex digits, also the folder name.
        status: see ``JobStatus``.
        progress: fraction of the whole job done, 0..1, never decreasing while it runs.
        stage: the pipeline stage ("mask", "shape", "texture", "export") or None before it starts.
        error: the message of a failed job, else None.
        method: registry name of the method.
        options: the method's resolved options (defaults filled in), JSON-ready.
        image_name: the client's file name, sanitised, only ever shown as text.
        created, updated: unix times.
        has_mask, has_mesh: whether ``input_mask`` / ``input_mesh.glb`` are in the folder.
        checksums: result kind -> SHA-256 hex of its file, recorded when a job succeeds ({} before).
    """

    id: str
    method: str
    options: dict[str, Any]
    image_name: str
    status: JobStatus = JobStatus.QUEUED
    progress: float = 0.0
    stage: str | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = 0.0
    has_mask: bool = False
    has_mesh: bool = False
    checksums: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not is_job_id(self.id):
            raise ValueError(f"not a job id: {self.id!r}")
        self.status = JobStatus(self.status)
        if not self.updated:
            self.updated = self.created

    def to_record(self) -> dict[str, Any]:
        """The JSON object stored in ``status.json``."""
        record = asdict(self)
        record["status"] = self.status.value
        return record

    @staticmethod
    def from_record(record: dict[str, Any]) -> Job:
        """Inverse of ``to_record``; ``ValueError``/``TypeError`` for a malformed record."""
        return Job(**record)

    def to_api(self) -> dict[str, Any]:
        """The job JSON of the HTTP API (result URLs only once it has succeeded)."""
        results: dict[str, str] = {}
        if self.status is JobStatus.SUCCEEDED:
            results = {kind: f"/v1/jobs/{self.id}/{route}" for kind, (route, _, _) in RESULT_FILES.items()}
        return {
            "id": self.id,
            "status": self.status.value,
            "progress": self.progress,
            "stage": self.stage,
            "error": self.error,
            "method": self.method,
            "options": self.options,
            "image_name": self.image_name,
            "created": self.created,
            "updated": self.updated,
            "results": results,
        }


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file in the same folder and ``os.replace``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class JobStore:
    """The jobs of one jobs folder (see the module docstring).

    Args:
        root: the jobs folder (created, or tightened, to mode 0700: ``secure_folder``).
        progress_write_interval: least seconds between two writes of ``status.json`` for progress alone.
    """

    def __init__(self, root: Path, progress_write_interval: float = 0.25) -> None:
        self.root = Path(root)
        self.permission_warning = secure_folder(self.root)
        if self.permission_warning:
            logger.warning("%s", self.permission_warning)
        self._interval = progress_write_interval
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._written: dict[str, float] = {}  # id -> time of the last status.json write
        self._notified: dict[str, float] = {}  # id -> time of the last wake-up of waiters
        self._cancel: dict[str, threading.Event] = {}
        self._waiters: dict[str, set[Callable[[], None]]] = {}

    # -- folders ---------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        """The folder of job ``job_id`` (``JobNotFound`` for an id that is not a job id)."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        return self.root / job_id

    def result_path(self, job_id: str, kind: str) -> Path:
        """The file of result ``kind`` (a key of ``RESULT_FILES``) of job ``job_id``."""
        return self.job_dir(job_id) / RESULT_DIR / RESULT_FILES[kind][1]

    def staging_dir(self) -> Path:
        """A fresh, empty staging folder inside the jobs folder, for ``add`` to rename."""
        return Path(tempfile.mkdtemp(dir=self.root, prefix=STAGING_PREFIX))

    # -- start-up --------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Load every job folder; fail interrupted jobs; return the queued ids, oldest first.

        Left-over staging folders are removed; a folder whose ``status.json`` is missing or unreadable
        becomes a failed job saying so (in memory only: the folder is left for a human to look at).
        """
        loaded: dict[str, Job] = {}
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(STAGING_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
                continue
            if not path.is_dir() or not is_job_id(path.name):
                continue
            try:
                job = Job.from_record(json.loads((path / STATUS_FILE).read_text(encoding="utf-8")))
                if job.id != path.name:
                    raise ValueError(f"the status names job {job.id}")
            except (OSError, ValueError, TypeError) as error:
                logger.warning("job folder %s: unreadable %s (%s)", path, STATUS_FILE, error)
                loaded[path.name] = _unreadable(path, error)
                continue
            if job.status is JobStatus.RUNNING:
                job.status, job.error, job.updated = JobStatus.FAILED, INTERRUPTED, time.time()
                try:
                    write_json_atomic(path / STATUS_FILE, job.to_record())
                except OSError as error:
                    logger.warning("cannot record the interrupted job %s: %s", job.id, error)
            loaded[job.id] = job
        with self._lock:
            self._jobs.update(loaded)
        queued = [job for job in loaded.values() if job.status is JobStatus.QUEUED]
        return [job.id for job in sorted(queued, key=lambda job: (job.created, job.id))]

    # -- reading ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """A copy of job ``job_id``; ``JobNotFound`` when there is none."""
        with self._lock:
            return replace(self._get(job_id))

    def list_jobs(self) -> list[Job]:
        """Copies of every job, newest first."""
        with self._lock:
            jobs = [replace(job) for job in self._jobs.values()]
        return sorted(jobs, key=lambda job: (job.created, job.id), reverse=True)

    # -- writing ---------------------------------------------------------------------------------

    def add(self, job: Job, staging: Path) -> Job:
        """Register ``job`` (queued), whose inputs are in ``staging``: write its status, rename the folder."""
        job.status, job.updated = JobStatus.QUEUED, time.time()
        write_json_atomic(staging / STATUS_FILE, job.to_record())
        os.rename(staging, self.root / job.id)
        with self._lock:
            self._jobs[job.id] = job
            self._written[job.id] = time.monotonic()
            return replace(job)

    def start(self, job_id: str) -> tuple[Job, threading.Event] | None:
        """queued -> running; returns a copy and the job's cancel flag, or None if it is not queued (or
        its status cannot be written: it is then failed with the reason)."""
        with self._lock:
            job = self._get(job_id)
            if job.status is not JobStatus.QUEUED:
                return None
            job.status, job.progress, job.stage, job.error = JobStatus.RUNNING, 0.0, None, None
            try:
                self._save(job)
            except OSError as error:  # its folder vanished while it was queued
                job.status, job.error = JobStatus.FAILED, f"{FOLDER_GONE}: {_reason(error)}"
                self._notify(job_id)
                return None
            flag = self._cancel.setdefault(job_id, threading.Event())
            return replace(job), flag

    def set_progress(self, job_id: str, fraction: float, stage: str) -> None:
        """Record progress of a running job (status.json at most every ``progress_write_interval``)."""
        with self._lock:
            job = self._get(job_id)
            if job.status is not JobStatus.RUNNING:
                return
            stage_changed = stage != job.stage
            job.progress = max(job.progress, min(max(float(fraction), 0.0), 1.0))
            job.stage = stage
            job.updated = time.time()
            now = time.monotonic()
            if stage_changed or now - self._written.get(job_id, 0.0) >= self._interval:
                try:
                    self._save(job, notify=False)
                except OSError as error:  # the outcome will be recorded (or failed) by finish
                    logger.warning("cannot record the progress of job %s: %s", job_id, error)
                    self._written[job_id] = now
            if stage_changed or now - self._notified.get(job_id, 0.0) >= _NOTIFY_INTERVAL:
                self._notify(job_id)

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        error: str | None = None,
        checksums: dict[str, str] | None = None,
    ) -> Job:
        """running -> ``status`` (terminal), with ``error`` for a failure and the result files'
        ``checksums`` for a success; returns a copy. When ``status.json`` cannot be written the job
        still ends (in memory): a success then fails, its folder being unusable."""
        if not status.terminal:
            raise ValueError(f"finish needs a terminal status, got {status}")
        with self._lock:
            job = self._get(job_id)
            job.status, job.error = status, error
            if status is JobStatus.SUCCEEDED:
                job.progress = 1.0
                job.checksums = dict(checksums or {})
            self._cancel.pop(job_id, None)
            try:
                self._save(job)
            except OSError as failure:
                if job.status is JobStatus.SUCCEEDED:
                    job.status, job.checksums = JobStatus.FAILED, {}
                    job.error = f"{FOLDER_GONE}: {_reason(failure)}"
                logger.warning("cannot record the end of job %s: %s", job_id, failure)
                self._notify(job_id)
            return replace(job)

    def result_checksums(self, job_id: str) -> dict[str, str]:
        """kind -> SHA-256 of every result file of job ``job_id`` that exists (``RESULT_FILES``)."""
        checksums = {}
        for kind in RESULT_FILES:
            path = self.result_path(job_id, kind)
            if path.is_file():
                checksums[kind] = file_sha256(path)
        return checksums

    def verified_result(self, job_id: str, kind: str) -> Path:
        """The file of result ``kind`` after checking it against its recorded checksum.

        Raises:
            ResultDamaged: the file is missing or its bytes changed since it was written; the job is
                failed with "result damaged: ..." first.
            FileNotFoundError: the file is missing and no checksum was recorded (a job from before
                checksums, or a result this method does not write).
        """
        job = self.get(job_id)
        path = self.result_path(job_id, kind)
        expected = job.checksums.get(kind)
        if expected is None:
            if not path.is_file():
                raise FileNotFoundError(path)
            return path
        try:
            actual = file_sha256(path)
        except OSError as error:
            problem = f"{RESULT_FILES[kind][0]} cannot be read ({_reason(error)})"
        else:
            if actual == expected:
                return path
            problem = f"{RESULT_FILES[kind][0]} changed on disk since it was written (checksum mismatch)"
        message = f"{DAMAGED}: {problem}"
        with self._lock:
            stored = self._get(job_id)
            if stored.status is JobStatus.SUCCEEDED:
                stored.status, stored.error = JobStatus.FAILED, message
                try:
                    self._save(stored)
                except OSError as error:
                    logger.warning("cannot record the damage of job %s: %s", job_id, error)
                    self._notify(job_id)
        raise ResultDamaged(message)

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job at once; a running one has its cancel flag set (the worker stops it).

        Raises:
            JobNotFound: no such job.
            JobConflict: the job has already finished.
        """
        with self._lock:
            job = self._get(job_id)
            if job.status.terminal:
                raise JobConflict(f"job {job_id} has already finished ({job.status.value})")
            if job.status is JobStatus.QUEUED:
                job.status = JobStatus.CANCELED
                try:
                    self._save(job)
                except OSError as error:  # canceled all the same (in memory)
                    logger.warning("cannot record the cancel of job %s: %s", job_id, error)
                    self._notify(job_id)
            else:
                self._cancel.setdefault(job_id, threading.Event()).set()
            return replace(job)

    def wake_all(self) -> None:
        """Wake every ``wait_for_change`` now (at shutdown, so that long-polls answer at once)."""
        with self._lock:
            for job_id in list(self._waiters):
                self._notify(job_id)

    # -- waiting ---------------------------------------------------------------------------------

    async def wait_for_change(self, job_id: str, timeout: float) -> None:
        """Sleep until job ``job_id`` changes or ``timeout`` seconds pass; at once if it has finished."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop may have closed meanwhile
                loop.call_soon_threadsafe(changed.set)

        with self._lock:
            if self._get(job_id).status.terminal or timeout <= 0:
                return
            self._waiters.setdefault(job_id, set()).add(wake)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(wake)
                    if not waiters:
                        del self._waiters[job_id]

    # -- internals (call with the lock held) -----------------------------------------------------

    def _get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    def _save(self, job: Job, notify: bool = True) -> None:
        job.updated = time.time()
        write_json_atomic(self.root / job.id / STATUS_FILE, job.to_record())
        self._written[job.id] = time.monotonic()
        if notify:
            self._notify(job.id)

    def _notify(self, job_id: str) -> None:
        self._notified[job_id] = time.monotonic()
        for wake in self._waiters.get(job_id, ()):
            wake()


def _reason(error: OSError) -> str:
    """An OS error as text without the jobs folder's path."""
    return error.strerror or type(error).__name__


def _unreadable(path: Path, error: Exception) -> Job:
    """The failed job standing for a job folder whose status cannot be read."""
    try:
        created = path.stat().st_mtime
    except OSError:
        created = time.time()
    reason = _reason(error) if isinstance(error, OSError) else str(error)
    return Job(
        id=path.name,
        method="unknown",
        options={},
        image_name="",
        status=JobStatus.FAILED,
        error=f"its {STATUS_FILE} cannot be read: {reason}",
        created=created,
    )
