"""The real server as a subprocess, over HTTP: lifecycle with ``fit``, cancel, security, bad input,
many jobs, and a kill -9 in the middle of a job followed by a restart on the same jobs folder.

The ``fit`` tests run ``python -m backend.server``; the many-jobs and restart tests run the same command
over the fake method (``tests.backend.server.fakes``), whose jobs take milliseconds or as long as asked.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import socket
import stat
import subprocess
import sys
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
from tests.backend.server.probe import run_probe
from tests.backend.server.support import (
    ROOT,
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
        "--memory-budget-gb",
        "16",  # texture_size 4096 (~14 GiB by the estimate) is allowed: the cancel test uses it
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
    ("method", "options", "status", "words"),
    [
        ("nope", {}, 400, "unknown method"),
        ("fit", {"iterationz": 5}, 422, "invalid options for fit: iterationz"),
        ("fit", '{"laplacian_weight": Infinity}', 422, "Infinity is not allowed"),
        ("fit", '{"chamfer_weight": 1e309}', 422, "chamfer_weight: inf is not a finite number"),
        ("fit", {"laplacian_weight": 1e300}, 422, "laplacian_weight: Input should be less than"),
        ("fit", {"seed": 2**64}, 422, "seed: Input should be less than"),
        ("fit", "[" * 20_000 + "]" * 20_000, 422, "nested 20000 levels deep"),
        ("fit", '{"seed": ' + "1" * 4301 + "}", 422, "out of range"),
    ],
    ids=["method", "unknown", "Infinity", "1e309", "1e300", "2^64", "depth", "digits"],
)
def test_unknown_method_is_400_and_bad_options_422(
    api: httpx.Client, method: str, options: dict[str, Any] | str, status: int, words: str
) -> None:
    response = submit(api, png_bytes(disc_image()), method=method, options=options)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_the_probe_gets_no_500(real_server: ServerProcess) -> None:
    """The hostile client's probe (``tests.backend.server.probe``) over ``fit``, its per-option cases for
    three options (an integer, a loss weight, the seed; the in-process tests cover the rest): every
    malformed input answered 4xx, the accepted jobs (the range bounds) canceled at once."""
    fields = ["iterations", "laplacian_weight", "seed"]
    result = run_probe(real_server.url, real_server.token, job_timeout=0.0, fields=fields)
    assert result.requests > 80 and result.statuses[422] > 50, result.summary()
    assert result.server_errors == [], result.summary()
    assert result.internal_error_jobs == [], result.summary()
    assert api_is_healthy(real_server)


def api_is_healthy(server: ServerProcess) -> bool:
    return httpx.get(f"{server.url}/v1/health").json()["status"] == "ok"


def test_a_fit_with_every_weight_at_its_maximum_does_not_fail_with_an_internal_error(
    api: httpx.Client,
) -> None:
    from backend.methods.fit import FitOptions

    schema = FitOptions.model_json_schema()["properties"]
    heaviest = {name: spec["maximum"] for name, spec in schema.items() if name.endswith("_weight")}
    assert len(heaviest) >= 5
    response = submit(api, png_bytes(disc_image()), options={**SMALL_FIT, **heaviest, "seed": 2**31 - 1})
    assert response.status_code == 202, response.text
    job = wait_for(api, response.json()["id"], timeout=120)
    assert job["status"] == "succeeded" or "internal error" not in str(job["error"]), job


def test_cancel_at_the_heaviest_options_acts_within_2_s_in_the_texture_stage(api: httpx.Client) -> None:
    """texture_size 4096 (a 4096 x 8192 texture, ~13 GiB to make) and crop_size 2048: the texture stage
    spends minutes in single OpenCV/torch calls; the job's process is killed after the grace second."""
    options = {**SMALL_FIT, "texture_size": 4096, "crop_size": 2048}
    response = submit(api, png_bytes(disc_image(256)), options=options)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    job = wait_for(api, job_id, {"running"})
    deadline = time.monotonic() + 120
    while job["stage"] != "texture":
        assert job["status"] == "running" and time.monotonic() < deadline, job
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 0.2}).json()
    time.sleep(0.5)  # inside the texture's projection
    started = time.monotonic()
    job = api.post(f"/v1/jobs/{job_id}/cancel").json()
    while job["status"] == "running":
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 0.2}).json()
    elapsed = time.monotonic() - started
    assert job["status"] == "canceled", job
    assert elapsed < 2.0, f"cancel took {elapsed:.2f} s"
    after = submit(api, png_bytes(disc_image()), options=SMALL_FIT).json()["id"]
    assert wait_for(api, after, timeout=120)["status"] == "succeeded"  # a fresh job process


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


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_silent_and_half_open_connections_are_closed(
    spawn_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """With --idle-timeout 1: connections that send nothing, half a request head, or stop in the
    middle of a body are closed within about a second; a long-poll is not cut; the jobs folder, made
    with mode 0777 by someone else, is tightened to 0700; a queued job whose folder vanished fails."""
    jobs = tmp_path / "open-jobs"
    jobs.mkdir()
    jobs.chmod(0o777)
    server = spawn_server("--idle-timeout", "1", fake=True, jobs_dir=jobs)
    assert stat.S_IMODE(jobs.stat().st_mode) == 0o700
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    sockets = []
    for index in range(30):
        sock = socket.create_connection((host, int(port)))
        if index % 3 == 1:
            sock.sendall(f"GET /v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bea".encode())
        elif index % 3 == 2:
            head = (
                f"POST /v1/jobs HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {server.token}\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n"
            )
            sock.sendall(head.encode())
        sockets.append(sock)
    started = time.monotonic()
    with server.client() as client, ThreadPoolExecutor(max_workers=1) as pool:
        image = png_bytes(disc_image())
        slow = submit(client, image, options={"steps": 100_000, "delay": 0.01}).json()["id"]
        poll = pool.submit(client.get, f"/v1/jobs/{slow}", params={"wait": 2.5})
        closed = [_closed_by_server(sock, max(0.1, started + 4.0 - time.monotonic())) for sock in sockets]
        assert closed == [True] * len(sockets)
        assert time.monotonic() - started < 5.0
        assert poll.result().status_code == 200  # waiting on the server, not silent: kept

        # A queued job whose folder vanished: failed with the reason, and cancel reaches an end.
        queued = submit(client, image).json()["id"]
        shutil.rmtree(jobs / queued)
        client.post(f"/v1/jobs/{slow}/cancel")
        gone = wait_for(client, queued, timeout=30)
        assert gone["status"] == "failed" and "folder" in gone["error"]
        assert client.post(f"/v1/jobs/{queued}/cancel").status_code == 409
    for sock in sockets:
        sock.close()


def test_a_wildcard_bind_without_names_warns_that_the_token_is_the_only_protection(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "backend.server", "--host", "0.0.0.0", "--allow-remote"]
    command += ["--jobs-dir", str(tmp_path / "jobs"), "--memory-budget-gb", "-1"]  # stops after the checks
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "ONLY protection" in done.stderr and "--allowed-host" in done.stderr
    assert "--memory-budget-gb must be positive" in done.stderr
