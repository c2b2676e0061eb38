"""The FastAPI application of HTTP API v1: ``create_app(config, method_factory=...)``.

The app owns one ``JobStore`` (``config.jobs_dir``) and one ``WorkerPool`` (a worker on
``config.device``); its lifespan recovers the jobs on disk (interrupted ones fail, queued ones are queued
again in creation order), starts the worker, and at shutdown stops it. Routes, JSON shapes and status
codes are listed in ``backend.server``'s docstring; every route runs behind ``GuardMiddleware``
(Host header, token, body size). Validation errors of the form itself (e.g. no ``image`` field) are
answered 422 with a one-line ``detail`` string like every other error, not FastAPI's list.

With ``config.isolate_jobs`` jobs run in a child process (``backend.server.isolation``); with
``config.memory_budget_bytes`` submissions and jobs share a ``backend.server.budget.MemoryBudget``.
Result downloads are checked against the checksums recorded when the job finished: a damaged or
missing file is answered 410 (and the job is failed with "result damaged: ..."), never served.

The mask model routes (``GET /v1/mask-model``, ``POST /v1/mask-model/download``) report and fetch the
salient-object mask model of ``backend.imaging.salient``: the status is looked up on every request
(``config.mask_model``, else ``$MONO2MESH_MASK_MODEL``, else the cache folder), a download goes to the
cache folder from ``config.mask_model_url`` (or the public URL), one download at a time. Jobs look the
model up when they run, so a model downloaded while the server runs is used by the next job.

``method_factory`` decides where methods come from (default: ``backend.methods.registry``) and
``job_runner`` how a job runs (default: ``PipelineRunner``, reconstruct + export); tests pass fakes.
Use ``TestClient(app)`` as a context manager, so that the lifespan runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from backend import __version__
from backend.server.auth import GuardMiddleware
from backend.server.budget import MemoryBudget, image_pixels, job_bytes
from backend.server.catalog import MethodFactory, RegistryMethodFactory
from backend.server.config import ServerConfig
from backend.server.intake import Limits, Upload, accept_job
from backend.server.jobs import (
    IMAGE_FILE,
    RESULT_FILES,
    Job,
    JobConflict,
    JobNotFound,
    JobStatus,
    JobStore,
    ResultDamaged,
)
from backend.server.schemas import (
    ErrorOut,
    Health,
    JobList,
    JobOut,
    MaskModelDownload,
    MaskModelStatus,
    Methods,
)
from backend.server.worker import JobRunner, PipelineRunner, WorkerPool

logger = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "bad request: wrong Host header, unknown or unavailable method, options not a JSON object",
        401: "missing or wrong bearer token",
        404: "no job with this id",
        409: "the job is not in a state that allows this",
        410: "the result file is damaged or missing (checksum mismatch); the job is failed",
        413: "request body or image too large, or the job needs more memory than the server's budget",
        415: "unsupported image format",
        422: "invalid options (the field named), corrupt image, unusable mask, unreadable mesh, or a "
        "missing form field",
    }.items()
}

# Parameter types of the routes, at module level so that FastAPI can resolve the (string) annotations.
ImageField = Annotated[UploadFile, File(description="the photo: PNG, JPEG, WebP, TIFF or BMP")]
MaskField = Annotated[UploadFile | None, File(description="object mask: white on black, or alpha (optional)")]
MeshField = Annotated[UploadFile | None, File(description="a GLB mesh to refine (optional)")]
MethodField = Annotated[str | None, Form(description='registry name (default "fit")')]
OptionsField = Annotated[str, Form(description="the method's options as a JSON object (default {})")]
WaitQuery = Annotated[
    float,
    Query(
        ge=0.0,
        description="long-poll: answer when the job changes, at once when it has finished, or after this "
        "many seconds (capped by the server at 30 s)",
    ),
]


def create_app(
    config: ServerConfig,
    method_factory: MethodFactory | None = None,
    job_runner: JobRunner | None = None,
) -> FastAPI:
    """The API v1 app over ``config.jobs_dir`` (module docstring)."""
    factory = method_factory if method_factory is not None else RegistryMethodFactory()
    runner = (
        job_runner
        if job_runner is not None
        else PipelineRunner(config.max_upload_bytes, config.max_pixels, config.mask_model)
    )
    store = JobStore(config.jobs_dir, config.progress_write_interval)
    budget = MemoryBudget(config.memory_budget_bytes) if config.memory_budget_bytes else None

    def admit(job: Job) -> AbstractContextManager[object]:
        if budget is None:
            return nullcontext()
        pixels = image_pixels_of(store.job_dir(job.id) / IMAGE_FILE, config.max_pixels)
        return budget.reserve(min(job_bytes(pixels, job.options), budget.total), f"job {job.id}")

    pool = WorkerPool(
        store,
        factory,
        [config.device],
        runner,
        isolate=config.isolate_jobs,
        cancel_grace=config.cancel_grace,
        admit=admit,
    )
    limits = Limits(config.max_upload_bytes, config.max_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queued = store.recover()
        pool.start()
        for job_id in queued:
            pool.submit(job_id)
        try:
            yield
        finally:
            await run_in_threadpool(pool.stop)

    app = FastAPI(
        title="Mono2Mesh backend",
        version=__version__,
        summary="One photo -> textured 3D mesh. API v1; every route but /v1/health needs a bearer token.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.pool = pool
    app.state.budget = budget
    app.add_middleware(
        GuardMiddleware,
        allowed_hosts=config.allowed_hosts,
        token=config.token,
        max_body=config.max_upload_bytes,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    # The token is checked by GuardMiddleware; this only describes it on the OpenAPI page.
    bearer = [Security(HTTPBearer(auto_error=False, description="the token from the state file"))]

    def find(job_id: str) -> Job:
        try:
            return store.get(job_id)
        except JobNotFound:
            raise HTTPException(404, f"no job with id {job_id!r}") from None

    @app.get("/v1/health", response_model=Health, tags=["server"])
    async def health() -> dict[str, Any]:
        """Whether the server is up (no token needed); ``ready`` once the models are loaded."""
        return {"status": "ok", "version": __version__, "ready": pool.ready}

    @app.get("/v1/methods", response_model=Methods, dependencies=bearer, responses=_ERRORS, tags=["server"])
    async def methods() -> dict[str, Any]:
        """Every reconstruction method, whether it can run here, and the JSON schema of its options."""
        return {"methods": await run_in_threadpool(factory.method_info)}

    @app.post(
        "/v1/jobs",
        status_code=202,
        response_model=JobOut,
        dependencies=bearer,
        responses=_ERRORS,
        tags=["jobs"],
    )
    async def submit_job(
        image: ImageField,
        mask: MaskField = None,
        mesh: MeshField = None,
        method: MethodField = None,
        options: OptionsField = "{}",
    ) -> dict[str, Any]:
        """Queue a reconstruction; the image, mask and mesh are validated now (4xx when unusable)."""
        job = await run_in_threadpool(
            lambda: accept_job(
                store,
                factory,
                limits,
                image=Upload(image.filename, image.file.read()),
                mask=_optional_upload(mask),
                mesh=_optional_upload(mesh),
                method=method or factory.default_method,
                options_text=options,
                budget=budget,
            )
        )
        pool.submit(job.id)
        return job.to_api()

    @app.get("/v1/jobs", response_model=JobList, dependencies=bearer, responses=_ERRORS, tags=["jobs"])
    async def list_jobs() -> dict[str, Any]:
        """Every job the server knows, newest first."""
        return {"jobs": [job.to_api() for job in store.list_jobs()]}

    @app.get(
        "/v1/jobs/{job_id}", response_model=JobOut, dependencies=bearer, responses=_ERRORS, tags=["jobs"]
    )
    async def get_job(
        job_id: str,
        wait: WaitQuery = 0.0,
    ) -> dict[str, Any]:
        """The job's status, progress, stage, error and (once succeeded) result URLs."""
        find(job_id)
        await store.wait_for_change(job_id, min(wait, config.long_poll_max))
        return find(job_id).to_api()

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        response_model=JobOut,
        dependencies=bearer,
        responses=_ERRORS,
        tags=["jobs"],
    )
    async def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel: a queued job at once, a running one at its next progress step (answered once it has
        stopped, normally well within a second; poll if it still says running). 409 once finished."""
        try:
            job = store.cancel(job_id)
        except JobNotFound:
            raise HTTPException(404, f"no job with id {job_id!r}") from None
        except JobConflict as error:
            raise HTTPException(409, str(error)) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.cancel_wait
        while job.status is JobStatus.RUNNING and (remaining := deadline - loop.time()) > 0:
            await store.wait_for_change(job_id, remaining)
            job = find(job_id)
        return job.to_api()

    for kind, (route, _, media_type) in RESULT_FILES.items():
        _add_result_route(app, store, kind, route, media_type, bearer)
    _add_mask_model_routes(app, config, bearer)
    return app


_MASK_MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "unknown or invalid model name"},
    401: _ERRORS[401],
    502: {"model": ErrorOut, "description": "download failed: unreachable, checksum mismatch, not a model"},
    503: {"model": ErrorOut, "description": "onnxruntime is not installed: a model cannot be checked or run"},
}


def _add_mask_model_routes(app: FastAPI, config: ServerConfig, dependencies: list[Any]) -> None:
    from backend.imaging.salient import (
        DEFAULT_MODEL,
        MaskModelDownloadError,
        MaskModelError,
        MaskModelRuntimeMissing,
        download_model,
        mask_model_status,
    )

    downloading = threading.Lock()

    def status() -> dict[str, Any]:
        return mask_model_status(config.mask_model, config.mask_model_url)

    @app.get(
        "/v1/mask-model",
        response_model=MaskModelStatus,
        dependencies=dependencies,
        responses=_MASK_MODEL_ERRORS,
        tags=["mask model"],
    )
    async def mask_model() -> dict[str, Any]:
        """Whether jobs without a mask or alpha channel are segmented by a salient-object model (else
        GrabCut), which file, where it was looked for and why none can be used."""
        return await run_in_threadpool(status)

    @app.post(
        "/v1/mask-model/download",
        response_model=MaskModelStatus,
        dependencies=dependencies,
        responses=_MASK_MODEL_ERRORS,
        tags=["mask model"],
    )
    async def download_mask_model(body: MaskModelDownload | None = None) -> dict[str, Any]:
        """Download a mask model (default u2netp, ~4.6 MB) into the cache folder, check its checksum
        and that onnxruntime loads it, then answer the new status. Nothing else ever downloads."""
        name = (body.name if body is not None else None) or DEFAULT_MODEL

        def fetch() -> dict[str, Any]:
            with downloading:
                download_model(name, base_url=config.mask_model_url)
            return status()

        try:
            return await run_in_threadpool(fetch)
        except MaskModelRuntimeMissing as error:
            raise HTTPException(503, str(error)) from None
        except MaskModelDownloadError as error:
            logger.warning("mask model download failed: %s", error)
            raise HTTPException(502, str(error)) from None
        except MaskModelError as error:
            raise HTTPException(400, str(error)) from None


def _add_result_route(
    app: FastAPI, store: JobStore, kind: str, route: str, media_type: str, dependencies: list[Any]
) -> None:
    async def download(job_id: str) -> FileResponse:
        try:
            job = store.get(job_id)
        except JobNotFound:
            raise HTTPException(404, f"no job with id {job_id!r}") from None
        if job.status is not JobStatus.SUCCEEDED:
            detail = f"job {job_id} has no results: it is {job.status.value}"
            raise HTTPException(409, f"{detail} ({job.error})" if job.error else detail)
        try:
            path = await run_in_threadpool(store.verified_result, job_id, kind)
        except ResultDamaged as error:
            raise HTTPException(410, f"job {job_id}: {error}; run the job again") from None
        except OSError:
            raise HTTPException(404, f"the {route} of job {job_id} is missing from its folder") from None
        return FileResponse(path, media_type=media_type)

    download.__doc__ = (
        f"The {kind} result ({media_type}) of a succeeded job, checked against the checksum recorded "
        "when it was written; 409 before it has succeeded, 410 when it is damaged."
    )
    app.add_api_route(
        f"/v1/jobs/{{job_id}}/{route}",
        download,
        methods=["GET"],
        name=f"download_{kind}",
        dependencies=dependencies,
        responses={**_ERRORS, 200: {"content": {media_type: {}}, "description": f"the {route}"}},
        response_class=FileResponse,
        tags=["results"],
    )


def image_pixels_of(path: Path, fallback: int) -> int:
    """Pixel count of the image file at ``path`` from its header; ``fallback`` when unreadable."""
    try:
        pixels = image_pixels(path.read_bytes())
    except OSError:
        return fallback
    return fallback if pixels is None else pixels


def _optional_upload(upload: UploadFile | None) -> Upload | None:
    """The upload's name and bytes; None for an absent field or an empty part without a file name."""
    if upload is None:
        return None
    data = upload.file.read()
    if not data and not upload.filename:
        return None
    return Upload(upload.filename, data)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    problems = []
    for item in error.errors() if isinstance(error, RequestValidationError) else []:
        location = ".".join(
            str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")
        )
        problems.append(
            f"{location}: {item.get('msg', 'invalid')}" if location else item.get("msg", "invalid")
        )
    return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=422)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": f"internal error: {type(error).__name__}: {error}"}, status_code=500)
