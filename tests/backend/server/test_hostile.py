"""The app in process under hostile or unlucky conditions: damaged results, the memory budget, jobs in a
child process that is killed on cancel or dies, remote Host checks, and option schemas with finite
ranges. (The options probe and the connection timeouts run against a real server process in
``test_server_process.py``.)"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.server.budget import MemoryBudget, OverBudget, decode_bytes, image_pixels, job_bytes
from backend.server.config import ServerConfig
from backend.server.jobs import DAMAGED, RESULT_FILES
from tests.backend.server.support import TEST_PORT, TOKEN, png_bytes, submit, wait_for


def detail(response: Any) -> str:
    return str(response.json()["detail"])


# -- result integrity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "damage"),
    [("glb", "random"), ("report", "empty"), ("texture", "deleted")],
)
def test_a_damaged_result_is_410_never_served_and_fails_the_job(
    client: TestClient, disc_png: bytes, kind: str, damage: str
) -> None:
    job = wait_for(client, submit(client, disc_png).json()["id"])
    assert job["status"] == "succeeded"
    for other in RESULT_FILES:
        assert client.get(job["results"][other]).status_code == 200
    path = client.app.state.store.result_path(job["id"], kind)  # type: ignore[attr-defined]
    if damage == "random":
        path.write_bytes(os.urandom(path.stat().st_size))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    response = client.get(job["results"][kind])
    assert response.status_code == 410, response.text
    assert "damaged" in detail(response) and RESULT_FILES[kind][0] in detail(response)
    now = client.get(f"/v1/jobs/{job['id']}").json()
    assert now["status"] == "failed" and now["error"].startswith(DAMAGED) and now["results"] == {}
    again = client.get(job["results"]["preview"])  # the job no longer offers any result
    assert again.status_code == 409 and DAMAGED in detail(again)


# -- memory budget ----------------------------------------------------------------------------------


def test_the_estimates_grow_with_pixels_and_texture() -> None:
    assert decode_bytes(36_000_000) > 2**30  # the probe's 6000 x 6000 PNG: over 1 GiB to check
    small = job_bytes(64 * 64, {"texture_size": 512, "crop_size": 512})
    heavy = job_bytes(64 * 64, {"texture_size": 4096, "crop_size": 2048})
    assert small < 2**30 < 12 * 2**30 < heavy
    assert image_pixels(png_bytes(Image.new("RGB", (300, 200)))) == 60_000
    assert image_pixels(b"not an image") is None


def test_a_budget_holds_back_work_until_it_fits() -> None:
    budget = MemoryBudget(100)
    with pytest.raises(OverBudget, match="more than this server's budget"):
        with budget.reserve(101, "a job"):
            pass
    order: list[str] = []
    entered = threading.Event()

    def second() -> None:
        with budget.reserve(60, "second"):
            order.append("second in")

    with budget.reserve(60, "first"):
        thread = threading.Thread(target=second)
        thread.start()
        entered.wait(0.2)
        assert budget.used == 60 and order == []  # the second waits
        order.append("first out")
    thread.join(5)
    assert order == ["first out", "second in"] and budget.used == 0


def test_a_job_over_the_memory_budget_is_413_before_it_exists(
    make_client: Callable[..., TestClient], disc_png: bytes
) -> None:
    client = make_client(memory_budget_bytes=2 * 2**30)
    response = submit(client, disc_png, options={"texture_size": 4096})
    assert response.status_code == 413, response.text
    assert "memory" in detail(response) and "budget of 2.0 GiB" in detail(response)
    assert client.get("/v1/jobs").json()["jobs"] == []
    accepted = submit(client, disc_png, options={"texture_size": 64})
    assert accepted.status_code == 202
    assert wait_for(client, accepted.json()["id"])["status"] == "succeeded"
    assert client.app.state.budget.used == 0  # type: ignore[attr-defined]


def test_a_large_compressible_photo_is_refused_before_it_is_decoded(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(memory_budget_bytes=256 * 2**20, max_pixels=40_000_000)
    photo = png_bytes(Image.new("RGB", (3000, 3000), (200, 30, 30)))
    assert len(photo) < 100_000  # small on the wire, 9 megapixels decoded
    response = submit(client, photo)
    assert response.status_code == 413, response.text
    assert "memory" in detail(response)


# -- jobs in a child process ------------------------------------------------------------------------


def running_in(client: TestClient, job_id: str, stage: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 0.5}).json()
        if job["status"] == "running" and job["stage"] == stage:
            return
        assert job["status"] in {"queued", "running"}, job
        assert time.monotonic() < deadline, f"never reached {stage}: {job}"


def cancel_latency(client: TestClient, job_id: str) -> float:
    started = time.monotonic()
    job = client.post(f"/v1/jobs/{job_id}/cancel").json()
    while job["status"] == "running":
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 0.5}).json()
    elapsed = time.monotonic() - started
    assert job["status"] == "canceled" and job["error"] is None, job
    return elapsed


@pytest.mark.slow
def test_isolated_jobs_cancel_inside_a_long_call_and_survive_a_crash(
    make_client: Callable[..., TestClient], disc_png: bytes
) -> None:
    client = make_client(isolate_jobs=True, cancel_grace=0.5)
    assert wait_for(client, submit(client, disc_png).json()["id"])["status"] == "succeeded"

    # A job deep in one call without progress calls (a 60 s library call): its process is killed.
    blocked = submit(client, disc_png, options={"steps": 1, "block": 60}).json()["id"]
    running_in(client, blocked, "shape")
    time.sleep(0.3)
    assert cancel_latency(client, blocked) < 2.0

    # A process that dies (out of memory, say) fails its job only; the next job gets a fresh process.
    crashed = wait_for(client, submit(client, disc_png, options={"crash": True}).json()["id"])
    assert crashed["status"] == "failed" and "process ended unexpectedly" in crashed["error"]
    assert "signal 9" in crashed["error"]
    after = wait_for(client, submit(client, disc_png, options={"steps": 3}).json()["id"])
    assert after["status"] == "succeeded"
    assert client.get(after["results"]["glb"]).status_code == 200


@pytest.mark.slow
def test_cancel_in_the_export_of_the_largest_texture_acts_within_2_s(
    make_client: Callable[..., TestClient], disc_png: bytes
) -> None:
    client = make_client(isolate_jobs=True)
    job_id = submit(client, disc_png, options={"texture_size": 4096}).json()["id"]
    running_in(client, job_id, "export", timeout=120)
    time.sleep(0.3)  # inside the PNG encoding of the 4096 x 8192 texture (seconds long)
    latency = cancel_latency(client, job_id)
    assert latency < 2.0, f"cancel took {latency:.2f} s"
    folder = client.app.state.store.job_dir(job_id)  # type: ignore[attr-defined]
    assert not (folder / "result").exists()  # the killed export's partial files are gone


# -- remote mode, schemas ---------------------------------------------------------------------------


def test_a_remote_server_checks_host_against_the_names_given() -> None:
    open_config = ServerConfig(jobs_dir=".", token=TOKEN, host="0.0.0.0", port=TEST_PORT)
    assert open_config.allowed_hosts() is None  # no names: any Host (the server warns loudly)
    config = ServerConfig(
        jobs_dir=".", token=TOKEN, host="0.0.0.0", port=TEST_PORT, remote_hosts=("Studio.lan", "fe80::1")
    )
    allowed = config.allowed_hosts()
    assert allowed is not None
    assert {f"studio.lan:{TEST_PORT}", f"[fe80::1]:{TEST_PORT}", f"localhost:{TEST_PORT}"} <= allowed
    assert f"evil.example:{TEST_PORT}" not in allowed and "studio.lan" not in allowed


def test_a_remote_server_with_names_refuses_a_foreign_host(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(host="0.0.0.0", remote_hosts=("studio.lan",))
    assert client.get("/v1/jobs", headers={"Host": f"studio.lan:{TEST_PORT}"}).status_code == 200
    refused = client.get("/v1/jobs", headers={"Host": f"evil.example:{TEST_PORT}"})
    assert refused.status_code == 400 and "Host" in detail(refused)


def numeric_bounds(schema: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """field -> (lower, upper) bound of every integer or number field (None where one is missing)."""
    bounds = {}
    for name, field in schema["properties"].items():
        for variant in [field, *field.get("anyOf", [])]:
            if variant.get("type") in ("integer", "number"):
                lower = variant.get("minimum", variant.get("exclusiveMinimum"))
                upper = variant.get("maximum", variant.get("exclusiveMaximum"))
                bounds[name] = (lower, upper)
    return bounds


def test_every_numeric_option_of_every_method_has_a_finite_range() -> None:
    from backend.methods import registry

    for info in registry.method_info():
        bounds = numeric_bounds(info["options_schema"])
        assert bounds, info["name"]
        for field, (lower, upper) in bounds.items():
            assert lower is not None and upper is not None, (info["name"], field)
            assert math.isfinite(lower) and math.isfinite(upper) and lower <= upper, (info["name"], field)


def test_non_finite_and_out_of_range_values_are_refused_by_every_engine_method() -> None:
    from backend.methods import registry
    from backend.methods.base import MethodError

    for method in ("fit", "softras"):
        for field, (_, upper) in numeric_bounds(
            registry.method_spec(method).options.model_json_schema()
        ).items():
            for value in (math.inf, -math.inf, math.nan, upper * 10 + 1):
                with pytest.raises(MethodError, match=field):
                    registry.parse_options(method, {field: value})
    with pytest.raises(MethodError, match="seed"):
        registry.parse_options("fit", {"seed": 2**64})


@pytest.mark.parametrize("path", ["/etc/passwd", "../../outside.safetensors"])
def test_a_client_cannot_name_a_file_outside_the_installed_checkpoints(
    make_client: Callable[..., TestClient], disc_png: bytes, path: str
) -> None:
    from backend.server.catalog import RegistryMethodFactory

    client = make_client(factory=RegistryMethodFactory())
    response = submit(client, disc_png, method="fit", options={"prior": "softras", "prior_checkpoint": path})
    assert response.status_code == 422
    assert "prior_checkpoint" in detail(response) and "installed checkpoint" in detail(response)


def test_an_installed_checkpoint_path_is_resolved_inside_the_root() -> None:
    from backend.checkpoints import checkpoint_root
    from backend.server.intake import _installed_path

    root = checkpoint_root().resolve()
    assert _installed_path("prior_checkpoint", "softras/a.safetensors") == str(root / "softras/a.safetensors")
    assert _installed_path("prior_checkpoint", str(root / "b.json")) == str(root / "b.json")
