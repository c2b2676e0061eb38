"""``mono2mesh serve``: run the backend server until SIGINT or SIGTERM.

Start-up: check the options (a non-loopback ``--host`` needs ``--allow-remote`` and gets a warning on
stderr; a wildcard ``--host`` (0.0.0.0, ::) without ``--allowed-host`` cannot check the Host header and
says so loudly: the token is then the only protection), resolve the device, create the jobs folder or
tighten it to mode 0700 (a warning on stderr when that fails), take the jobs folder's lock (one server
per jobs folder), bind the socket (``--port 0`` picks a free port), build the app and serve it with
uvicorn. Once the socket is listening the state file is written, created with mode 0600 and renamed into
place (atomic), holding ``{"url", "token", "pid", "version", "jobs_dir"}``; ``GET /v1/health`` answers
from then on, with ``ready`` false until the worker has loaded its models. On SIGINT/SIGTERM the server
stops (a running job fails with "interrupted by backend shutdown", queued jobs stay queued for the next
start) and removes the state file if it is still its own.

Jobs run in a child process (``ServerConfig.isolate_jobs``): a cancel acts within about a second in any
stage. Submissions and jobs share a memory budget (``--memory-budget-gb``, default half the machine's
memory). Connections silent for ``--idle-timeout`` seconds (default 10) are closed, whether idle
between requests (keep-alive), in an unfinished request head or in a stalled body; at most
``MAX_CONNECTIONS`` are served at once (uvicorn answers 503 beyond).

Jobs whose photo has neither a mask nor an alpha channel are segmented by the salient-object mask model
when one is found at job time (``--mask-model PATH``, else ``$MONO2MESH_MASK_MODEL``, else the cache
folder), else by GrabCut. The server downloads a model only when ``POST /v1/mask-model/download`` asks,
from ``--mask-model-url`` (a base URL; default the public release) into the cache folder.

Exit status 0 after a clean shutdown, 2 for bad options or a busy jobs folder, 1 when the server could
not start.

The token comes from ``--token``, else ``$MONO2MESH_TOKEN``, else ``secrets.token_urlsafe(32)``; prefer the
environment variable to the option, which other users can read in the process list.

FastAPI, uvicorn, the app and the methods are imported by ``main`` when the server starts: ``mono2mesh``
builds its parser from ``add_arguments``, and no other command should pay for them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from backend import __version__
from backend.paths import data_dir
from backend.server.config import (
    DEFAULT_HOST,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_MEMORY_SHARE,
    TOKEN_ENV,
    ServerConfig,
    is_loopback,
    is_wildcard,
    physical_memory,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from backend.server.catalog import MethodFactory
    from backend.server.worker import JobRunner

STATE_FILE_NAME = "server.json"
JOBS_DIR_NAME = "jobs"
LOCK_FILE_NAME = ".lock"
MAX_CONNECTIONS = 100
"""Connections (and tasks) served at once; uvicorn answers 503 to more."""
KEEP_ALIVE_SECONDS = 5
"""uvicorn's keep-alive timeout (the idle timeout closes silent connections in every other state)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mono2mesh serve``."""
    parser.add_argument("--host", default=None, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than the loopback interface (anyone who has the token can use it)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="where to write url, token and pid once listening (default <data dir>/server.json; "
        "data dir = $MONO2MESH_HOME or ~/.local/share/mono2mesh)",
    )
    parser.add_argument(
        "--jobs-dir", type=Path, default=None, help="folder of the job folders (default <data dir>/jobs)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (default: cuda, then mps, then cpu), cpu, cuda, mps",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest request body in MB (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--max-pixels",
        type=float,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest image in pixels (default {DEFAULT_MAX_PIXELS:.0e})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"the bearer token (default ${TOKEN_ENV}, else a random one); it is written to the state file",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="with --allow-remote and a wildcard --host (0.0.0.0, ::): a host name or address clients "
        "use to reach this server; the Host header must then name one of them (repeatable). Without "
        "it such a server accepts any Host header and the token is its only protection",
    )
    parser.add_argument(
        "--memory-budget-gb",
        type=float,
        default=None,
        help="memory the running job and the checks of new uploads may need together, by the "
        "server's estimates; a job that can never fit is refused with 413 (default: half of this "
        "machine's memory)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds a connection may stay silent (idle, or in an unfinished request) before it is "
        f"closed (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.add_argument(
        "--mask-model",
        type=Path,
        default=None,
        help="salient-object mask model (ONNX) for photos without mask or alpha (default "
        "$MONO2MESH_MASK_MODEL, else the cache folder <data dir>/models/mask; else GrabCut)",
    )
    parser.add_argument(
        "--mask-model-url",
        default=None,
        metavar="URL",
        help="base URL (http, https or file://) POST /v1/mask-model/download fetches <model file> from "
        "(default the public rembg release)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log level of the server and its HTTP layer (default warning)",
    )


def main(
    args: argparse.Namespace,
    *,
    method_factory: MethodFactory | None = None,
    job_runner: JobRunner | None = None,
) -> int:
    """Run ``mono2mesh serve`` with parsed ``args`` (module docstring); returns the exit status.

    ``method_factory`` and ``job_runner`` go to ``create_app`` (defaults: the registry, the pipeline).
    """
    from backend.methods.base import MethodError
    from backend.methods.registry import resolve_device
    from backend.server.app import create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        host, token, state_file, jobs_dir, max_upload, max_pixels = _checked_options(args)
    except ValueError as error:
        print(f"mono2mesh serve: {error}", file=sys.stderr)
        return 2
    if not is_loopback(host):
        print(
            f"mono2mesh serve: WARNING: binding {host}, reachable from other machines; anyone with the "
            "token can run jobs and read results. Traffic is not encrypted.",
            file=sys.stderr,
        )
    if is_wildcard(host) and not args.allowed_host:
        print(
            f"mono2mesh serve: WARNING: binding the wildcard address {host} without --allowed-host: the "
            "Host header cannot be checked, so DNS-rebinding protection is OFF and the bearer token is "
            "the ONLY protection. Name the host names clients use with --allowed-host NAME.",
            file=sys.stderr,
        )
    try:
        budget = _memory_budget(args.memory_budget_gb)
        if not 0 < args.idle_timeout <= 3600:
            raise ValueError(f"--idle-timeout must be in (0, 3600] seconds, got {args.idle_timeout:g}")
        mask_model, mask_model_url = _mask_model_options(args)
    except ValueError as error:
        print(f"mono2mesh serve: {error}", file=sys.stderr)
        return 2
    try:
        device = str(resolve_device(args.device))
    except MethodError as error:
        print(f"mono2mesh serve: {error}", file=sys.stderr)
        return 2
    from backend.server.jobs import secure_folder

    try:
        warning = secure_folder(jobs_dir)
    except OSError as error:
        print(f"mono2mesh serve: cannot create the jobs folder {jobs_dir}: {error}", file=sys.stderr)
        return 2
    if warning:
        print(f"mono2mesh serve: WARNING: {warning}", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_locked(jobs_dir / LOCK_FILE_NAME))
            sock = stack.enter_context(_bound_socket(host, args.port))
        except (OSError, RuntimeError) as error:
            print(f"mono2mesh serve: {error}", file=sys.stderr)
            return 2
        config = ServerConfig(
            jobs_dir=jobs_dir,
            token=token,
            host=host,
            port=sock.getsockname()[1],
            device=device,
            max_upload_bytes=max_upload,
            max_pixels=max_pixels,
            isolate_jobs=True,
            memory_budget_bytes=budget,
            idle_timeout=args.idle_timeout,
            remote_hosts=tuple(args.allowed_host),
            mask_model=mask_model,
            mask_model_url=mask_model_url,
        )
        state = {
            "url": config.url,
            "token": token,
            "pid": os.getpid(),
            "version": __version__,
            "jobs_dir": str(jobs_dir.resolve()),
        }
        stack.callback(_remove_state_file, state_file, os.getpid())
        app = create_app(config, method_factory=method_factory, job_runner=job_runner)
        started = _serve(app, config, sock, args.log_level, lambda: write_state_file(state_file, state))
    return 0 if started else 1


def write_state_file(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as JSON to ``path``: a new file created with mode 0600, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(state, file, indent=1)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _checked_options(args: argparse.Namespace) -> tuple[str, str, Path, Path, int, int]:
    host = args.host or DEFAULT_HOST
    if not is_loopback(host) and not args.allow_remote:
        raise ValueError(f"--host {host} is not a loopback address; add --allow-remote to really bind it")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise ValueError("--max-upload-mb and --max-pixels must be positive")
    token = args.token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)
    if token != token.strip() or any(char.isspace() for char in token):
        raise ValueError("the token must not contain white space")
    home = data_dir()
    state_file = (args.state_file or home / STATE_FILE_NAME).expanduser().absolute()
    jobs_dir = (args.jobs_dir or home / JOBS_DIR_NAME).expanduser().absolute()
    return host, token, state_file, jobs_dir, int(args.max_upload_mb * 2**20), int(args.max_pixels)


@contextlib.contextmanager
def _bound_socket(host: str, port: int) -> Iterator[socket.socket]:
    """A TCP socket bound (not yet listening) to ``host``:``port``; localhost means 127.0.0.1."""
    address = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every keep-alive answer waits ~40 ms (Nagle's algorithm against the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let another process steal the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as error:
            raise OSError(f"cannot bind {host}:{port}: {error.strerror or error}") from error
        sock.set_inheritable(True)
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (POSIX ``flock``; no lock where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: one server per jobs folder is then up to the user
        yield
        return
    file: IO[str] = open(path, "a+")
    try:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"another backend server is using the jobs folder {path.parent}") from None
        yield
    finally:
        file.close()


def _remove_state_file(path: Path, pid: int) -> None:
    """Remove the state file if it still names this process (another server may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()


def _mask_model_options(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """``--mask-model`` (must be a file; made absolute) and ``--mask-model-url`` (http, https or file)."""
    from urllib.parse import urlsplit

    mask_model = getattr(args, "mask_model", None)
    if mask_model is not None:
        mask_model = Path(mask_model).expanduser().absolute()
        if not mask_model.is_file():
            raise ValueError(f"the --mask-model file {mask_model} does not exist")
    url = getattr(args, "mask_model_url", None)
    if url is not None and urlsplit(url).scheme.lower() not in ("http", "https", "file"):
        raise ValueError(f"--mask-model-url must be an http, https or file URL, got {url!r}")
    return mask_model, url


def _memory_budget(gigabytes: float | None) -> int | None:
    """The budget in bytes: ``gigabytes``, or half the machine's memory (None where unknown)."""
    if gigabytes is not None:
        if not gigabytes > 0:
            raise ValueError(f"--memory-budget-gb must be positive, got {gigabytes:g}")
        return int(gigabytes * 2**30)
    total = physical_memory()
    return None if total is None else int(total * DEFAULT_MEMORY_SHARE)


def _serve(
    app: FastAPI, config: ServerConfig, sock: socket.socket, log_level: str, on_listening: Callable[[], None]
) -> bool:
    """Serve until a signal; calls ``on_listening`` once the socket accepts. False if it never started."""
    import uvicorn

    from backend.server.connections import idle_timeout_protocol

    url = config.url
    failed = False

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            nonlocal failed
            await super().startup(sockets)
            if self.started:
                try:
                    on_listening()
                except OSError as error:
                    print(f"mono2mesh serve: cannot write the state file: {error}", file=sys.stderr)
                    failed = self.should_exit = True
                    return
                print(f"mono2mesh backend listening on {url}", file=sys.stderr, flush=True)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.state.store.wake_all()  # long-polls answer now instead of holding the shutdown
            await super().shutdown(sockets)

    server = Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=log_level == "debug",
            timeout_graceful_shutdown=3,
            lifespan="on",
            proxy_headers=False,  # no proxy in front: X-Forwarded-* headers are not trusted
            http=idle_timeout_protocol(config.idle_timeout),
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            limit_concurrency=MAX_CONNECTIONS,
        )
    )
    # uvicorn handles SIGINT/SIGTERM while it serves, then re-raises the signal with the handler it
    # found; with these no-op handlers that lets main() clean up and return instead of dying.
    previous = {
        sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits this way when the app's start-up fails
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server.started and not failed
