"""The app in process (TestClient over the fake method): routes, JSON shapes and every error path."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.geometry import icosphere_template
from backend.geometry.io import load_glb, save_glb
from backend.server.jobs import INTERRUPTED, JobStore
from tests.backend.server.fakes import FakeFactory
from tests.backend.server.support import TEST_PORT, disc_image, disc_mask, png_bytes, submit, wait_for

SLOW = {"steps": 100_000, "delay": 0.01}
"""Options that keep a fake job running until it is canceled."""


def detail(response: Any) -> str:
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    return str(body["detail"])


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 10
    while not client.get("/v1/health").json()["ready"]:
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.01)


# -- health, methods, auth, Host, body size ---------------------------------------------------------


def test_health_needs_no_token_and_reports_ready(client: TestClient) -> None:
    wait_ready(client)
    response = client.get("/v1/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0", "ready": True}


def test_health_answers_while_the_models_load(make_client: Callable[..., TestClient]) -> None:
    class SlowFactory(FakeFactory):
        def create_method(self, name: str, device: str) -> Any:
            time.sleep(0.5)
            return super().create_method(name, device)

    client = make_client(factory=SlowFactory())
    assert client.get("/v1/health").json()["ready"] is False
    wait_ready(client)


def test_methods_lists_every_method_with_its_schema(client: TestClient) -> None:
    methods = {entry["name"]: entry for entry in client.get("/v1/methods").json()["methods"]}
    assert set(methods) == {"fake", "needs-weights"}
    assert set(methods["fake"]) == {
        "name",
        "description",
        "needs_checkpoint",
        "available",
        "reason",
        "options_schema",
        "checkpoints",
    }
    assert methods["fake"]["checkpoints"] == []
    assert methods["fake"]["available"] and methods["fake"]["reason"] is None
    assert not methods["needs-weights"]["available"] and "checkpoint" in methods["needs-weights"]["reason"]
    assert "steps" in methods["fake"]["options_schema"]["properties"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", "Basic dGVzdA==", "test-token-0123456789"],
)
@pytest.mark.parametrize("path", ["/v1/methods", "/v1/jobs", "/v1/jobs/" + "0" * 32])
def test_every_route_but_health_needs_the_token(
    client: TestClient, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    client.headers.pop("Authorization")
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in detail(response)


def test_submission_without_token_is_refused_before_the_body_is_read(
    client: TestClient, disc_png: bytes
) -> None:
    client.headers.pop("Authorization")
    assert submit(client, disc_png).status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer test-token-0123456789"}).json() == {
        "jobs": []
    }


def test_openapi_page_describes_the_routes(client: TestClient) -> None:
    client.headers.pop("Authorization")
    schema = client.get("/openapi.json").json()
    assert {
        "/v1/health",
        "/v1/methods",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/result.glb",
        "/v1/jobs/{job_id}/preview.png",
        "/v1/jobs/{job_id}/report.json",
        "/v1/jobs/{job_id}/texture.png",
        "/v1/jobs/{job_id}/mask.png",
        "/v1/mask-model",
        "/v1/mask-model/download",
    } == set(schema["paths"])
    form = schema["components"]["schemas"]
    assert any(
        {"image", "mask", "mesh", "method", "options"} <= set(s.get("properties", {})) for s in form.values()
    )


@pytest.mark.parametrize(
    "host",
    [
        "evil.example:48213",
        f"127.0.0.1:{TEST_PORT + 1}",
        "localhost",
        "127.0.0.1",
        f"attacker.test:{TEST_PORT}",
    ],
)
def test_a_foreign_host_header_is_refused(client: TestClient, host: str) -> None:
    for path in ("/v1/health", "/v1/jobs"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 400
        assert "Host" in detail(response)


@pytest.mark.parametrize(
    "host", [f"127.0.0.1:{TEST_PORT}", f"localhost:{TEST_PORT}", f"LOCALHOST:{TEST_PORT}"]
)
def test_the_bound_address_and_localhost_are_accepted(client: TestClient, host: str) -> None:
    assert client.get("/v1/jobs", headers={"Host": host}).status_code == 200


def test_no_cors_headers_are_sent(client: TestClient) -> None:
    response = client.get("/v1/health", headers={"Origin": "http://evil.example"})
    assert not any(name.lower().startswith("access-control") for name in response.headers)
    preflight = client.options("/v1/jobs", headers={"Origin": "http://evil.example"})
    assert not any(name.lower().startswith("access-control") for name in preflight.headers)


def test_a_body_over_the_limit_is_refused_by_its_content_length(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_upload_bytes=20_000)
    response = submit(client, png_bytes(disc_image()) + bytes(30_000))
    assert response.status_code == 413
    assert "limit" in detail(response)
    assert client.get("/v1/jobs").json() == {"jobs": []}


def test_a_streamed_body_over_the_limit_is_refused_while_it_arrives(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_upload_bytes=20_000)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(10):
            yield b"x" * 5_000

    response = client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=abc"}
    )
    assert response.status_code == 413
    assert "limit" in detail(response)


# -- a job's life -------------------------------------------------------------------------------


def test_submit_poll_download(client: TestClient, disc_png: bytes, tmp_path: Path) -> None:
    response = submit(client, disc_png, options={"steps": 3}, filename="my bird.png")
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and job["method"] == "fake" and job["results"] == {}
    assert job["options"] == {"steps": 3, "delay": 0.0, "block": 0.0, "crash": False, "texture_size": 0}
    assert job["image_name"] == "my bird.png"
    assert job["created"] <= job["updated"]

    done = wait_for(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0 and done["error"] is None
    media = {
        "glb": "model/gltf-binary",
        "preview": "image/png",
        "report": "application/json",
        "texture": "image/png",
        "mask": "image/png",
    }
    assert set(done["results"]) == set(media)
    for kind, url in done["results"].items():
        download = client.get(url)
        assert download.status_code == 200, (kind, download.text)
        assert download.headers["content-type"].startswith(media[kind])
    glb = tmp_path / "result.glb"
    glb.write_bytes(client.get(done["results"]["glb"]).content)
    assert load_glb(glb).num_faces == 20
    report = client.get(done["results"]["report"]).json()
    assert report["method"] == "fake" and report["photo"]["width"] == 64
    assert client.get("/v1/jobs").json()["jobs"] == [done]
    assert client.get(f"/v1/jobs/{job['id']}").json() == done


def test_jobs_are_listed_newest_first(client: TestClient, disc_png: bytes) -> None:
    ids = [submit(client, disc_png).json()["id"] for _ in range(3)]
    for job_id in ids:
        wait_for(client, job_id)
    assert [job["id"] for job in client.get("/v1/jobs").json()["jobs"]] == ids[::-1]


def test_client_file_names_are_only_text(client: TestClient, disc_png: bytes) -> None:
    job = submit(client, disc_png, filename="..\\..\\../etc/evil\u202ename.png").json()
    assert job["image_name"] == "evilname.png"
    wait_for(client, job["id"])
    folder = client.app.state.store.job_dir(job["id"])  # type: ignore[attr-defined]
    assert sorted(path.name for path in folder.iterdir()) == ["input_image", "result", "status.json"]


def test_the_method_instance_is_created_once(make_client: Callable[..., TestClient], disc_png: bytes) -> None:
    factory = FakeFactory()
    client = make_client(factory=factory)
    for _ in range(3):
        wait_for(client, submit(client, disc_png).json()["id"])
    assert factory.created == [("fake", "cpu")]


def test_a_mask_and_a_mesh_to_refine_are_used(client: TestClient, disc_png: bytes, tmp_path: Path) -> None:
    mesh_path = save_glb(icosphere_template(1).mesh, tmp_path / "edited.glb")
    response = submit(client, disc_png, mask=png_bytes(disc_mask()), mesh=mesh_path.read_bytes())
    assert response.status_code == 202, response.text
    done = wait_for(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    report = client.get(done["results"]["report"]).json()
    assert report["extra"]["refined"] and report["num_vertices"] == 42
    assert report["photo"]["mask_source"] == "given"


def test_long_poll_answers_when_the_job_changes(client: TestClient, disc_png: bytes) -> None:
    job_id = submit(client, disc_png, options={"steps": 50, "delay": 0.02}).json()["id"]
    wait_for(client, job_id, {"running"})
    started = time.monotonic()
    assert client.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()["status"] in {"running", "succeeded"}
    assert time.monotonic() - started < 2.0
    wait_for(client, job_id)
    started = time.monotonic()
    client.get(f"/v1/jobs/{job_id}", params={"wait": 10})
    assert time.monotonic() - started < 0.5  # a finished job answers at once


def test_cancel_a_running_job(client: TestClient, disc_png: bytes) -> None:
    job_id = submit(client, disc_png, options=SLOW).json()["id"]
    wait_for(client, job_id, {"running"})
    started = time.monotonic()
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert time.monotonic() - started < 1.0
    assert client.get(f"/v1/jobs/{job_id}").json()["error"] is None
    response = client.get(f"/v1/jobs/{job_id}/result.glb")
    assert response.status_code == 409 and "canceled" in detail(response)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409


def test_cancel_a_queued_job_and_the_queue_goes_on(client: TestClient, disc_png: bytes) -> None:
    blocker = submit(client, disc_png, options=SLOW).json()["id"]
    queued = submit(client, disc_png).json()["id"]
    after = submit(client, disc_png).json()["id"]
    wait_for(client, blocker, {"running"})
    assert client.post(f"/v1/jobs/{queued}/cancel").json()["status"] == "canceled"
    client.post(f"/v1/jobs/{blocker}/cancel")
    assert wait_for(client, after)["status"] == "succeeded"
    assert client.get(f"/v1/jobs/{queued}").json()["status"] == "canceled"


def test_results_of_an_unfinished_job_are_409(client: TestClient, disc_png: bytes) -> None:
    job_id = submit(client, disc_png, options=SLOW).json()["id"]
    for route in ("result.glb", "preview.png", "report.json", "texture.png", "mask.png"):
        response = client.get(f"/v1/jobs/{job_id}/{route}")
        assert response.status_code == 409
        assert "no results" in detail(response)
    client.post(f"/v1/jobs/{job_id}/cancel")


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job", "..%2F..%2Fetc", "A" * 32])
def test_unknown_job_ids_are_404(client: TestClient, job_id: str) -> None:
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("GET", f"/v1/jobs/{job_id}/result.glb"),
        ("GET", f"/v1/jobs/{job_id}/report.json"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (path, response.text)


def test_a_fault_in_a_job_fails_that_job_only(
    make_client: Callable[..., TestClient], disc_png: bytes
) -> None:
    calls = []

    def broken_then_fine(*args: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")

    client = make_client(runner=broken_then_fine)
    first = wait_for(client, submit(client, disc_png).json()["id"])
    assert first["status"] == "failed"
    assert first["error"] == "internal error: RuntimeError: disk on fire"
    assert wait_for(client, submit(client, disc_png).json()["id"])["status"] == "succeeded"


def test_a_grabcut_failure_fails_the_job_with_its_message(client: TestClient) -> None:
    flat = png_bytes(Image.new("RGB", (64, 64), (128, 128, 128)))
    response = submit(client, flat)
    assert response.status_code == 202  # no mask problem can be seen before segmenting
    job = wait_for(client, response.json()["id"])
    assert job["status"] == "failed"
    assert "GrabCut" in job["error"] and "empty" in job["error"]


def test_finished_results_survive_a_restart(
    make_client: Callable[..., TestClient], disc_png: bytes, tmp_path: Path
) -> None:
    first = make_client(jobs_dir=tmp_path / "shared")
    job_id = submit(first, disc_png).json()["id"]
    wait_for(first, job_id)
    first.__exit__(None, None, None)
    second = make_client(jobs_dir=tmp_path / "shared")
    assert second.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    assert second.get(f"/v1/jobs/{job_id}/result.glb").status_code == 200


def test_a_running_job_is_failed_and_a_queued_one_rerun_after_a_restart(
    make_client: Callable[..., TestClient], disc_png: bytes, tmp_path: Path
) -> None:
    first = make_client(jobs_dir=tmp_path / "shared")
    store: JobStore = first.app.state.store  # type: ignore[attr-defined]
    # Pretend the process died: a job left "running" on disk and one still queued.
    running = submit(first, disc_png, options=SLOW).json()["id"]
    wait_for(first, running, {"running"})
    queued = submit(first, disc_png).json()["id"]
    status = (store.job_dir(running) / "status.json").read_text()
    first.__exit__(None, None, None)
    (store.job_dir(running) / "status.json").write_text(status)
    second = make_client(jobs_dir=tmp_path / "shared")
    interrupted = second.get(f"/v1/jobs/{running}").json()
    assert (interrupted["status"], interrupted["error"]) == ("failed", INTERRUPTED)
    assert wait_for(second, queued)["status"] == "succeeded"


# -- bad input ----------------------------------------------------------------------------------


def truncated_png() -> bytes:
    data = png_bytes(disc_image(96))
    return data[: len(data) // 2]


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    disc_image().save(buffer, "GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image", "status", "words"),
    [
        (b"this is a text file, not a photo\n", 415, "not an image"),
        (b"", 415, "empty"),
        (gif_bytes(), 415, "GIF"),
        (truncated_png(), 422, "truncated or damaged"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 422, "PNG"),
        (png_bytes(disc_image(200)), 413, "pixels"),
        (png_bytes(Image.new("RGBA", (64, 64), (10, 200, 10, 0))), 422, "alpha channel is empty"),
    ],
    ids=["text", "empty", "gif", "truncated-png", "corrupt-header", "too-many-pixels", "transparent"],
)
def test_a_bad_image_is_refused_at_submission(
    make_client: Callable[..., TestClient], image: bytes, status: int, words: str
) -> None:
    client = make_client(max_pixels=100 * 100)
    response = submit(client, image)
    assert response.status_code == status, response.text
    assert words in detail(response) and detail(response).startswith("image: ")
    assert client.get("/v1/jobs").json() == {"jobs": []}
    assert not [p for p in client.app.state.store.root.iterdir() if p.name != ".lock"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mask", "status", "words"),
    [
        (png_bytes(Image.new("L", (64, 64), 255)), 422, "covers"),
        (png_bytes(Image.new("L", (64, 64), 0)), 422, "empty"),
        (png_bytes(Image.new("L", (64, 32), 255)), 422, "aspect"),
        (truncated_png(), 422, "truncated"),
        (b"not a mask", 415, "not an image"),
        (png_bytes(disc_mask(128)), 413, "pixels"),
    ],
    ids=["all-white", "all-black", "wrong-aspect", "truncated", "text", "too-many-pixels"],
)
def test_a_bad_mask_is_refused_at_submission(
    make_client: Callable[..., TestClient], disc_png: bytes, mask: bytes, status: int, words: str
) -> None:
    client = make_client(max_pixels=100 * 100)
    response = submit(client, disc_png, mask=mask)
    assert response.status_code == status, response.text
    assert words in detail(response) and detail(response).startswith("mask: ")


@pytest.mark.parametrize(
    ("mesh", "words"),
    [(b"glTF garbage", "not a usable GLB"), (b"", "not a usable GLB")],
)
def test_an_unreadable_mesh_is_422(client: TestClient, disc_png: bytes, mesh: bytes, words: str) -> None:
    response = client.post(
        "/v1/jobs",
        files={"image": ("a.png", disc_png, "image/png"), "mesh": ("m.glb", mesh, "model/gltf-binary")},
    )
    assert response.status_code == 422, response.text
    assert words in detail(response) and "/" not in detail(response)  # the server's paths are not shown


@pytest.mark.parametrize(
    ("method", "options", "words"),
    [
        ("nope", "{}", "unknown method 'nope'"),
        ("needs-weights", "{}", "needs a checkpoint"),
        ("fake", "{not json", "not valid JSON"),
        ("fake", "[1, 2]", "must be a JSON object"),
        ("fake", '"text"', "must be a JSON object"),
    ],
    ids=["unknown-method", "unavailable", "not-json", "array", "string"],
)
def test_bad_method_or_options_that_are_no_object_are_400(
    client: TestClient, disc_png: bytes, method: str, options: str, words: str
) -> None:
    response = submit(client, disc_png, method=method, options=options)
    assert response.status_code == 400, response.text
    assert words in detail(response)


HOSTILE_OPTIONS = {
    "unknown-option": ('{"stpes": 3}', "stpes"),
    "below-range": ('{"steps": -1}', "steps"),
    "above-range": ('{"delay": 11}', "delay"),
    "nested-5000": ("[" * 5000 + "]" * 5000, "nested 5000 levels deep"),
    "nested-100000": ('{"a":' * 100_000 + "1" + "}" * 100_000, "characters"),
    "nested-20-in-value": ('{"steps": ' + "[" * 20 + "]" * 20 + "}", "nested 21 levels deep"),
    "4301-digits": ('{"steps": ' + "9" * 4301 + "}", "out of range"),
    "40-digits": ('{"steps": ' + "9" * 40 + "}", "steps: an integer of more than 30 digits"),
    "Infinity": ('{"delay": Infinity}', "Infinity is not allowed"),
    "-Infinity": ('{"delay": -Infinity}', "Infinity is not allowed"),
    "NaN": ('{"delay": NaN}', "NaN is not allowed"),
    "1e309": ('{"delay": 1e309}', "delay: inf is not a finite number"),
    "2^64": ('{"steps": 18446744073709551616}', "steps"),
    "string-for-int": ('{"steps": "many"}', "steps"),
    "bool-for-float": ('{"delay": [true]}', "delay"),
    "too-long": ('{"steps": 1' + " " * 70_000 + "}", "characters, more than the limit"),
}


@pytest.mark.parametrize(("options", "words"), HOSTILE_OPTIONS.values(), ids=HOSTILE_OPTIONS.keys())
def test_hostile_options_are_422_naming_the_problem_and_make_no_job(
    client: TestClient, disc_png: bytes, options: str, words: str
) -> None:
    response = submit(client, disc_png, options=options)
    assert response.status_code == 422, response.text[:300]
    assert words in detail(response)
    assert client.get("/v1/jobs").json()["jobs"] == []


def test_a_missing_image_field_is_422_with_a_message(client: TestClient) -> None:
    response = client.post("/v1/jobs", data={"options": "{}"}, files={"mask": ("m.png", b"x", "image/png")})
    assert response.status_code == 422
    assert "image" in detail(response)


def test_the_server_keeps_serving_after_bad_input(client: TestClient, disc_png: bytes) -> None:
    for bad in (b"junk", truncated_png(), b""):
        assert submit(client, bad).status_code in {415, 422}
    assert submit(client, disc_png, options="{oops").status_code == 400
    assert submit(client, disc_png, options="[" * 100_000).status_code == 422
    assert wait_for(client, submit(client, disc_png).json()["id"])["status"] == "succeeded"
