"""The backend's salient-object mask model, as the preferences' "Mask Model" box shows it.

Nothing here runs on its own: the status is asked for only when the artist presses Check
(``GET /v1/mask-model``), and the model is downloaded only when the artist presses Download Mask Model
(``POST /v1/mask-model/download``: the backend fetches the file, which can take a while). Both requests
run like the add-on's other server calls (``session``'s threading contract): ``request`` gets a client
without blocking (``session.ensure_backend``: a local backend that is not running is started and the
request waits for it in ``session.poll_start``), the request runs on a worker thread through
``session.run_task`` (the click waits at most ``session.INLINE_WAIT`` s; a slower answer is handled by
the timers) and its answer updates ``state`` on the main thread. ``request(..., wait=True)`` blocks
instead (scripts and background mode, where timers never fire): it starts a local backend if needed
and raises the request's error.

``state`` (module globals: it is about the backend, not Blender data) holds the last status JSON
(``client.BackendClient.mask_model``), the backend URL it came from, what is in flight (``busy``) and
the last error; ``lines()`` turns it into the box's text. A backend that answers 404 on the routes
(``MaskModelUnsupported``: older than mask-model support) is shown as such. Touches no bpy data.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import bpy

from . import session
from .client import BackendClient, BackendError, MaskModelUnsupported

CHECK = "check"
DOWNLOAD = "download"
STARTING = "starting"


@dataclass
class MaskModelState:
    """What the box shows (main thread only)."""

    status: dict[str, Any] | None = None  # the last status JSON, None until a request succeeded
    url: str = ""  # the backend it came from
    busy: str = ""  # CHECK or DOWNLOAD in flight, STARTING while a local backend starts for it
    error: str = ""  # the last request's failure ("" after a success)
    unsupported: bool = False  # the backend answered 404: it has no mask-model support
    waiting: list[str] = field(default_factory=list)  # requests waiting for a starting backend


state = MaskModelState()


def reset() -> None:
    """Forget everything (tests; a new backend URL)."""
    global state
    state = MaskModelState()


def request(kind: str, context: bpy.types.Context | None = None, wait: bool = False, name: str = "") -> Any:
    """Check the mask model (``kind`` CHECK) or have the backend download it (DOWNLOAD, ``name``: the
    model to fetch, empty for the backend's default).

    Returns the result text when done, ``session.PENDING`` while the request runs on a worker, or None
    when a local backend is starting first (the request is sent when it answers). Raises
    ``BackendError`` (recorded in ``state`` first) when the request failed at once, or with ``wait``.
    """
    if kind not in (CHECK, DOWNLOAD):
        raise ValueError(f"kind must be {CHECK!r} or {DOWNLOAD!r}, got {kind!r}")
    context = context or bpy.context
    try:
        if wait:
            client = session.get_client(context)
        else:
            scene_name = context.scene.name if context.scene is not None else ""
            client = session.ensure_backend(scene_name, partial(_send_later, kind, name), context)
    except BackendError as error:
        _failed(kind, "", error)
        raise
    if client is None:
        state.busy = STARTING
        state.waiting.append(kind)
        return None
    return _send(kind, client, name, None if wait else session.INLINE_WAIT)


def _send_later(kind: str, name: str, client: BackendClient) -> None:
    """A local backend started for the request answers (from ``session.poll_start``)."""
    if kind in state.waiting:
        state.waiting.remove(kind)
    _send(kind, client, name, 0.0)


def _send(kind: str, client: BackendClient, name: str, wait: float | None) -> Any:
    try:
        session.check_answering(client)
    except BackendError as error:
        _failed(kind, client.url, error)
        raise
    state.busy, state.url = kind, client.url
    work = client.mask_model if kind == CHECK else partial(client.download_mask_model, name or None)
    try:
        return session.run_task(
            work,
            partial(_answered, kind, client.url),
            partial(_failed, kind, client.url),
            client=client,
            wait=wait,
            label=f"mask-model-{kind}",
        )
    except (BackendError, OSError, ValueError) as error:  # a quick failure (or wait=None): raised here
        _failed(kind, client.url, error)
        raise


def _answered(kind: str, url: str, status: dict[str, Any]) -> str:
    """Main thread: the status JSON arrived. A download that leaves no usable model raises."""
    state.status, state.url, state.busy, state.error, state.unsupported = status, url, "", "", False
    session._redraw()
    name = status["name"] or "the mask model"
    if status["available"]:
        done = "downloaded to" if kind == DOWNLOAD else "available at"
        return f"Mask model {name} {done} {status['path']}"
    reason = status["reason"] or "no reason given"
    if kind == DOWNLOAD:  # recorded by ``_failed`` (run_task's on_error, or ``_send``)
        raise BackendError(f"The download left no usable mask model: {reason}")
    return f"Mask model {name} is not installed: {reason}"


def _failed(kind: str, url: str, error: Exception) -> None:
    """Main thread: the request failed (recorded for the box, printed)."""
    state.busy, state.error = "", str(error)
    state.url = url or state.url
    state.unsupported = isinstance(error, MaskModelUnsupported)
    if state.unsupported:
        state.status = None
    print(f"Mono2Mesh: mask model {kind}: {error}")
    session._redraw()


def lines() -> list[tuple[str, str]]:
    """The box's text: (line, icon) pairs, from ``state`` (drawing only: no request is made)."""
    if state.busy == STARTING and not session.backend_starting():
        # the backend that was starting for the request failed or was stopped (the scene says why)
        state.busy, state.error = "", "The backend did not start; see the Mono2Mesh panel's message"
        state.waiting.clear()
    result: list[tuple[str, str]] = []
    if state.busy == STARTING:
        result.append(("Starting the backend…", "SORTTIME"))
    elif state.busy == CHECK:
        result.append(("Asking the backend…", "SORTTIME"))
    elif state.busy == DOWNLOAD:
        result.append(("Downloading the mask model (can take a minute)…", "SORTTIME"))
    status = state.status
    if state.unsupported:
        result.append(("This backend has no mask model support (update it)", "ERROR"))
    elif status is None:
        if not state.error and not state.busy:
            result.append(("Not checked: press Check (nothing is downloaded)", "QUESTION"))
    elif status["available"]:
        result.append((f"Available: {status['name']}", "CHECKMARK"))
        result.append((f"File: {status['path']}", "FILE"))
    else:
        result.append((f"Not installed: {status['name'] or 'salient-object model'}", "INFO"))
        if status["reason"]:
            result.append((str(status["reason"]), "BLANK1"))
        searched = status["searched"]
        if searched:
            more = f" (+{len(searched) - 1} more)" if len(searched) > 1 else ""
            result.append((f"Searched: {searched[0]}{more}", "BLANK1"))
        result.append(("Without it: GrabCut finds the object", "BLANK1"))
    if state.error and not state.unsupported:
        result.append((state.error, "ERROR"))
    if state.url:
        result.append((f"Backend: {state.url}", "URL"))
    return result
