"""The job store: lifecycle, status.json on disk (atomic, throttled), recovery after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from backend.server import jobs as jobs_module
from backend.server.jobs import (
    INTERRUPTED,
    STATUS_FILE,
    Job,
    JobConflict,
    JobNotFound,
    JobStatus,
    JobStore,
    is_job_id,
    new_job_id,
    write_json_atomic,
)


def add_job(store: JobStore, created: float | None = None, **fields: object) -> Job:
    staging = store.staging_dir()
    (staging / "input_image").write_bytes(b"image")
    job = Job(id=new_job_id(), method="fake", options={"steps": 1}, image_name="x.png", **fields)  # type: ignore[arg-type]
    if created is not None:
        job.created = job.updated = created
    return store.add(job, staging)


def on_disk(store: JobStore, job_id: str) -> dict[str, object]:
    return json.loads((store.root / job_id / STATUS_FILE).read_text())  # type: ignore[no-any-return]


def test_job_ids_are_hex_and_only_those_are_accepted(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    assert is_job_id(new_job_id())
    for bad in ("..", "../etc", "ABC", "", "0" * 31, "g" * 32):
        assert not is_job_id(bad)
        with pytest.raises(JobNotFound):
            store.job_dir(bad)
    with pytest.raises(ValueError, match="not a job id"):
        Job(id="../x", method="fake", options={}, image_name="x")


def test_lifecycle_is_written_to_status_json(tmp_path: Path) -> None:
    store = JobStore(tmp_path, progress_write_interval=0.0)
    job = add_job(store)
    assert (tmp_path / job.id / "input_image").read_bytes() == b"image"
    assert not list(tmp_path.glob(".staging-*"))
    assert on_disk(store, job.id)["status"] == "queued"

    started = store.start(job.id)
    assert started is not None and started[0].status is JobStatus.RUNNING
    assert store.start(job.id) is None  # only a queued job starts
    store.set_progress(job.id, 0.4, "shape")
    store.set_progress(job.id, 0.3, "shape")  # progress never goes back
    record = on_disk(store, job.id)
    assert (record["status"], record["progress"], record["stage"]) == ("running", 0.4, "shape")

    done = store.finish(job.id, JobStatus.SUCCEEDED)
    assert done.progress == 1.0 and on_disk(store, job.id)["status"] == "succeeded"
    assert done.to_api()["results"]["glb"] == f"/v1/jobs/{job.id}/result.glb"
    assert set(done.to_api()["results"]) == {"glb", "preview", "report", "texture", "mask"}
    assert store.get(job.id).to_api() == done.to_api()
    with pytest.raises(JobConflict, match="already finished"):
        store.cancel(job.id)
    with pytest.raises(ValueError, match="terminal"):
        store.finish(job.id, JobStatus.RUNNING)


def test_api_json_has_exactly_the_documented_fields(tmp_path: Path) -> None:
    job = add_job(JobStore(tmp_path)).to_api()
    assert set(job) == {
        "id",
        "status",
        "progress",
        "stage",
        "error",
        "method",
        "options",
        "image_name",
        "created",
        "updated",
        "results",
    }
    assert job["results"] == {} and job["stage"] is None and job["error"] is None


def test_progress_writes_are_throttled_but_status_changes_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(tmp_path, progress_write_interval=10.0)
    job = add_job(store)
    writes: list[str] = []
    original = jobs_module.write_json_atomic

    def counting(path: Path, data: dict[str, object]) -> None:
        writes.append(str(data["status"]))
        original(path, data)

    monkeypatch.setattr(jobs_module, "write_json_atomic", counting)
    store.start(job.id)
    for step in range(100):
        store.set_progress(job.id, step / 100, "shape")
    store.set_progress(job.id, 0.0, "texture")  # a new stage is written at once
    store.finish(job.id, JobStatus.FAILED, "boom")
    assert writes == ["running"] * 3 + ["failed"]  # start, stages "shape" and "texture", finish
    assert store.get(job.id).progress == pytest.approx(0.99)  # memory has every update
    assert on_disk(store, job.id)["error"] == "boom"


def test_cancel_of_a_queued_job_is_immediate_and_of_a_running_one_sets_the_flag(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    queued = add_job(store)
    assert store.cancel(queued.id).status is JobStatus.CANCELED
    assert store.start(queued.id) is None
    running = add_job(store)
    started = store.start(running.id)
    assert started is not None
    _, flag = started
    assert store.cancel(running.id).status is JobStatus.RUNNING
    assert flag.is_set()
    with pytest.raises(JobNotFound):
        store.cancel(new_job_id())


def test_recover_fails_running_jobs_and_requeues_queued_ones_oldest_first(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    now = time.time()
    newer = add_job(store, created=now - 10)
    older = add_job(store, created=now - 20)
    running = add_job(store, created=now - 30)
    store.start(running.id)
    done = add_job(store, created=now - 40)
    store.start(done.id)
    store.finish(done.id, JobStatus.SUCCEEDED)
    (tmp_path / ".staging-left-over").mkdir()
    (tmp_path / new_job_id()).mkdir()  # a folder without a status: skipped
    broken = tmp_path / new_job_id()
    broken.mkdir()
    (broken / STATUS_FILE).write_text("{not json")

    restarted = JobStore(tmp_path)
    assert restarted.recover() == [older.id, newer.id]
    interrupted = restarted.get(running.id)
    assert (interrupted.status, interrupted.error) == (JobStatus.FAILED, INTERRUPTED)
    assert on_disk(restarted, running.id)["error"] == INTERRUPTED
    assert restarted.get(done.id).status is JobStatus.SUCCEEDED
    assert [job.id for job in restarted.list_jobs()] == [newer.id, older.id, running.id, done.id]
    assert not (tmp_path / ".staging-left-over").exists()


def test_write_json_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [path.name for path in tmp_path.iterdir()] == ["status.json"]
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": object()})
    assert [path.name for path in tmp_path.iterdir()] == ["status.json"]
    assert json.loads(target.read_text()) == {"a": 2}


def test_wait_for_change_wakes_on_a_change_from_another_thread(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = add_job(store)

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        loop.call_later(0.1, lambda: loop.run_in_executor(None, store.start, job.id))
        await store.wait_for_change(job.id, 5.0)
        woke = time.monotonic() - started
        store.finish(job.id, JobStatus.CANCELED)
        started = time.monotonic()
        await store.wait_for_change(job.id, 5.0)  # finished: returns at once
        return woke, time.monotonic() - started

    woke, finished = asyncio.run(scenario())
    assert 0.05 < woke < 2.0
    assert finished < 0.5
