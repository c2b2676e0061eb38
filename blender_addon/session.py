"""The add-on's runtime state: the backend connection, the methods list, and the jobs in flight.

Threading contract: nothing here starts a thread, and nothing on the main thread waits for the
backend to come up. Two plain functions run from ``bpy.app.timers`` on the main thread (tests and
scripts call them directly: timers never fire in background mode):

- ``poll_start()`` while a local backend is starting (``ensure_backend`` launched it and returned at
  once): one look at the process and its state file, one loopback health request (0.5 s timeout);
  when it answers, the methods list is fetched and the actions that waited for it run (e.g. the
  submission of the Reconstruct that started it). A backend that exits or does not answer within
  the preferences' start timeout fails those actions with the reason and the log's tail.
- ``poll_once()`` while jobs are in flight: one short status request per job (loopback, 2 s
  timeout), updates the job's scene settings, and finishes succeeded jobs (download + import
  through ``finish``). A job whose backend stops answering fails with a message saying so; a failed
  job imports nothing.

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

from .client import BackendClient, BackendError, BackendStartError, BackendUnavailable, LocalBackend

POLL_INTERVAL = 0.25
START_POLL_INTERVAL = 0.2
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
    # the backend the job was sent to (polls and downloads go there even if the preferences change)
    client: BackendClient | None = None
    local: LocalBackend | None = None  # the local process serving it, when there is one
    failed_polls: int = 0
    on_done: Callable[["ActiveJob", Any], None] | None = None


@dataclass
class _Starting:
    """A local backend being started: when to give up, and who waits for it."""

    deadline: float
    # (scene name for messages, action to run with the client once it answers, or None)
    waiting: list[tuple[str, Callable[[BackendClient], None] | None]] = field(default_factory=list)


_local: LocalBackend | None = None
_starting: _Starting | None = None
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
    """A client of the configured backend; in LOCAL mode starts it, **blocking**, when ``start``
    (scripts and background mode; the UI uses ``ensure_backend``).

    Raises ``BackendError`` with a message for the artist.
    """
    from . import preferences

    prefs = preferences.get(context)
    if prefs.backend_mode == "URL":
        return _url_client(prefs)
    local = _local_for(prefs)
    if local.client is not None and local.is_alive():
        return local.client
    if not start:
        if local.adopt_running() is None:
            raise BackendUnavailable("The local backend is not running; press Start Backend")
        assert local.client is not None
        return local.client
    return local.start(timeout=prefs.start_timeout)


def ensure_backend(
    scene_name: str,
    then: Callable[[BackendClient], None] | None = None,
    context: bpy.types.Context | None = None,
) -> BackendClient | None:
    """Without blocking: the client when the backend can be asked now, else None.

    In URL mode the client is returned at once (requests say whether it answers). In LOCAL mode a
    backend that is not running is launched, ``poll_start`` is put on a timer, and ``then(client)``
    runs from it once the backend answers (or the scene ``scene_name`` gets the error message).
    Raises ``BackendError`` when the backend cannot even be launched (e.g. no Python configured).
    """
    global _starting
    from . import preferences

    prefs = preferences.get(context)
    if prefs.backend_mode == "URL":
        return _url_client(prefs)
    local = _local_for(prefs)
    if _starting is None:
        client = local.launch()
        if client is not None:
            return client
        _starting = _Starting(deadline=time.monotonic() + prefs.start_timeout)
    _starting.waiting.append((scene_name, then))
    set_message(_scene_settings(scene_name), "Starting the backend…")
    if not bpy.app.timers.is_registered(poll_start):
        bpy.app.timers.register(poll_start, first_interval=START_POLL_INTERVAL)
    return None


def backend_starting() -> bool:
    """Whether a local backend has been launched and is not answering yet."""
    return _starting is not None


def poll_start() -> float | None:
    """One look at a starting local backend (main thread); the next interval, or None when done."""
    global _starting
    attempt = _starting
    if attempt is None or _local is None:
        _starting = None
        return None
    try:
        client = _local.check_ready()
        if client is None:
            if time.monotonic() < attempt.deadline:
                return START_POLL_INTERVAL
            _local.stop()
            raise BackendStartError(
                f"The backend did not answer within the start timeout (log: {_local.log_file}): "
                f"{_local.log_tail()}"
            )
        refresh_methods(client)
    except BackendError as error:
        _starting = None
        for scene_name, _then in attempt.waiting:
            settings = _scene_settings(scene_name)
            if settings is not None and settings.job_status == "starting":
                settings.job_status = "failed"
            set_message(settings, str(error), error=True)
        print(f"Mono2Mesh: {error}")
        _redraw()
        return None
    _starting = None
    for scene_name, then in attempt.waiting:
        set_message(_scene_settings(scene_name), f"Backend running at {client.url}")
        if then is None:
            continue
        try:
            then(client)
        except (BackendError, OSError, RuntimeError, ValueError) as error:
            settings = _scene_settings(scene_name)
            if settings is not None and settings.job_status == "starting":
                settings.job_status = "failed"
            set_message(settings, str(error), error=True)
            print(f"Mono2Mesh: {error}")
    _redraw()
    return None


def _url_client(prefs: Any) -> BackendClient:
    global _client
    if _client is None or _client.url != prefs.url.strip().rstrip("/") or _client.token != prefs.token:
        _client = BackendClient(prefs.url, prefs.token)
    return _client


def _local_for(prefs: Any) -> LocalBackend:
    """The LocalBackend of the configured Python (a new one when the path changed)."""
    global _local
    python = bpy.path.abspath(prefs.python_path) if prefs.python_path else ""
    if _local is None or _local.python != python:
        folder = user_path("backend")
        _local = LocalBackend(python, folder / "server.json", folder / "server.log", jobs_dir=folder / "jobs")
    return _local


def _scene_settings(scene_name: str) -> Any:
    scene = bpy.data.scenes.get(scene_name)
    return scene.mono2mesh if scene is not None else None


def stop_backend() -> bool:
    """Stop the local backend this session started (or is starting); True if there was one."""
    global _local, _starting
    if _starting is not None:
        for scene_name, _then in _starting.waiting:
            settings = _scene_settings(scene_name)
            if settings is not None and settings.job_status == "starting":
                settings.job_status = "canceled"
            set_message(settings, "Backend stopped before it answered")
        _starting = None
    if _local is None:
        return False
    was_alive = _local.is_alive()
    _local.stop()
    _local = None
    return was_alive


def shutdown() -> None:
    """Forget jobs and stop the local backend (add-on disabled or Blender quitting)."""
    jobs.clear()
    for timer in (poll_once, poll_start):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
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
    return _scene_settings(job.scene_name)


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
    local = job.local
    try:
        if local is not None and not local.is_alive():
            raise BackendUnavailable("The local backend process has exited")
        data = _job_quick(job_client(job), job.job_id)
    except BackendUnavailable as error:
        job.failed_polls += 1
        if local is not None and not local.is_alive():
            code = local.process.returncode if local.process is not None else None
            _fail(job, f"The backend stopped during the job (exit status {code}); see {local.log_file}")
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


def job_client(job: ActiveJob) -> BackendClient:
    """The client of the backend ``job`` was sent to (the configured one for jobs made without)."""
    return job.client if job.client is not None else get_client(start=False)


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
