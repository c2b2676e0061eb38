"""The add-on's runtime state: the backend connection, the methods list, and the jobs in flight.

Threading contract: nothing here starts a thread. Jobs are polled by ``poll_once()``, a plain
function that ``bpy.app.timers`` calls on the main thread (every ``POLL_INTERVAL`` seconds while jobs
are in flight) and that tests and scripts call directly (timers never fire in background mode).
Each call does one short status request per job (loopback, 2 s timeout), updates the job's scene
settings, and finishes succeeded jobs (download + import through ``finish``). A job whose backend
stops answering fails with a message saying so; a failed job imports nothing.

State lives in module globals (not in Blender data) because it is about processes and sockets;
``shutdown()`` (from ``unregister`` and ``atexit``) stops a backend this session started.
"""

import atexit
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from .client import BackendClient, BackendError, BackendUnavailable, LocalBackend

POLL_INTERVAL = 0.25
STATUS_TIMEOUT = 2.0
MAX_FAILED_POLLS = 8


@dataclass
class ActiveJob:
    """A job submitted from this session, until it is finished (imported, failed or canceled)."""

    job_id: str
    kind: str  # "reconstruct" or "refine"
    scene_name: str
    name: str  # object name for a reconstruction
    image_path: str
    output_dir: Path
    method: str
    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    target_size: float = 2.0
    target_object: str = ""  # the object a refinement replaces the mesh of
    submitted: float = field(default_factory=time.perf_counter)
    failed_polls: int = 0
    on_done: Callable[["ActiveJob", Any], None] | None = None


_local: LocalBackend | None = None
_client: BackendClient | None = None
_methods: list[dict[str, Any]] = []
_method_items: list[tuple[str, str, str, str, int]] = []
jobs: dict[str, ActiveJob] = {}
# finishers by job kind, registered by the operators module: (job, job_json) -> created object
finishers: dict[str, Callable[[ActiveJob, dict[str, Any]], Any]] = {}


def _package() -> str:
    return __package__ or "mono2mesh"


def user_path(*parts: str) -> Path:
    """A folder under the extension's user directory (created)."""
    path = Path(bpy.utils.extension_path_user(_package(), path=os.path.join(*parts), create=True))
    return path


def output_root(context: bpy.types.Context | None = None) -> Path:
    """Where job outputs go: the preferences' output folder, else the extension's user folder."""
    from . import preferences

    chosen = preferences.get(context).output_dir
    if chosen:
        path = Path(bpy.path.abspath(chosen))
        path.mkdir(parents=True, exist_ok=True)
        return path
    return user_path("outputs")


# -- backend ---------------------------------------------------------------------------------------
def local_backend() -> LocalBackend | None:
    """The backend process this session started or adopted, if any."""
    return _local


def get_client(context: bpy.types.Context | None = None, start: bool = True) -> BackendClient:
    """A client of the configured backend; in LOCAL mode starts it (blocking) when ``start``.

    Raises ``BackendError`` with a message for the artist.
    """
    global _local, _client
    from . import preferences

    prefs = preferences.get(context)
    if prefs.backend_mode == "URL":
        if _client is None or _client.url != prefs.url.strip().rstrip("/") or _client.token != prefs.token:
            _client = BackendClient(prefs.url, prefs.token)
        return _client
    if _local is not None and _local.is_alive() and _local.client is not None:
        return _local.client
    python = bpy.path.abspath(prefs.python_path) if prefs.python_path else ""
    folder = user_path("backend")
    if _local is None or _local.python != python:
        _local = LocalBackend(
            python,
            folder / "server.json",
            folder / "server.log",
            jobs_dir=folder / "jobs",
        )
    if not start:
        if _local.adopt_running() is None:
            raise BackendUnavailable("The local backend is not running; press Start Backend")
        assert _local.client is not None
        return _local.client
    return _local.start(timeout=prefs.start_timeout)


def stop_backend() -> bool:
    """Stop the local backend this session started; True if there was one."""
    global _local
    if _local is None:
        return False
    was_alive = _local.is_alive()
    _local.stop()
    _local = None
    return was_alive


def shutdown() -> None:
    """Forget jobs and stop the local backend (add-on disabled or Blender quitting)."""
    jobs.clear()
    if bpy.app.timers.is_registered(poll_once):
        bpy.app.timers.unregister(poll_once)
    stop_backend()


atexit.register(stop_backend)


# -- methods ---------------------------------------------------------------------------------------
def refresh_methods(client: BackendClient) -> list[dict[str, Any]]:
    """Fetch the methods list and rebuild the enum items (unavailable ones say why)."""
    global _methods, _method_items
    _methods = client.methods()
    items = []
    for index, method in enumerate(_methods):
        label = method["name"] if method["available"] else f"{method['name']} (unavailable)"
        description = method["description"] if method["available"] else f"Unavailable: {method['reason']}"
        items.append((method["name"], label, description, "NONE" if method["available"] else "ERROR", index))
    _method_items = items
    return _methods


def methods() -> list[dict[str, Any]]:
    """The last fetched methods list (empty until ``refresh_methods``)."""
    return _methods


def method_info(name: str) -> dict[str, Any] | None:
    """The methods-list entry of ``name``, if known."""
    return next((method for method in _methods if method["name"] == name), None)


def method_enum_items() -> list[tuple[str, str, str, str, int]]:
    """Items of the method EnumProperty (kept referenced here, as Blender requires)."""
    return _method_items or [("fit", "fit", "Fit a template to the photo (no checkpoint)", "NONE", 0)]


# -- jobs ------------------------------------------------------------------------------------------
def track(job: ActiveJob) -> None:
    """Start polling ``job`` (registers the timer if needed)."""
    jobs[job.job_id] = job
    if not bpy.app.timers.is_registered(poll_once):
        bpy.app.timers.register(poll_once, first_interval=POLL_INTERVAL)


def settings_of(job: ActiveJob) -> Any:
    """The scene settings group of the job's scene (None if the scene is gone)."""
    scene = bpy.data.scenes.get(job.scene_name)
    return scene.mono2mesh if scene is not None else None


def set_message(settings: Any, text: str, error: bool = False) -> None:
    if settings is not None:
        settings.message = text
        settings.message_is_error = error


def poll_once() -> float | None:
    """Poll every job once (main thread); return the next interval, or None when nothing is left."""
    for job in list(jobs.values()):
        try:
            _poll_job(job)
        except Exception as error:  # a bug must not kill the timer with other jobs in flight
            _fail(job, f"Mono2Mesh: {type(error).__name__}: {error}")
    _redraw()
    return POLL_INTERVAL if jobs else None


def _poll_job(job: ActiveJob) -> None:
    settings = settings_of(job)
    if settings is None:  # the scene was deleted: nothing to show it in
        jobs.pop(job.job_id, None)
        return
    try:
        client = _client_for_poll()
        data = _job_quick(client, job.job_id)
    except BackendUnavailable as error:
        job.failed_polls += 1
        if _local is not None and not _local.is_alive() and _local_mode():
            code = _local.process.returncode if _local.process is not None else None
            log = _local.log_file
            _fail(job, f"The backend stopped during the job (exit status {code}); see {log}")
        elif job.failed_polls >= MAX_FAILED_POLLS:
            _fail(job, str(error))
        return
    except BackendError as error:
        _fail(job, str(error))
        return
    job.failed_polls = 0
    settings.job_status = data["status"]
    settings.job_progress = float(data.get("progress") or 0.0)
    settings.job_stage = data.get("stage") or ""
    if data["status"] == "succeeded":
        finish(job, data)
    elif data["status"] == "failed":
        _fail(job, f"Job failed: {data.get('error') or 'no reason given'}")
    elif data["status"] == "canceled":
        jobs.pop(job.job_id, None)
        set_message(settings, "Canceled")


def _job_quick(client: BackendClient, job_id: str) -> dict[str, Any]:
    saved = client.timeout
    client.timeout = STATUS_TIMEOUT
    try:
        return client.job(job_id)
    finally:
        client.timeout = saved


def _local_mode() -> bool:
    from . import preferences

    try:
        return preferences.get().backend_mode == "LOCAL"
    except KeyError:
        return _local is not None


def _client_for_poll() -> BackendClient:
    if _local_mode():
        if _local is None or _local.client is None:
            raise BackendUnavailable("The local backend is not running")
        if not _local.is_alive():
            raise BackendUnavailable("The local backend process has exited")
        return _local.client
    return get_client(start=False)


def finish(job: ActiveJob, data: dict[str, Any]) -> Any:
    """Import a succeeded job with its kind's finisher; failures import nothing and set a message."""
    jobs.pop(job.job_id, None)
    settings = settings_of(job)
    finisher = finishers.get(job.kind)
    if finisher is None:
        _fail(job, f"No finisher for job kind {job.kind!r}")
        return None
    try:
        result = finisher(job, data)
    except (BackendError, OSError, RuntimeError, ValueError) as error:
        _fail(job, f"Import failed: {error}")
        return None
    if settings is not None:
        settings.job_status = "succeeded"
        settings.job_progress = 1.0
    if job.on_done is not None:
        job.on_done(job, result)
    return result


def _fail(job: ActiveJob, message: str) -> None:
    jobs.pop(job.job_id, None)
    settings = settings_of(job)
    if settings is not None:
        if settings.job_status not in ("succeeded", "canceled"):
            settings.job_status = "failed"
        set_message(settings, message, error=True)
    print(f"Mono2Mesh: {message}")


def _redraw() -> None:
    window_manager = bpy.context.window_manager
    if window_manager is None:
        return
    for window in window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
