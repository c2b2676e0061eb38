"""Helpers of the server tests: images, requests, and a server subprocess handle."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from backend.server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-token-0123456789"
TEST_PORT = 48213  # the port named in the Host header of in-process clients (nothing binds it)
TERMINAL = {"succeeded", "failed", "canceled"}
SMALL_FIT = {"iterations": 5, "resolution": 32, "hypotheses": 1, "texture_size": 32, "crop_size": 64}
"""Options that keep a real ``fit`` job to a few seconds on a CPU."""


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def disc_image(size: int = 64, mode: str = "RGB") -> Image.Image:
    """A red disc on a light grey background, ``size`` x ``size``."""
    background = (235, 235, 235, 255) if mode == "RGBA" else (235, 235, 235)
    image = Image.new(mode, (size, size), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(200, 40, 40))
    return image


def disc_mask(size: int = 64) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=255)
    return mask


def make_config(jobs_dir: Path, **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {"jobs_dir": jobs_dir, "token": TOKEN, "port": TEST_PORT, "device": "cpu"}
    settings.update(overrides)
    return ServerConfig(**settings)


def submit(
    client: TestClient | httpx.Client,
    image: bytes,
    *,
    options: dict[str, Any] | str | None = None,
    method: str | None = None,
    mask: bytes | None = None,
    mesh: bytes | None = None,
    filename: str = "disc.png",
) -> httpx.Response:
    files: dict[str, tuple[str, bytes, str]] = {"image": (filename, image, "application/octet-stream")}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    if mesh is not None:
        files["mesh"] = ("mesh.glb", mesh, "model/gltf-binary")
    data: dict[str, str] = {}
    if options is not None:
        data["options"] = options if isinstance(options, str) else json.dumps(options)
    if method is not None:
        data["method"] = method
    return client.post("/v1/jobs", files=files, data=data)


def wait_for(
    client: TestClient | httpx.Client,
    job_id: str,
    statuses: set[str] = TERMINAL,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Long-poll job ``job_id`` until its status is one of ``statuses``; its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/jobs/{job_id}", params={"wait": 1.0})
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")


# -- subprocesses -------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A backend server running in a subprocess, and what its state file says."""

    process: subprocess.Popen[bytes]
    state_file: Path
    jobs_dir: Path
    log: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.state["url"])

    @property
    def token(self) -> str:
        return str(self.state["token"])

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the state file, then for ``ready`` in the health answer."""
        deadline = time.monotonic() + timeout
        while not self.state_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}: {self.log.read_text()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no state file after {timeout} s: {self.log.read_text()}")
            time.sleep(0.05)
        self.state = json.loads(self.state_file.read_text())
        while not httpx.get(f"{self.url}/v1/health").json()["ready"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the server never became ready")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)
