"""Fixtures of the server tests: in-process clients over the fakes, and server subprocesses.

Every subprocess a test starts goes through ``spawn_server``, whose fixture kills what is still running
when the test ends, whether it passed or not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.server.app import create_app
from tests.backend.server.fakes import FakeFactory
from tests.backend.server.support import (
    ROOT,
    TEST_PORT,
    TOKEN,
    ServerProcess,
    disc_image,
    make_config,
    png_bytes,
)


@pytest.fixture
def disc_png() -> bytes:
    return png_bytes(disc_image())


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Builds started ``TestClient``s (lifespan run) over the fakes; closes them at the end.

    Arguments: ``factory`` (default a new ``FakeFactory``), ``runner`` (default the server's own
    ``PipelineRunner``), ``jobs_dir`` (default ``tmp_path/jobs``) and ``ServerConfig`` fields.
    """
    clients: list[TestClient] = []

    def build(
        factory: Any = None, runner: Any = None, jobs_dir: Path | None = None, **config: Any
    ) -> TestClient:
        app = create_app(
            make_config(jobs_dir or tmp_path / "jobs", **config),
            method_factory=factory if factory is not None else FakeFactory(),
            job_runner=runner,
        )
        client = TestClient(
            app,
            base_url=f"http://127.0.0.1:{TEST_PORT}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        client.__enter__()
        clients.append(client)
        return client

    try:
        yield build
    finally:
        for client in clients:
            client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Starts a server subprocess and waits until it is ready; kills every one still running after.

    ``spawn(*options, fake=False, jobs_dir=None)``: the real ``python -m backend.server``, or with
    ``fake=True`` the same command over the fakes (``python -m tests.backend.server.fakes``).
    """
    started: list[ServerProcess] = []

    def spawn(*options: str, fake: bool = False, jobs_dir: Path | None = None) -> ServerProcess:
        number = len(started)
        state_file = tmp_path / f"server-{number}.json"
        log = tmp_path / f"server-{number}.log"
        jobs = jobs_dir or tmp_path / "jobs"
        module = "tests.backend.server.fakes" if fake else "backend.server"
        command = [sys.executable, "-m", module, "--port", "0", "--state-file", str(state_file)]
        command += ["--jobs-dir", str(jobs), "--device", "cpu", *options]
        env = {key: value for key, value in os.environ.items() if key != "MONO2MESH_TOKEN"}
        env["PYTHONPATH"] = str(ROOT)
        with log.open("wb") as log_file:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        server = ServerProcess(process, state_file, jobs, log)
        started.append(server)
        server.wait_ready()
        return server

    try:
        yield spawn
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(10)
