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

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the token must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_upload_bytes <= 0:
            raise ValueError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive, got {self.max_pixels}")

    def allowed_hosts(self) -> frozenset[str] | None:
        """Host header values (lower case, with the port) this server answers; None accepts any.

        A loopback bind accepts ``127.0.0.1:<port>``, ``localhost:<port>`` and ``[::1]:<port>`` besides
        the bound host itself; a wildcard bind (0.0.0.0, ::, only with --allow-remote) cannot know the
        names clients use and accepts any Host, relying on the token alone.
        """
        if is_wildcard(self.host):
            return None
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
