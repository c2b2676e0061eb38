"""Response models of HTTP API v1: the JSON shapes a client (the Blender add-on) is written against.

They document the API on the OpenAPI page and are the ``response_model`` of each route; the field lists
are the contract, so a change here is a change of the API version.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatusName = Literal["queued", "running", "succeeded", "failed", "canceled"]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(description="backend version")
    ready: bool = Field(description="false while the worker still loads its models; jobs queue meanwhile")


class MethodDescription(BaseModel):
    name: str
    description: str
    needs_checkpoint: bool
    available: bool
    reason: str | None = Field(description="why the method cannot run now, else null")
    options_schema: dict[str, Any] = Field(description="JSON schema of the method's options")
    checkpoints: list[dict[str, Any]] = Field(
        default_factory=list,
        description="installed checkpoints, newest first: name, path, created, step, metrics",
    )


class Methods(BaseModel):
    methods: list[MethodDescription]


class JobOut(BaseModel):
    id: str
    status: JobStatusName
    progress: float = Field(ge=0.0, le=1.0, description="fraction of the whole job, never decreasing")
    stage: str | None = Field(description='"mask", "shape", "texture" or "export"; null before it runs')
    error: str | None = Field(description="what went wrong, for a failed job; else null")
    method: str
    options: dict[str, Any] = Field(description="the method's options with defaults filled in")
    image_name: str = Field(description="the client's file name, as text only")
    created: float = Field(description="unix time")
    updated: float = Field(description="unix time of the last change")
    results: dict[str, str] = Field(
        description="kind (glb, preview, report, texture, mask) -> URL path, once succeeded; else {}"
    )


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="newest first")


class ErrorOut(BaseModel):
    detail: str = Field(description="a message naming the problem")


class MaskModelStatus(BaseModel):
    """``GET /v1/mask-model`` (and the answer of ``POST /v1/mask-model/download``)."""

    available: bool = Field(description="a model file was found and onnxruntime can run it")
    path: str | None = Field(description="the model file jobs will use, or null")
    name: str = Field(description='the model\'s name (its file stem), or the default "u2netp" when none')
    source: Literal["option", "environment", "cache"] | None = Field(
        description="where the path came from: serve --mask-model, $MONO2MESH_MASK_MODEL, the cache folder"
    )
    searched: list[str] = Field(description="the places looked at, in order")
    reason: str | None = Field(description="why no model can be used (null when one can)")
    download_url: str = Field(description="what POST /v1/mask-model/download fetches by default")


class MaskModelDownload(BaseModel):
    """The optional body of ``POST /v1/mask-model/download``."""

    name: str | None = Field(
        None,
        description='a known model: "u2netp" (default, ~4.6 MB), "u2net", "isnet-general-use", '
        '"birefnet-general-lite"',
    )
