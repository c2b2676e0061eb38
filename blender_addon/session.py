"""The add-on's runtime state: the backend connection, the methods list, and the jobs in flight.

Threading contract. bpy is touched only on the main thread; nothing on it waits for the network or
for a process more than a fraction of a second (clicks and timer calls stay under 0.5 s):

- Network requests of the UI (health, methods list, uploads, status polls, downloads, cancels) run
  on daemon worker threads through ``run_task(work, then, on_error)``: ``work`` touches no bpy; its
  result goes through a queue that the timers drain, and ``then(result)`` (or ``on_error``) runs on
  the main thread. A click waits at most ``INLINE_WAIT`` s for its worker, so a quick answer is
  handled before the operator returns and a slow one later.
- Two plain functions run from ``bpy.app.timers`` (tests and scripts call them directly: timers
  never fire in background mode). ``poll_start()`` while a local backend is starting
  (``ensure_backend`` launched it and returned at once): one look at the process and its state file,
  one loopback health request (0.3 s timeout); once it answers, the methods list is fetched on a
  worker and the actions that waited for it run (e.g. the submission of the Reconstruct that started
  it). A backend that exits or does not answer within the preferences' start timeout fails those
  actions with the reason and the log's tail. ``poll_once()`` while jobs or worker tasks are in
  flight: hands finished tasks their ``then``, starts one status request per job (2 s timeout, at
  most one in flight per job; a succeeded job's result files are downloaded by the same worker),
  waits at most ``POLL_WAIT`` s for the answers, updates the jobs' scene settings and imports
  succeeded jobs (through ``finish``, on the main thread, from the downloaded files). A job whose
  backend stops answering fails after ``MAX_FAILED_POLLS`` failed polls; a failed job imports
  nothing.
- A backend that does not answer (timeout or refused) is remembered by URL: the next clicks fail at
  once with "not answering since <time>" (``check_answering``) until a background health check every
  ``RECHECK_INTERVAL`` s sees it answer; submissions start with a ``HEALTH_TIMEOUT`` health request,
  so a hung backend costs one short timeout, not a long one per click.
- Stopping (``stop_backend``, ``shutdown`` from ``unregister``, the ``atexit`` handler) returns at
  once: SIGTERM is sent, a daemon thread waits and kills; at interpreter exit
  ``client.reap_at_exit`` makes sure the process does not outlive Blender.
- The blocking paths (``get_client`` with ``start``, ``refresh_methods``, ``run_task(wait=None)``,
  the operators' hidden ``wait`` option) are for scripts and background mode.

``on_load_post`` (a persistent ``load_post`` handler registered by ``register``) resets job state
that a saved .blend carries for jobs this session does not poll.

State lives in module globals (not in Blender data) because it is about processes and sockets.
"""

import atexit
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from . import client as client_module
from .client import (
    BackendClient,
    BackendError,
    BackendHTTPError,
    BackendStartError,
    BackendUnavailable,
    LocalBackend,
)

POLL_INTERVAL = 0.25
START_POLL_INTERVAL = 0.2
STATUS_TIMEOUT = 2.0
MAX_FAILED_POLLS = 8
INLINE_WAIT = 0.2  # how long a click waits for a worker before handing its result to the timers
POLL_WAIT = 0.1  # how long poll_once waits for the status answers it asked for
HEALTH_TIMEOUT = 2.0  # the first request of a submission: an unresponsive backend costs this once
RECHECK_INTERVAL = 2.0  # health checks of a backend that stopped answering
PREFETCH_KINDS = ("glb", "texture", "preview", "report", "mask")  # downloaded by the status worker
OPTIONAL_KINDS = ("mask",)  # an older backend without them answers 404: the job imports without


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
    polling: bool = False  # a status request (and, once succeeded, the download) is in flight


@dataclass
class _Starting:
    """A local backend being started: when to give up, and who waits for it."""

    deadline: float
    # (scene name for messages, action to run with the client once it answers, or None)
    waiting: list[tuple[str, Callable[[BackendClient], None] | None]] = field(default_factory=list)
    client: BackendClient | None = None  # set once health answers; the methods list is on its way


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING: Any = _Pending()  # what ``run_task`` returns when the work is still running


@dataclass(eq=False)
class _Task:
    """Work on a worker thread; ``then``/``on_error`` run on the main thread."""

    label: str
    then: Callable[[Any], Any]
    on_error: Callable[[Exception], Any]
    job_id: str = ""  # a status poll of this job: dropped when the job is no longer tracked
    keeps_timer: bool = True  # False: fire and forget (its result is only printed)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: Exception | None = None
    handled: bool = False  # main thread only


_local: LocalBackend | None = None
_starting: _Starting | None = None
_client: BackendClient | None = None
_methods: list[dict[str, Any]] = []
_method_items: list[tuple[str, str, str, str, int]] = []
jobs: dict[str, ActiveJob] = {}
_tasks: list[_Task] = []  # deferred tasks not handled yet (main thread only)
_finished: "queue.SimpleQueue[_Task]" = queue.SimpleQueue()  # filled by workers, drained by timers
# backend URL -> (time.time() it stopped answering, reason); written by workers, read by clicks
_unanswered: dict[str, tuple[float, str]] = {}
_unanswered_lock = threading.Lock()
# job id -> result files downloaded by the status worker (temporary names), for ``take_prefetched``
_prefetched: dict[str, dict[str, Path]] = {}
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
    """One look at a starting local backend (main thread); the next interval, or None when done.

    Once health answers, the methods list is fetched on a worker; the waiting actions run when it
    arrives (here, or from a later call).
    """
    global _starting
    _drain_tasks()
    attempt = _starting
    if attempt is None or _local is None:
        _starting = None
        return None
    if attempt.client is not None:  # the methods list is on its way
        return START_POLL_INTERVAL
    try:
        client = _local.check_ready()
        if client is None:
            if time.monotonic() < attempt.deadline:
                return START_POLL_INTERVAL
            log_file, tail = _local.log_file, _local.log_tail()
            _local.stop(wait=False)
            raise BackendStartError(
                f"The backend did not answer within the start timeout (log: {log_file}): {tail}"
            )
        attempt.client = client
        run_task(
            client.methods,
            lambda fetched: _started(attempt, client, fetched),
            lambda error: _start_failed(attempt, error),
            client=client,
            wait=0.15,
            label="methods",
        )
    except BackendError as error:
        _start_failed(attempt, error)
        return None
    return START_POLL_INTERVAL if _starting is attempt else None


def _start_failed(attempt: _Starting, error: Exception) -> None:
    """A starting backend failed (exited, timed out, or its methods list did not come)."""
    global _starting
    if _starting is not attempt:
        return  # stopped meanwhile
    _starting = None
    for scene_name, _then in attempt.waiting:
        _fail_waiting(scene_name, error)
    print(f"Mono2Mesh: {error}")
    _redraw()


def _fail_waiting(scene_name: str, error: Exception) -> None:
    """Show ``error`` in a scene that waited for the backend; its pending submission failed."""
    settings = _scene_settings(scene_name)
    if settings is not None and settings.job_status == "starting":
        settings.job_status = "failed"
    set_message(settings, str(error), error=True)


def _started(attempt: _Starting, client: BackendClient, fetched: list[dict[str, Any]]) -> None:
    """The starting backend answered and sent its methods list: run the actions that waited."""
    global _starting
    if _starting is not attempt:
        return  # stopped meanwhile
    apply_methods(fetched)
    _starting = None
    for scene_name, then in attempt.waiting:
        set_message(_scene_settings(scene_name), f"Backend running at {client.url}")
        if then is None:
            continue
        try:
            then(client)
        except (BackendError, OSError, RuntimeError, ValueError) as error:
            _fail_waiting(scene_name, error)
            print(f"Mono2Mesh: {error}")
    _redraw()


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
    _local.stop(wait=False)  # SIGTERM now; a daemon thread waits and kills (returns at once)
    _local = None
    return was_alive


def shutdown() -> None:
    """Forget jobs and tasks and stop the local backend (add-on disabled or Blender quitting).

    Returns at once: the process gets SIGTERM here, a daemon thread kills it if it lingers.
    """
    jobs.clear()
    for task in _tasks:
        task.handled = True  # their results are dropped when a worker hands them in
    _tasks.clear()
    _prefetched.clear()
    with _unanswered_lock:
        _unanswered.clear()  # ends the health-check threads
    for timer in (poll_once, poll_start):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    stop_backend()


def _at_exit() -> None:
    """Interpreter exit: stop our backend, and make sure no process being stopped outlives us."""
    stop_backend()
    client_module.reap_at_exit()


atexit.register(_at_exit)


# -- background work -------------------------------------------------------------------------------
def run_task(
    work: Callable[[], Any],
    then: Callable[[Any], Any],
    on_error: Callable[[Exception], Any],
    *,
    client: BackendClient | None = None,
    wait: float | None = INLINE_WAIT,
    label: str = "worker",
    job_id: str = "",
    keeps_timer: bool = True,
) -> Any:
    """Run ``work()`` (no bpy!) on a daemon thread and ``then(result)`` on the main thread.

    If the work is done within ``wait`` seconds, ``then`` runs here and its value is returned (an
    exception of ``work`` is raised here); otherwise ``PENDING`` is returned and the timers
    (``poll_once``, ``poll_start``) run ``then(result)``, or ``on_error(error)`` when the work or
    ``then`` raised. ``wait=None`` runs everything on this thread (scripts). A ``BackendUnavailable``
    from ``work`` marks ``client`` as not answering (see ``check_answering``). The timers keep
    running while a task is pending, unless ``keeps_timer`` is False or it polls a job (``job_id``)
    that is no longer tracked.
    """
    if wait is None:
        return then(_guarded(work, client))
    task = _Task(label, then, on_error, job_id, keeps_timer)

    def target() -> None:
        try:
            task.result = _guarded(work, client)
        except Exception as error:
            task.error = error
        finally:
            task.done.set()
            _finished.put(task)

    threading.Thread(target=target, name=f"mono2mesh-{label}", daemon=True).start()
    if wait > 0 and task.done.wait(wait):
        task.handled = True
        if task.error is not None:
            raise task.error
        return then(task.result)
    _tasks.append(task)
    if not bpy.app.timers.is_registered(poll_once):
        bpy.app.timers.register(poll_once, first_interval=POLL_INTERVAL)
    return PENDING


def _guarded(work: Callable[[], Any], client: BackendClient | None) -> Any:
    try:
        result = work()
    except BackendUnavailable as error:
        if client is not None:
            _mark_unanswered(client, error)
        raise
    if client is not None:
        with _unanswered_lock:
            _unanswered.pop(client.url, None)
    return result


def tasks_pending() -> bool:
    """Whether deferred work is running whose result still matters."""
    return any(task.keeps_timer and (not task.job_id or task.job_id in jobs) for task in _tasks)


def _drain_tasks() -> None:
    """Run the main-thread half of finished tasks (from the timers)."""
    while True:
        try:
            task = _finished.get_nowait()
        except queue.Empty:
            return
        if task.handled:
            continue
        task.handled = True
        if task in _tasks:
            _tasks.remove(task)
        if task.job_id and task.job_id not in jobs:
            continue  # a status answer for a job that was canceled or failed meanwhile
        try:
            if task.error is not None:
                raise task.error
            task.then(task.result)
        except Exception as error:
            try:
                task.on_error(error)
            except Exception as nested:  # a bug must not kill the timer
                print(f"Mono2Mesh: {task.label}: {type(nested).__name__}: {nested}")


def _wait_for_tasks(seconds: float) -> None:
    end = time.monotonic() + seconds
    for task in list(_tasks):
        left = end - time.monotonic()
        if left <= 0:
            return
        task.done.wait(left)


def check_answering(client: BackendClient) -> None:
    """Raise ``BackendUnavailable`` at once when ``client``'s backend stopped answering (a worker saw
    it time out or refuse); a background health check clears that when it answers again."""
    with _unanswered_lock:
        entry = _unanswered.get(client.url)
    if entry is not None:
        since = time.strftime("%H:%M:%S", time.localtime(entry[0]))
        raise BackendUnavailable(
            f"Backend at {client.url} not answering since {since} ({entry[1]}); "
            "checking again in the background"
        )


def backend_unanswered(url: str) -> bool:
    """Whether the backend at ``url`` is marked as not answering."""
    with _unanswered_lock:
        return url.rstrip("/") in _unanswered


def _mark_unanswered(client: BackendClient, error: BackendError) -> None:
    reason = str(error)
    cause = error.__cause__
    if cause is not None:
        reason = str(getattr(cause, "reason", cause))
    with _unanswered_lock:
        if client.url in _unanswered:
            return
        _unanswered[client.url] = (time.time(), reason)
    probe = BackendClient(client.url, client.token)
    threading.Thread(target=_recheck, args=(probe,), name="mono2mesh-health", daemon=True).start()


def _recheck(probe: BackendClient) -> None:
    """Health checks every ``RECHECK_INTERVAL`` s until the backend answers (or is forgotten)."""
    while True:
        time.sleep(RECHECK_INTERVAL)
        with _unanswered_lock:
            if probe.url not in _unanswered:
                return
        try:
            probe.health(timeout=1.0)
        except BackendError:
            continue
        with _unanswered_lock:
            _unanswered.pop(probe.url, None)
        return


def cancel_in_background(client: BackendClient, job_id: str, wait: float = 0.0) -> None:
    """Ask the backend to cancel ``job_id`` without blocking; errors are printed.

    With ``wait`` > 0, a quick answer's error is raised here (e.g. 409: already finished).
    """

    def report(error: Exception) -> None:
        print(f"Mono2Mesh: cancel {job_id}: {error}")

    check_answering(client)
    run_task(
        lambda: client.cancel(job_id),
        lambda _job: None,
        report,
        client=client,
        wait=wait,
        label="cancel",
        keeps_timer=False,
    )


def take_prefetched(job_id: str) -> dict[str, Path] | None:
    """Result files of ``job_id`` downloaded by the status worker: kind -> temporary file (move them);
    None when the worker downloaded nothing for it (an optional kind missing from the dict: the backend
    has none)."""
    return _prefetched.pop(job_id, None)


def _prefetch(client: BackendClient, job_id: str, folder: Path) -> dict[str, Path]:
    """Worker thread: download a succeeded job's result files under temporary names (an optional
    kind the backend does not have is left out)."""
    files = {}
    for kind in PREFETCH_KINDS:
        try:
            files[kind] = client.download(job_id, kind, folder / f".prefetch-{kind}")
        except BackendHTTPError as error:
            if kind not in OPTIONAL_KINDS or error.status != 404:
                raise
    return files


# -- file loading ----------------------------------------------------------------------------------
@bpy.app.handlers.persistent
def on_load_post(*_args: Any) -> None:
    """``load_post`` handler: no scene of the opened file shows a job this session does not poll.

    A .blend saved while a job ran stores its status ("running", progress...), which would keep the
    progress bar frozen and Reconstruct disabled. Jobs this session still tracks for a scene of the
    same name with the same job id keep going (the same file reopened: polled and imported as
    usual); every other in-flight state is reset with a message. Re-attaching an untracked job is
    not attempted: the scene settings hold only its id, not what importing it needs (object name,
    photo, cursor location), so the artist runs it again. Tracked jobs whose scene is gone or now
    shows another job are forgotten.
    """
    for job in list(jobs.values()):
        settings = settings_of(job)
        if settings is None or settings.job_id != job.job_id:
            jobs.pop(job.job_id, None)
    waiting = {name for name, _then in _starting.waiting} if _starting is not None else set()
    for scene in bpy.data.scenes:
        settings = getattr(scene, "mono2mesh", None)
        if settings is None or settings.job_status not in ("starting", "submitting", "queued", "running"):
            continue
        if settings.job_id and settings.job_id in jobs:
            continue
        if not settings.job_id and settings.job_status == "starting" and scene.name in waiting:
            continue  # this session's backend start will send it
        job_id, kind = settings.job_id, settings.job_kind or "reconstruct"
        settings.job_id = ""
        settings.job_status = ""
        settings.job_progress = 0.0
        settings.job_stage = ""
        what = f"The {kind} job {job_id}" if job_id else f"A {kind} job"
        set_message(settings, f"{what} was in flight when this file was saved; run it again")


# -- methods ---------------------------------------------------------------------------------------
def refresh_methods(client: BackendClient) -> list[dict[str, Any]]:
    """Fetch the methods list and rebuild the enum items (blocking: scripts; the UI fetches the list
    on a worker and hands it to ``apply_methods``)."""
    return apply_methods(client.methods())


def apply_methods(fetched: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep a fetched methods list and rebuild the enum items (unavailable ones say why); main thread."""
    global _methods, _method_items
    _methods = fetched
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
    """Handle finished background work, then ask for every job's status (main thread); return the
    next interval, or None when no job and no task is left.

    Status requests (and a succeeded job's downloads) run on workers, one per job at a time; this
    waits at most ``POLL_WAIT`` s for their answers, the rest is handled by a later call.
    """
    _drain_tasks()
    for job in list(jobs.values()):
        try:
            _poll_job(job)
        except Exception as error:  # a bug must not kill the timer with other jobs in flight
            _fail(job, f"Mono2Mesh: {type(error).__name__}: {error}")
    if _tasks:
        _wait_for_tasks(POLL_WAIT)
        _drain_tasks()
    _redraw()
    return POLL_INTERVAL if jobs or tasks_pending() else None


def _poll_job(job: ActiveJob) -> None:
    settings = settings_of(job)
    if settings is None:  # the scene was deleted: nothing to show it in
        jobs.pop(job.job_id, None)
        return
    local = job.local
    if local is not None and not local.is_alive():
        code = local.process.returncode if local.process is not None else None
        _fail(job, f"The backend stopped during the job (exit status {code}); see {local.log_file}")
        return
    if job.polling:
        return
    client = job_client(job)
    job.polling = True
    run_task(
        lambda: _fetch_status(client, job.job_id, job.output_dir),
        lambda answer: _apply_status(job, *answer),
        lambda error: _status_failed(job, error),
        client=client,
        wait=0,
        label="status",
        job_id=job.job_id,
    )


def _fetch_status(client: BackendClient, job_id: str, folder: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Worker thread: the job's JSON, and its result files once it succeeded."""
    data = _job_quick(client, job_id)
    files = _prefetch(client, job_id, folder) if data["status"] == "succeeded" else {}
    return data, files


def _status_failed(job: ActiveJob, error: Exception) -> None:
    job.polling = False
    if isinstance(error, BackendUnavailable):
        job.failed_polls += 1
        if job.failed_polls >= MAX_FAILED_POLLS:
            _fail(job, str(error))
    elif isinstance(error, (BackendError, OSError)):
        _fail(job, str(error))
    else:
        _fail(job, f"Mono2Mesh: {type(error).__name__}: {error}")


def _apply_status(job: ActiveJob, data: dict[str, Any], files: dict[str, Path]) -> None:
    job.polling = False
    settings = settings_of(job)
    if settings is None or job.job_id not in jobs:
        return
    job.failed_polls = 0
    settings.job_status = data["status"]
    settings.job_progress = float(data.get("progress") or 0.0)
    settings.job_stage = data.get("stage") or ""
    if data["status"] == "succeeded":
        _prefetched[job.job_id] = files
        finish(job, data)
    elif data["status"] == "failed":
        _fail(job, f"Job failed: {data.get('error') or 'no reason given'}")
    elif data["status"] == "canceled":
        jobs.pop(job.job_id, None)
        set_message(settings, "Canceled")


def _job_quick(client: BackendClient, job_id: str) -> dict[str, Any]:
    return client.job(job_id, timeout=STATUS_TIMEOUT)


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
    finally:
        for leftover in _prefetched.pop(job.job_id, {}).values():
            leftover.unlink(missing_ok=True)
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
            if area.type in ("VIEW_3D", "PREFERENCES"):  # the sidebar, the mask-model box
                area.tag_redraw()
