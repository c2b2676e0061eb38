"""The local backend server behind ``mono2mesh serve``: HTTP API v1, job queue, on-disk job store, auth.

The Blender add-on (or any client) talks to it over HTTP on the loopback interface; every route but
``GET /v1/health`` (and the OpenAPI pages ``/docs``, ``/redoc``, ``/openapi.json``, which hold no data and
start no work) needs ``Authorization: Bearer <token>``. The token, the URL and the pid are in the state
file that the server writes (mode 0600) once its socket is listening.

Routes (FastAPI's ``/docs`` page is the reference):

- ``GET /v1/health`` -> ``{"status": "ok", "version", "ready"}``; ``ready`` is false while models load.
- ``GET /v1/methods`` -> ``{"methods": [...]}`` (``backend.methods.registry.method_info``).
- ``POST /v1/jobs`` (multipart: ``image``, optional ``mask``, optional ``mesh`` (GLB to refine),
  ``method`` (default "fit"), ``options`` (a JSON object, default "{}")) -> 202 with the job.
- ``GET /v1/jobs`` -> ``{"jobs": [...]}``, newest first; ``GET /v1/jobs/{id}`` -> the job;
  ``GET /v1/jobs/{id}?wait=S`` long-polls: it answers when the job changes, at once when it is finished,
  or after S seconds (at most 30).
- ``GET /v1/jobs/{id}/result.glb``, ``/preview.png``, ``/report.json``, ``/texture.png``, ``/mask.png``.
- ``POST /v1/jobs/{id}/cancel`` -> the job.
- ``GET /v1/mask-model`` -> ``{"available", "path", "name", "source", "searched", "reason",
  "download_url"}``: the salient-object mask model jobs use (``backend.imaging.salient``).
- ``POST /v1/mask-model/download`` (optional JSON body ``{"name": "u2netp"}``) -> downloads that model
  into the cache folder, then answers the new status; 400 unknown name, 502 download failed (unreachable,
  checksum mismatch, not a model; nothing kept), 503 onnxruntime missing. Nothing else downloads.

Status codes: 202 submitted; 400 Host header not this server, unknown method, options that are not
valid JSON or not a JSON object, method unavailable (missing checkpoint); 401 no or wrong token; 404
unknown job id; 409 a result of a job that has not succeeded, or cancel of a finished job; 410 a result
file that no longer matches the checksum recorded when it was written (the job is then failed with
"result damaged: ..."); 413 body or image too large, or a job whose estimated memory exceeds the
server's budget; 415 unsupported image format; 422 options invalid for the method (the message names
the field: out of its range, not finite, unknown), options nested too deep, too long or holding a too
long number, corrupt image, unusable mask, unreadable mesh, missing form field. 5xx only for faults of
the server itself (503 beyond ``MAX_CONNECTIONS`` connections).

Modules: ``config`` (settings), ``jobs`` (job records, their folders, result checksums), ``worker``
(queue and threads), ``isolation`` (jobs in a child process that a cancel can kill), ``budget`` (memory
estimates and the budget), ``catalog`` (where methods come from), ``intake`` (validating a
submission), ``auth`` (token, Host header and body-size guard), ``connections`` (idle and half-open
connection timeouts), ``schemas`` (response models), ``app`` (the FastAPI app), ``command``
(``mono2mesh serve``).
"""
