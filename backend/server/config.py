"""Server settings: one frozen dataclass and its defaults, written once.

``ServerConfig`` is what ``create_app`` and ``mono2mesh serve`` consume. The state file defaults to
``<data dir>/server.json`` and the jobs folder to ``<data dir>/jobs``, the data folder being
``backend.paths.data_dir()`` (``$MONO2MESH_HOME`` when set, else ``~/.local/share/mono2mesh``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_UPLOAD_MB = 32.0
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_IDLE_TIMEOUT = 10.0
DEFAULT_MEMORY_SHARE = 0.5
"""Share of the machine's memory that ``mono2mesh serve`` budgets for jobs by default."""
TOKEN_ENV = "MONO2MESH_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine: ``localhost`` or a loopback address (127/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """Whether ``host`` is an all-interfaces address (0.0.0.0 or ::)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one backend server.

    Attributes:
        jobs_dir: folder holding one sub-folder per job (created if missing).
        token: the bearer token every request but ``/v1/health`` must carry.
        host: the address the socket binds; the Host header must name it (or localhost for loopback).
        port: the bound port (0 only before binding; ``create_app`` needs the real one for the Host check).
        device: torch device of the worker ("auto", "cpu", "cuda", "cuda:N", "mps").
        max_upload_bytes: cap on a request body (Content-Length and streamed bytes).
        max_pixels: cap on the pixel count of an uploaded image or mask.
        progress_write_interval: least seconds between two status.json writes for progress alone.
        long_poll_max: most seconds ``GET /v1/jobs/{id}?wait=S`` blocks.
        cancel_wait: most seconds ``POST /v1/jobs/{id}/cancel`` waits for a running job to stop.
        isolate_jobs: run jobs in a child process the worker kills when a canceled job does not stop
            within ``cancel_grace`` seconds (``backend.server.isolation``); ``mono2mesh serve`` sets it.
        cancel_grace: see ``isolate_jobs``.
        memory_budget_bytes: the most memory the running job and the image checks of submissions may
            need together, by ``backend.server.budget``'s estimates; None: no budget.
        idle_timeout: seconds a connection may stay silent while the server waits for it (an idle
            keep-alive connection, an unfinished request head or body) before it is closed.
        remote_hosts: with a wildcard ``host`` (--allow-remote), the host names (without port) clients
            use; the Host header is then checked against them. Empty: any Host is accepted.
        mask_model: the salient-object mask model file jobs use (``serve --mask-model``); None: jobs
            look it up when they run ($MONO2MESH_MASK_MODEL, else the cache folder).
        mask_model_url: the base URL ``POST /v1/mask-model/download`` fetches ``<file name>`` from
            (``serve --mask-model-url``, e.g. a mirror or a ``file://`` folder); None: the public one.
    """

    jobs_dir: Path
    token: str
    host: str = DEFAULT_HOST
    port: int = 0
    device: str = "auto"
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20)
    max_pixels: int = DEFAULT_MAX_PIXELS
    progress_write_interval: float = 0.25
    long_poll_max: float = 30.0
    cancel_wait: float = 2.0
    isolate_jobs: bool = False
    cancel_grace: float = 1.0
    memory_budget_bytes: int | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    remote_hosts: tuple[str, ...] = ()
    mask_model: Path | None = None
    mask_model_url: str | None = None

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the token must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_upload_bytes <= 0:
            raise ValueError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise ValueError(f"memory_budget_bytes must be positive, got {self.memory_budget_bytes}")
        if not 0 < self.idle_timeout <= 3600:
            raise ValueError(f"idle_timeout must be in (0, 3600] seconds, got {self.idle_timeout}")

    def allowed_hosts(self) -> frozenset[str] | None:
        """Host header values (lower case, with the port) this server answers; None accepts any.

        A loopback bind accepts ``127.0.0.1:<port>``, ``localhost:<port>`` and ``[::1]:<port>`` besides
        the bound host itself; a wildcard bind (0.0.0.0, ::, only with --allow-remote) cannot know the
        names clients use: it accepts the ``remote_hosts`` given (and the loopback names), or, with
        none given, any Host, relying on the token alone (``mono2mesh serve`` warns about that).
        """
        if is_wildcard(self.host):
            if not self.remote_hosts:
                return None
            names = {"127.0.0.1", "localhost", "[::1]"}
            names |= {_bracketed(name.lower()) for name in self.remote_hosts}
            return frozenset(f"{name}:{self.port}" for name in names)
        host = self.host.lower()
        names = {f"[{host}]" if ":" in host and not host.startswith("[") else host}
        if is_loopback(host):
            names |= {"127.0.0.1", "localhost", "[::1]"}
        hosts = {f"{name}:{self.port}" for name in names}
        return frozenset(hosts)

    def url_host(self) -> str:
        """The host part of the URL a client on this machine uses (brackets for IPv6)."""
        if is_wildcard(self.host):
            return "[::1]" if ":" in self.host else "127.0.0.1"
        if self.host.lower() == "localhost":
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host

    @property
    def url(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.url_host()}:{self.port}"


def _bracketed(host: str) -> str:
    """An IPv6 address in brackets, as a Host header writes it; other names unchanged."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def physical_memory() -> int | None:
    """The machine's memory in bytes, or None where it cannot be read."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None
