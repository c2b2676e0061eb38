"""HTTP client of the Mono2Mesh backend (API v1) and management of a local backend process.

This module never imports ``bpy``: it is the add-on's format/transport layer, tested without Blender
(glTF-Blender-IO keeps its format code apart from its Blender code the same way). Everything here
runs on whichever thread calls it and touches no Blender data; the add-on calls the request methods
from worker threads (``session.run_task``). A ``BackendClient`` keeps no per-request state (the
timeout of a request is an argument), so threads may share one. The only threads started here are
the daemon reapers of ``LocalBackend.stop(wait=False)``.

- ``BackendClient(url, token)``: one method per route (``health``, ``methods``, ``submit``, ``job``,
  ``wait``, ``cancel``, ``download``, ``mask_model``, ``download_mask_model``). Proxies are bypassed
  (the backend is on the loopback interface). Every failure is a ``BackendError`` whose message says
  what to do: ``BackendUnavailable`` (nothing answers at the URL, or it timed out), ``BackendHTTPError`` (the
  backend answered 4xx/5xx; ``status`` and the backend's ``detail``), ``MaskModelUnsupported`` (a
  ``BackendHTTPError``: the backend has no mask-model routes, an older one), ``JobFailed`` (a job ended
  failed or canceled).
- ``LocalBackend(python, state_file, ...)``: runs ``<python> -m backend serve --port 0 --state-file F``,
  waits until the state file names a server that answers ``/v1/health``, and stops it (SIGTERM, then
  SIGKILL). ``launch`` + ``check_ready`` do the start without blocking (the add-on polls from a
  timer); ``start`` blocks (scripts). ``adopt_running`` reuses a backend a previous session left
  running with the same state file (not one being stopped). ``stop(wait=False)`` sends SIGTERM and
  returns; a daemon thread kills the process if it lingers, and ``reap_at_exit`` (``atexit``) hands
  one still running at interpreter exit to a detached killer. A launch while the previous server of
  the same state file is still stopping is deferred (``check_ready`` spawns it once that one is gone:
  the server locks its jobs folder).

Job JSON (``submit``, ``job``, ``wait``, ``cancel``) is returned as the backend sends it:
``{"id", "status", "progress", "stage", "error", "method", "options", "image_name", "results", ...}``.
Mask-model status JSON (``mask_model``, ``download_mask_model``): ``{"available": bool, "path": str or
null, "name": str, "searched": [str, ...], "reason": str or null}``.
"""

from __future__ import annotations

import json
import mimetypes
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_PREFIX = "/v1"
TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
RESULT_FILES = {
    "glb": "result.glb",
    "preview": "preview.png",
    "report": "report.json",
    "texture": "texture.png",
    "mask": "mask.png",
}
SERVE_MODULE_ARGS: tuple[str, ...] = ("-m", "backend", "serve")
MASK_MODEL_DOWNLOAD_TIMEOUT = 600.0  # seconds: the backend fetches the model file before it answers


class BackendError(Exception):
    """Any failure talking to the backend; ``str(error)`` is a message for the artist."""


class BackendUnavailable(BackendError):
    """Nothing answers at the backend URL (not started, crashed, wrong URL) or it timed out."""


class BackendHTTPError(BackendError):
    """The backend answered with an error status; ``detail`` is its explanation."""

    def __init__(self, status: int, detail: str, route: str) -> None:
        super().__init__(f"Backend error {status} on {route}: {detail}")
        self.status = status
        self.detail = detail
        self.route = route


class MaskModelUnsupported(BackendHTTPError):
    """The backend answered 404 "Not Found" on a mask-model route: it predates mask-model support."""

    def __init__(self, route: str) -> None:
        super().__init__(404, "Not Found", route)
        self.args = (
            f"This backend has no mask model support (it answered 404 on {route}); update the backend "
            "to a version with the salient-object mask model",
        )


class JobFailed(BackendError):
    """A job ended ``failed`` or ``canceled``; ``job`` is its last JSON."""

    def __init__(self, job: dict[str, Any]) -> None:
        if job.get("status") == "canceled":
            message = f"Job {job.get('id')} was canceled"
        else:
            message = f"Job {job.get('id')} failed: {job.get('error') or 'no reason given'}"
        super().__init__(message)
        self.job = job


class BackendStartError(BackendError):
    """A local backend could not be started; the message names the cause and the log file."""


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart request: form field ``field`` with ``data`` named ``filename``."""

    field: str
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


def encode_multipart(fields: dict[str, str], files: Sequence[Upload]) -> tuple[bytes, str]:
    """``(body, content_type)`` of a multipart/form-data request with text ``fields`` and ``files``."""
    boundary = f"mono2mesh-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
        )
        chunks.append(value.encode("utf-8") + b"\r\n")
    for upload in files:
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; name={_q(upload.field)}; "
            f"filename={_q(upload.filename)}\r\nContent-Type: {upload.content_type}\r\n\r\n"
        )
        chunks.append(head.encode("utf-8"))
        chunks.append(upload.data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")


def _q(text: str) -> str:
    return f'"{_quote(text)}"'


def upload_file(field: str, path: str | os.PathLike[str]) -> Upload:
    """An ``Upload`` of the file at ``path`` (raises ``BackendError`` if it cannot be read)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BackendError(f"Cannot read {field} file {path}: {error.strerror or error}") from error
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix.lower() == ".glb":
        content_type = "model/gltf-binary"
    return Upload(field, path.name, data, content_type)


class BackendClient:
    """Client of one backend at ``url`` (e.g. ``http://127.0.0.1:8765``) with bearer ``token``.

    ``timeout`` (seconds) bounds each request except long polls, which add their wait to it.
    """

    def __init__(self, url: str, token: str = "", timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BackendError(f"Backend URL must look like http://127.0.0.1:8765, got {url!r}")
        self.url = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.token = token.strip()
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- routes -----------------------------------------------------------------------------------
    def health(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v1/health`` -> ``{"status", "version", "ready"}``."""
        return self._json("GET", "/health", timeout=timeout, auth=False)

    def methods(self) -> list[dict[str, Any]]:
        """``GET /v1/methods`` -> the list of ``{"name", "description", "available", "reason", ...}``."""
        return list(self._json("GET", "/methods")["methods"])

    def submit(
        self,
        image: str | os.PathLike[str] | Upload,
        *,
        mask: str | os.PathLike[str] | Upload | None = None,
        mesh: str | os.PathLike[str] | Upload | None = None,
        method: str = "fit",
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/jobs``: submit a photo (a path or an ``Upload``) -> the queued job's JSON.

        ``mask`` is an optional mask image, ``mesh`` an optional GLB to refine.
        """
        files = [_as_upload("image", image)]
        if mask is not None:
            files.append(_as_upload("mask", mask))
        if mesh is not None:
            files.append(_as_upload("mesh", mesh))
        body, content_type = encode_multipart({"method": method, "options": json.dumps(options or {})}, files)
        return self._json("POST", "/jobs", body=body, content_type=content_type, timeout=60.0)

    def job(self, job_id: str, wait: float = 0.0, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``; with ``wait`` > 0 a long poll that answers when the job changes.

        ``timeout`` replaces the client's ``timeout`` for this request (the long poll adds ``wait``).
        """
        route = f"/jobs/{_job_path(job_id)}"
        if wait > 0:
            route += f"?wait={wait:g}"
            return self._json("GET", route, timeout=(timeout or self.timeout) + wait)
        return self._json("GET", route, timeout=timeout)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/cancel`` -> the job (409 ``BackendHTTPError`` if already finished)."""
        return self._json("POST", f"/jobs/{_job_path(job_id)}/cancel", body=b"")

    def download(self, job_id: str, kind: str, destination: str | os.PathLike[str]) -> Path:
        """Save result ``kind`` (glb, preview, report, texture, mask) of a job to ``destination``."""
        if kind not in RESULT_FILES:
            raise ValueError(f"kind must be one of {sorted(RESULT_FILES)}, got {kind!r}")
        data = self._request("GET", f"/jobs/{_job_path(job_id)}/{RESULT_FILES[kind]}", timeout=60.0)
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        temporary = destination.with_name(f".{destination.name}.part")
        temporary.write_bytes(data)
        os.replace(temporary, destination)
        return destination

    def mask_model(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v1/mask-model`` -> the mask-model status JSON (module docstring).

        Raises ``MaskModelUnsupported`` when the backend has no such route.
        """
        return _mask_status(self._mask_json("GET", "/mask-model", timeout=timeout))

    def download_mask_model(
        self, name: str | None = None, timeout: float = MASK_MODEL_DOWNLOAD_TIMEOUT
    ) -> dict[str, Any]:
        """``POST /v1/mask-model/download`` (body ``{"name": name}`` when given): the backend downloads
        the salient-object mask model now, then answers its status JSON. Blocks until it has (up to
        ``timeout`` s): call it from a worker thread. Its refusals and failures (4xx, 502) are
        ``BackendHTTPError`` with the backend's detail; ``MaskModelUnsupported`` for an older backend.
        """
        body = json.dumps({"name": name} if name else {}).encode("utf-8")
        data = self._mask_json(
            "POST", "/mask-model/download", body=body, content_type="application/json", timeout=timeout
        )
        return _mask_status(data)

    def _mask_json(self, method: str, route: str, **kwargs: Any) -> Any:
        try:
            return self._json(method, route, **kwargs)
        except BackendHTTPError as error:
            if error.status == 404 and error.detail == "Not Found":  # FastAPI's answer to an unknown route
                raise MaskModelUnsupported(f"{method} {API_PREFIX}{route}") from error
            raise

    def report(self, job_id: str) -> dict[str, Any]:
        """The job's ``report.json`` as a dict."""
        return self._json("GET", f"/jobs/{_job_path(job_id)}/report.json")

    def wait(
        self,
        job_id: str,
        *,
        timeout: float = 600.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        is_alive: Callable[[], bool] | None = None,
        poll: float = 5.0,
    ) -> dict[str, Any]:
        """Block until the job is finished; return its JSON if it succeeded.

        Raises ``JobFailed`` for a failed or canceled job, ``BackendUnavailable`` when the backend
        stops answering (at once if ``is_alive()`` says its process is gone) and ``TimeoutError``
        after ``timeout`` seconds. ``on_progress(job)`` is called after every answer.
        """
        deadline = time.monotonic() + timeout
        failures = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"Job {job_id} did not finish within {timeout:g} s")
            try:
                job = self.job(job_id, wait=min(poll, max(remaining, 0.1)))
            except BackendUnavailable:
                failures += 1
                if (is_alive is not None and not is_alive()) or failures >= 3:
                    raise
                time.sleep(0.5)
                continue
            failures = 0
            if on_progress is not None:
                on_progress(job)
            if job["status"] == "succeeded":
                return job
            if job["status"] in TERMINAL_STATES:
                raise JobFailed(job)

    # -- plumbing ---------------------------------------------------------------------------------
    def _json(
        self,
        method: str,
        route: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        auth: bool = True,
    ) -> Any:
        data = self._request(method, route, body=body, content_type=content_type, timeout=timeout, auth=auth)
        try:
            return json.loads(data)
        except ValueError as error:
            raise BackendError(f"Backend sent something that is not JSON on {route}") from error

    def _request(
        self,
        method: str,
        route: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        auth: bool = True,
    ) -> bytes:
        request = urllib.request.Request(self.url + API_PREFIX + route, data=body, method=method)
        request.add_header("Accept", "application/json")
        if content_type:
            request.add_header("Content-Type", content_type)
        if auth and self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            raise BackendHTTPError(error.code, _detail(error), f"{method} {API_PREFIX}{route}") from error
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise BackendUnavailable(
                f"Backend at {self.url} is not answering ({reason}); start it or check the URL"
            ) from error


def _mask_status(data: Any) -> dict[str, Any]:
    """Check the shape of a mask-model status answer; ``BackendError`` when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("available"), bool):
        raise BackendError(f"Backend sent an unexpected mask-model status: {str(data)[:200]}")
    searched = data.get("searched")
    return {
        "available": data["available"],
        "path": data.get("path"),
        "name": str(data.get("name") or ""),
        "searched": [str(item) for item in searched] if isinstance(searched, list) else [],
        "reason": data.get("reason"),
    }


def _as_upload(field: str, value: str | os.PathLike[str] | Upload) -> Upload:
    return value if isinstance(value, Upload) else upload_file(field, value)


def _job_path(job_id: str) -> str:
    if not job_id or not all(char.isalnum() or char in "-_" for char in job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(error.read() or b"{}")
    except (ValueError, OSError):
        return error.reason or "no detail"
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, list):  # FastAPI validation errors: a list of {"loc", "msg"}
        return "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    return str(detail or error.reason or "no detail")


# -- local backend process ------------------------------------------------------------------------
def read_state_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The backend's state file ``{"url", "token", "pid", ...}``, or None if missing or incomplete."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not state.get("url") or "token" not in state:
        return None
    return state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalBackend:
    """A backend process started (or adopted) by the add-on.

    ``python`` is the interpreter of the backend's environment; ``state_file`` where the server
    writes its URL and token; ``log_file`` receives its stdout and stderr; ``jobs_dir`` (optional)
    its job folders. ``module_args`` is how the server is started after the interpreter.
    """

    def __init__(
        self,
        python: str | os.PathLike[str],
        state_file: str | os.PathLike[str],
        log_file: str | os.PathLike[str],
        *,
        jobs_dir: str | os.PathLike[str] | None = None,
        module_args: Sequence[str] = SERVE_MODULE_ARGS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.python = str(python)
        self.state_file = Path(state_file)
        self.log_file = Path(log_file)
        self.jobs_dir = Path(jobs_dir) if jobs_dir else None
        self.module_args = tuple(module_args)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.client: BackendClient | None = None
        self._deferred = False  # launch waits for a server of this state file that is stopping

    @property
    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [self.python, *self.module_args, "--port", "0", "--state-file", str(self.state_file)]
        if self.jobs_dir is not None:
            command += ["--jobs-dir", str(self.jobs_dir)]
        return command

    def is_alive(self) -> bool:
        """Whether the backend process still runs."""
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and _pid_alive(self.pid)

    def adopt_running(self) -> BackendClient | None:
        """Reuse a backend already serving with this state file (answering health), if there is one."""
        state = read_state_file(self.state_file)
        if state is None or not isinstance(state.get("pid"), int) or not _pid_alive(state["pid"]):
            return None
        if state["pid"] in stopping_pids():  # stopped a moment ago and still shutting down
            return None
        client = BackendClient(state["url"], state["token"])
        try:
            client.health(timeout=0.3)  # loopback: a live server answers in milliseconds
        except BackendError:
            return None
        self.pid, self.client = state["pid"], client
        return client

    def launch(self) -> BackendClient | None:
        """Start the server process and return at once (it needs seconds to answer).

        Returns the client when a backend is already serving (this one, or one a previous session
        left running with the same state file); otherwise None, and ``check_ready`` says when the
        new process answers. Raises ``BackendStartError`` when the interpreter is missing or cannot
        be run.
        """
        if self.is_alive() and self.client is not None:
            return self.client
        adopted = self.adopt_running()
        if adopted is not None:
            return adopted
        if self.process is not None and self.process.poll() is None:
            return None  # launched earlier, still coming up
        if not self.python or not Path(self.python).is_file():
            raise BackendStartError(
                f"Backend Python not found: {self.python or '(not set)'}; set the path of the Python "
                "of the environment where Mono2Mesh's backend is installed in the add-on preferences"
            )
        if self.state_file in _stopping_state_files():
            # the previous server still holds the jobs folder: ``check_ready`` spawns once it is gone
            self._deferred = True
            return None
        self._spawn()
        return None

    def _spawn(self) -> None:
        self._deferred = False
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.unlink(missing_ok=True)
        with open(self.log_file, "wb") as log:
            try:
                self.process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
            except OSError as error:
                raise BackendStartError(f"Cannot run {self.python}: {error.strerror or error}") from error
        self.pid = self.process.pid

    def check_ready(self) -> BackendClient | None:
        """One non-blocking look at a launched server: its client once it answers health, else None.

        Raises ``BackendStartError`` when the process has exited (with the end of its log) or was
        never launched. The health request goes to the loopback address with a 0.3 s timeout.
        """
        if self.client is not None and self.is_alive():
            return self.client
        if self._deferred:
            if self.state_file in _stopping_state_files():
                return None
            self._spawn()
            return None
        if self.process is None:
            raise BackendStartError("The local backend was not started")
        code = self.process.poll()
        if code is not None:
            self.process = None
            self.pid = None
            raise BackendStartError(
                f"The backend exited at start-up with status {code}: {self.log_tail()} (log: {self.log_file})"
            )
        state = read_state_file(self.state_file)
        if state is None or state.get("pid") != self.pid:
            return None
        client = BackendClient(state["url"], state["token"])
        try:
            client.health(timeout=0.3)
        except BackendError:
            return None
        self.client = client
        return client

    def start(self, timeout: float = 120.0) -> BackendClient:
        """Start the server and wait until it answers health; return its client (blocking: for
        scripts and background mode; the add-on's UI uses ``launch`` and ``check_ready``).

        Raises ``BackendStartError`` when the interpreter is missing, the process exits early or the
        server does not answer within ``timeout`` seconds (the process is then stopped).
        """
        client = self.launch()
        deadline = time.monotonic() + timeout
        while client is None:
            if time.monotonic() >= deadline:
                self.stop()
                raise BackendStartError(
                    f"The backend did not answer within {timeout:g} s (log: {self.log_file}): "
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)
            client = self.check_ready()
        return client

    def stop(self, timeout: float = 10.0, *, wait: bool = True) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout`` seconds); no error if gone.

        With ``wait=False`` it returns at once: SIGTERM is sent here and a daemon thread waits and
        kills; ``reap_at_exit`` (at interpreter exit) makes sure such a process does not outlive us.
        """
        process, pid = self.process, self.pid
        self.process, self.pid, self.client = None, None, None
        self._deferred = False
        if not wait:
            _stop_in_background(process, pid, timeout, self.state_file)
            return
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
            return
        if pid is not None and _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
                end = time.monotonic() + timeout
                while _pid_alive(pid) and time.monotonic() < end:
                    time.sleep(0.05)
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int = 5) -> str:
        """The last ``lines`` lines of the log, joined with " | " (empty if there is none)."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(line for line in text.strip().splitlines()[-lines:])


# -- stopping without blocking --------------------------------------------------------------------
# processes sent SIGTERM by ``stop(wait=False)`` whose reaper thread has not seen them exit yet
_stopping: dict[int, tuple[subprocess.Popen[bytes] | None, Path]] = {}
_stopping_lock = threading.Lock()


def _stop_in_background(
    process: subprocess.Popen[bytes] | None, pid: int | None, timeout: float, state_file: Path
) -> None:
    """SIGTERM now (instant), then a daemon thread waits up to ``timeout`` s and SIGKILLs."""
    if process is not None:
        if process.poll() is not None:
            return
        pid = process.pid
        try:
            process.terminate()
        except OSError:
            return
    elif pid is None or not _pid_alive(pid):
        return
    else:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
    with _stopping_lock:
        _stopping[pid] = (process, state_file)
    thread = threading.Thread(
        target=_reap, args=(process, pid, timeout), name=f"mono2mesh-stop-{pid}", daemon=True
    )
    thread.start()


def _exited(process: subprocess.Popen[bytes] | None, pid: int) -> bool:
    return process.poll() is not None if process is not None else not _pid_alive(pid)


def _reap(process: subprocess.Popen[bytes] | None, pid: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    try:
        while not _exited(process, pid) and time.monotonic() < end:
            time.sleep(0.05)
        if not _exited(process, pid):
            if process is not None:
                process.kill()
                process.wait(timeout)
            else:
                os.kill(pid, signal.SIGKILL)
    except (OSError, subprocess.TimeoutExpired):
        pass
    finally:
        with _stopping_lock:
            _stopping.pop(pid, None)


def stopping_pids() -> list[int]:
    """Processes being stopped in the background (SIGTERM sent, not seen exiting yet)."""
    with _stopping_lock:
        return list(_stopping)


def _stopping_state_files() -> list[Path]:
    with _stopping_lock:
        return [state_file for _process, state_file in _stopping.values()]


def reap_at_exit(grace: float = 0.2, kill_after: float = 10.0) -> None:
    """At interpreter exit (``atexit``): processes still stopping get ``grace`` seconds to exit.

    The reaper threads are daemons and die with the interpreter, so a process still running after
    the grace is handed to a detached ``sh`` that SIGKILLs it ``kill_after`` seconds later (on
    Windows ``terminate`` already killed it). Blocks at most ``grace`` seconds.
    """
    end = time.monotonic() + grace
    with _stopping_lock:
        left = {pid: process for pid, (process, _state_file) in _stopping.items()}
    while left and time.monotonic() < end:
        left = {pid: proc for pid, proc in left.items() if not _exited(proc, pid)}
        if left:
            time.sleep(0.02)
    for pid, process in left.items():
        if _exited(process, pid) or os.name != "posix":
            continue
        try:
            subprocess.Popen(
                ["/bin/sh", "-c", f"sleep {kill_after:g}; kill -KILL {pid} 2>/dev/null"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            pass
