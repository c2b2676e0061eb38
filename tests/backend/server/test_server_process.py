"""The real server as a subprocess, over HTTP: lifecycle with ``fit``, cancel, security, bad input,
many jobs, and a kill -9 in the middle of a job followed by a restart on the same jobs folder.

The ``fit`` tests run ``python -m backend.server``; the many-jobs and restart tests run the same command
over the fake method (``tests.backend.server.fakes``), whose jobs take milliseconds or as long as asked.
"""

from __future__ import annotations

import io
import json
import signal
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from backend.geometry.io import load_glb
from backend.server.jobs import INTERRUPTED
from tests.backend.server.support import (
    SMALL_FIT,
    TERMINAL,
    ServerProcess,
    disc_image,
    png_bytes,
    submit,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``python -m backend.server`` for this module: 1 MB bodies, 1e6 pixels at most."""
    import os
    import subprocess
    import sys

    from tests.backend.server.support import ROOT

    folder = tmp_path_factory.mktemp("real")
    log = folder / "server.log"
    command = [
        sys.executable,
        "-m",
        "backend.server",
        "--port",
        "0",
        "--state-file",
        str(folder / "state.json"),
    ]
    command += [
        "--jobs-dir",
        str(folder / "jobs"),
        "--device",
        "cpu",
        "--max-upload-mb",
        "1",
        "--max-pixels",
        "1e6",
    ]
    env = {key: value for key, value in os.environ.items() if key != "MONO2MESH_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(process, folder / "state.json", folder / "jobs", log)
    try:
        server.wait_ready()
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.fixture
def api(real_server: ServerProcess) -> Iterator[httpx.Client]:
    with real_server.client() as client:
        yield client


def test_state_file_is_private_and_names_this_server(real_server: ServerProcess) -> None:
    assert stat.S_IMODE(real_server.state_file.stat().st_mode) == 0o600
    state = real_server.state
    assert set(state) == {"url", "token", "pid", "version", "jobs_dir"}
    assert state["pid"] == real_server.process.pid
    assert state["url"].startswith("http://127.0.0.1:") and not state["url"].endswith(":0")
    assert Path(state["jobs_dir"]) == real_server.jobs_dir.resolve()
    assert len(state["token"]) >= 40


def test_fit_job_end_to_end(api: httpx.Client, tmp_path: Path) -> None:
    response = submit(api, png_bytes(disc_image()), options=SMALL_FIT)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    seen: list[tuple[float, str | None]] = []
    while True:
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 2}).json()
        seen.append((job["progress"], job["stage"]))
        if job["status"] in TERMINAL:
            break
    assert job["status"] == "succeeded", job
    progress = [fraction for fraction, _ in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert job["options"]["iterations"] == 5 and job["method"] == "fit"

    glb = tmp_path / "result.glb"
    glb.write_bytes(api.get(job["results"]["glb"]).content)
    mesh = load_glb(glb)
    assert mesh.num_vertices == 642 and mesh.num_faces == 1280
    report = api.get(job["results"]["report"]).json()
    assert report["method"] == "fit" and report["num_faces"] == 1280
    assert {"mask", "shape", "texture", "export", "total"} <= set(report["timings"])
    assert 0.0 <= report["silhouette_iou"] <= 1.0
    assert report["photo"] == {"width": 64, "height": 64, "format": "PNG", "mask_source": "grabcut"}
    preview = Image.open(io.BytesIO(api.get(job["results"]["preview"]).content))
    assert preview.format == "PNG" and preview.width == 6 * preview.height
    texture = Image.open(io.BytesIO(api.get(job["results"]["texture"]).content))
    assert texture.size == (64, 32)
    mask = Image.open(io.BytesIO(api.get(job["results"]["mask"]).content))
    assert mask.size == (64, 64)


def test_cancel_stops_a_running_fit_within_a_second(api: httpx.Client) -> None:
    options = {**SMALL_FIT, "iterations": 20_000}
    job_id = submit(api, png_bytes(disc_image()), options=options).json()["id"]
    job = wait_for(api, job_id, {"running"})
    while job["stage"] != "shape":
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 1}).json()
    started = time.monotonic()
    response = api.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    job = response.json()
    while job["status"] == "running":
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 1}).json()
    elapsed = time.monotonic() - started
    assert job["status"] == "canceled" and job["error"] is None
    assert elapsed < 1.5, f"stopping took {elapsed:.2f} s"
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert api.get(f"/v1/jobs/{job_id}/result.glb").status_code == 409


def test_tokens(real_server: ServerProcess) -> None:
    with httpx.Client(base_url=real_server.url) as anonymous:
        assert anonymous.get("/v1/health").status_code == 200
        assert anonymous.get("/v1/methods").status_code == 401
        assert anonymous.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert anonymous.post("/v1/jobs", files={"image": ("a.png", b"x")}).status_code == 401
        token = {"Authorization": f"Bearer {real_server.token}"}
        assert anonymous.get("/v1/methods", headers=token).json()["methods"][0]["name"] == "fit"


def test_a_foreign_host_header_is_refused(api: httpx.Client, real_server: ServerProcess) -> None:
    port = real_server.url.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{int(port) + 1}"):
        response = api.get("/v1/jobs", headers={"Host": host})
        assert response.status_code == 400 and "Host" in response.json()["detail"]
    assert api.get("/v1/jobs", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_an_oversize_body_is_413(api: httpx.Client) -> None:
    response = submit(api, png_bytes(disc_image()) + bytes(2 * 2**20))
    assert response.status_code == 413
    assert "limit of 1 MB" in response.json()["detail"]
    assert api.get("/v1/health").status_code == 200


def _too_many_pixels() -> bytes:
    return png_bytes(Image.new("RGB", (1001, 1000), (200, 30, 30)))


@pytest.mark.parametrize(
    ("image", "mask", "status"),
    [
        (b"plain text, no photo\n", None, 415),
        (_too_many_pixels(), None, 413),
        (png_bytes(disc_image(96))[:150], None, 422),
        (png_bytes(disc_image()), png_bytes(Image.new("L", (64, 64), 255)), 422),
        (png_bytes(disc_image()), png_bytes(Image.new("L", (64, 64), 0)), 422),
        (png_bytes(disc_image()), b"mask?", 415),
    ],
    ids=["text", "too-many-pixels", "truncated-png", "all-white-mask", "empty-mask", "text-mask"],
)
def test_bad_images_are_refused_up_front(
    api: httpx.Client, image: bytes, mask: bytes | None, status: int
) -> None:
    before = len(api.get("/v1/jobs").json()["jobs"])
    response = submit(api, image, mask=mask)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith("mask: " if mask else "image: ")
    assert len(api.get("/v1/jobs").json()["jobs"]) == before


@pytest.mark.parametrize(
    ("method", "options", "words"),
    [("nope", {}, "unknown method"), ("fit", {"iterationz": 5}, "invalid options for fit")],
)
def test_unknown_method_or_option_is_400(
    api: httpx.Client, method: str, options: dict[str, Any], words: str
) -> None:
    response = submit(api, png_bytes(disc_image()), method=method, options=options)
    assert response.status_code == 400
    assert words in response.json()["detail"]


# -- over the fake method -----------------------------------------------------------------------


def test_twenty_jobs_at_once_all_finish(spawn_server: Callable[..., ServerProcess]) -> None:
    server = spawn_server(fake=True)
    image = png_bytes(disc_image())
    with server.client() as client, ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: submit(client, image, options={"steps": 3}), range(20)))
        assert [response.status_code for response in responses] == [202] * 20
        ids = [response.json()["id"] for response in responses]
        assert len(set(ids)) == 20
        finished = list(pool.map(lambda job_id: wait_for(client, job_id), ids))
        assert [job["status"] for job in finished] == ["succeeded"] * 20
        listed = client.get("/v1/jobs").json()["jobs"]
        assert {job["id"] for job in listed} == set(ids)
        created = [job["created"] for job in listed]
        assert created == sorted(created, reverse=True)


def test_kill_9_then_restart(spawn_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    jobs = tmp_path / "shared-jobs"
    image = png_bytes(disc_image())
    first = spawn_server(fake=True, jobs_dir=jobs)
    with first.client() as client:
        done = wait_for(client, submit(client, image).json()["id"])
        assert done["status"] == "succeeded"
        glb = client.get(done["results"]["glb"]).content
        running = submit(client, image, options={"steps": 100_000, "delay": 0.01}).json()["id"]
        queued = [submit(client, image).json()["id"] for _ in range(2)]
        canceled = submit(client, image).json()["id"]
        assert client.post(f"/v1/jobs/{canceled}/cancel").json()["status"] == "canceled"
        wait_for(client, running, {"running"})
    first.stop(signal.SIGKILL)

    second = spawn_server(fake=True, jobs_dir=jobs)
    assert second.state["pid"] != first.state["pid"]
    with second.client() as client:
        assert client.get(f"/v1/jobs/{done['id']}").json()["status"] == "succeeded"
        assert client.get(f"/v1/jobs/{done['id']}/result.glb").content == glb
        interrupted = client.get(f"/v1/jobs/{running}").json()
        assert (interrupted["status"], interrupted["error"]) == ("failed", INTERRUPTED)
        assert [wait_for(client, job_id)["status"] for job_id in queued] == ["succeeded"] * 2
        assert client.get(f"/v1/jobs/{canceled}").json()["status"] == "canceled"

        # A clean stop with a job running and a client long-polling it: both let go at once.
        last = submit(client, image, options={"steps": 100_000, "delay": 0.01}).json()["id"]
        wait_for(client, last, {"running"})
        with ThreadPoolExecutor(max_workers=1) as pool:
            poll = pool.submit(client.get, f"/v1/jobs/{last}", params={"wait": 30})
            time.sleep(0.2)
            started = time.monotonic()
            assert second.stop(signal.SIGTERM) == 0
            assert time.monotonic() - started < 3.0
            assert poll.result().status_code == 200
    assert not second.state_file.exists()
    stopped = json.loads((jobs / last / "status.json").read_text())
    assert (stopped["status"], stopped["error"]) == ("failed", "interrupted by backend shutdown")
