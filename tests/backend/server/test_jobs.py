"""The job store: lifecycle, status.json on disk (atomic, throttled), recovery after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from backend.server import jobs as jobs_module
from backend.server.jobs import (
    DAMAGED,
    FOLDER_GONE,
    INTERRUPTED,
    RESULT_DIR,
    RESULT_FILES,
    STATUS_FILE,
    Job,
    JobConflict,
    JobNotFound,
    JobStatus,
    JobStore,
    ResultDamaged,
    file_sha256,
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
    missing = tmp_path / new_job_id()
    missing.mkdir()  # a folder without a status: a failed job saying so
    os.utime(missing, (now - 50, now - 50))
    broken = tmp_path / new_job_id()
    broken.mkdir()
    (broken / STATUS_FILE).write_text("{not json")
    os.utime(broken, (now - 60, now - 60))

    restarted = JobStore(tmp_path)
    assert restarted.recover() == [older.id, newer.id]
    interrupted = restarted.get(running.id)
    assert (interrupted.status, interrupted.error) == (JobStatus.FAILED, INTERRUPTED)
    assert on_disk(restarted, running.id)["error"] == INTERRUPTED
    assert restarted.get(done.id).status is JobStatus.SUCCEEDED
    listed = [job.id for job in restarted.list_jobs()]
    assert listed == [newer.id, older.id, running.id, done.id, missing.name, broken.name]
    assert not (tmp_path / ".staging-left-over").exists()
    for folder in (missing, broken):
        unreadable = restarted.get(folder.name)
        assert unreadable.status is JobStatus.FAILED and STATUS_FILE in str(unreadable.error)
        with pytest.raises(JobConflict):  # terminal: cancel answers 409, never hangs
            restarted.cancel(folder.name)
    assert (broken / STATUS_FILE).read_text() == "{not json"  # left for a human to look at


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


# -- jobs whose folder vanished, result integrity, the jobs folder's mode ---------------------------


def test_a_queued_job_whose_folder_vanished_fails_with_the_reason(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = add_job(store)
    shutil.rmtree(tmp_path / job.id)
    assert store.start(job.id) is None
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and str(failed.error).startswith(FOLDER_GONE)
    with pytest.raises(JobConflict):
        store.cancel(job.id)


def test_a_running_job_whose_folder_vanished_still_ends(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = add_job(store)
    started = store.start(job.id)
    assert started is not None
    shutil.rmtree(tmp_path / job.id)
    store.set_progress(job.id, 0.5, "shape")  # logged, not raised
    store.cancel(job.id)
    assert started[1].is_set()
    ended = store.finish(job.id, JobStatus.SUCCEEDED, checksums={"glb": "0" * 64})
    assert ended.status is JobStatus.FAILED and str(ended.error).startswith(FOLDER_GONE)
    assert store.get(job.id).status is JobStatus.FAILED and store.get(job.id).checksums == {}


def test_canceling_a_queued_job_whose_folder_vanished_cancels_it(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = add_job(store)
    shutil.rmtree(tmp_path / job.id)
    assert store.cancel(job.id).status is JobStatus.CANCELED
    assert store.start(job.id) is None


def succeeded_with_results(store: JobStore) -> Job:
    job = add_job(store)
    store.start(job.id)
    results = store.root / job.id / RESULT_DIR
    results.mkdir()
    for kind, (_, name, _) in RESULT_FILES.items():
        (results / name).write_bytes(f"{kind} bytes".encode())
    return store.finish(job.id, JobStatus.SUCCEEDED, checksums=store.result_checksums(job.id))


def test_checksums_are_recorded_and_checked(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = succeeded_with_results(store)
    assert set(job.checksums) == set(RESULT_FILES)
    assert on_disk(store, job.id)["checksums"] == job.checksums
    path = store.result_path(job.id, "glb")
    assert job.checksums["glb"] == file_sha256(path)
    assert store.verified_result(job.id, "glb") == path
    restarted = JobStore(tmp_path)
    assert restarted.recover() == []
    assert restarted.get(job.id).checksums == job.checksums  # the record loads back

    path.write_bytes(os.urandom(64))
    with pytest.raises(ResultDamaged, match=r"result\.glb changed on disk"):
        store.verified_result(job.id, "glb")
    damaged = store.get(job.id)
    assert damaged.status is JobStatus.FAILED and str(damaged.error).startswith(DAMAGED)
    assert on_disk(store, job.id)["status"] == "failed"


@pytest.mark.parametrize("damage", ["emptied", "deleted"])
def test_an_emptied_or_deleted_result_is_damaged(tmp_path: Path, damage: str) -> None:
    store = JobStore(tmp_path)
    job = succeeded_with_results(store)
    path = store.result_path(job.id, "report")
    if damage == "emptied":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(ResultDamaged):
        store.verified_result(job.id, "report")
    assert store.get(job.id).status is JobStatus.FAILED


def test_a_job_from_before_checksums_is_served_unchecked(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job = succeeded_with_results(store)
    record = on_disk(store, job.id)
    del record["checksums"]
    write_json_atomic(store.root / job.id / STATUS_FILE, record)
    restarted = JobStore(tmp_path)
    restarted.recover()
    assert restarted.get(job.id).checksums == {}
    assert restarted.verified_result(job.id, "glb") == restarted.result_path(job.id, "glb")
    restarted.result_path(job.id, "mask").unlink()
    with pytest.raises(FileNotFoundError):
        restarted.verified_result(job.id, "mask")


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_an_open_jobs_folder_is_tightened_to_0700(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    folder.chmod(0o777)
    store = JobStore(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and store.permission_warning is None
    fresh = JobStore(tmp_path / "new" / "jobs")
    assert stat.S_IMODE(fresh.root.stat().st_mode) == 0o700


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_a_folder_that_cannot_be_tightened_gives_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    folder.chmod(0o777)

    def refuse(path: object, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(jobs_module.os, "chmod", refuse)
    warning = jobs_module.secure_folder(folder)
    assert warning is not None and "0777" in warning and "not permitted" in warning
