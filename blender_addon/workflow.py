"""Submitting reconstruction and refinement jobs, and finishing them (download + import).

The operators are thin glue over these functions: ``submit_reconstruction`` and ``submit_refinement``
send a job of a scene to ``client`` and hand it to ``session`` for polling (or, with ``wait=True``,
block until it is done and finish it at once, the path for scripts and background mode where timers
never fire). They take the scene, not the operator's context, because the UI may call them later,
from the timer that sees a starting backend answer.
``finish_reconstruction`` and ``finish_refinement`` are the session's finishers: they run on the main
thread, download the result files into the job's output folder and import them (welded, placed on
the floor at the recorded cursor, the texture stored as the scene's Textures setting says; with
"As in the Photo" also a camera with the photo behind it), mark the scene's job succeeded and then
record exactly one undo step named "Mono2Mesh: Reconstruct <name>" / "Mono2Mesh: Refine <name>"
(``push_undo``: the import runs from a timer, which Blender's undo system does not see), so undo
removes only the result and redo brings it back. The mask the backend used (``<stem>_mask.png``,
downloaded with the other files when the backend has it) is attached to the result
(``importer.attach_mask``): loaded as the image "<object> mask", its source shown by the panel.
``check_inputs`` saves a mask image painted in Blender (unsaved changes to the image whose file is the
scene's mask) before it is sent, so "Use This Mask", paint, Reconstruct sends what was painted.
"""

import os
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import bpy

from . import importer, session
from .client import BackendClient, BackendError, BackendHTTPError

RESULT_KINDS = ("glb", "texture", "preview", "report")
OPTIONAL_KINDS = session.OPTIONAL_KINDS  # downloaded when the backend has them ("mask")


def safe_name(text: str) -> str:
    """A file and object name made of the photo's stem (letters, digits, ``-``, ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(text).stem).strip("_") or "photo"


def image_file(settings: Any, scratch: Path) -> Path:
    """The photo to upload: the chosen file, or the chosen Blender image (saved to ``scratch`` if it
    has no file on disk). Raises ``ValueError`` when nothing usable is chosen."""
    if settings.image_source == "IMAGE":
        image = settings.image
        if image is None:
            raise ValueError("Choose an image")
        path = Path(bpy.path.abspath(image.filepath)) if image.filepath else None
        if path is not None and path.is_file() and not image.is_dirty and image.packed_file is None:
            return path
        scratch.mkdir(parents=True, exist_ok=True)
        target = scratch / f"{safe_name(image.name)}.png"
        image.save(filepath=str(target))
        return target
    if not settings.image_path:
        raise ValueError("Choose a photo")
    path = Path(bpy.path.abspath(settings.image_path))
    if not path.is_file():
        raise ValueError(f"Photo not found: {path}")
    return path


def _job_folder(root: Path, stem: str, job_id: str) -> Path:
    folder = root / f"{stem}-{job_id[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_inputs(scene: bpy.types.Scene) -> tuple[Path, Path | None]:
    """The scene's photo and mask files; ``ValueError`` naming what is missing."""
    settings = scene.mono2mesh
    photo = image_file(settings, session.output_root() / "_inputs")
    mask = Path(bpy.path.abspath(settings.mask_path)) if settings.mask_path else None
    if mask is not None:
        save_painted_mask(mask)
        if not mask.is_file():
            raise ValueError(f"Mask not found: {mask}")
    return photo, mask


def save_painted_mask(mask: Path) -> bpy.types.Image | None:
    """Save the Blender image whose file is ``mask`` when it has unsaved changes (painted in the Image
    Editor); return it, or None when there is none to save. ``OSError`` when it cannot be written."""
    for image in bpy.data.images:
        if image.source != "FILE" or not image.filepath or image.packed_file is not None:
            continue
        if not image.is_dirty or Path(bpy.path.abspath(image.filepath)) != mask:
            continue
        try:
            image.save()
        except RuntimeError as error:
            raise OSError(f"Cannot save the painted mask {image.name} to {mask}: {error}") from error
        return image
    return None


def submit_reconstruction(
    scene: bpy.types.Scene, client: BackendClient, wait: bool = False, timeout: float = 600.0
) -> session.ActiveJob | bpy.types.Object:
    """Send the scene's chosen photo; return the tracked job (or, with ``wait``, the new object).

    Without ``wait`` the upload runs on a worker thread (see ``_send``): ``session.PENDING`` is
    returned when it takes longer than ``session.INLINE_WAIT``, and the job is tracked when it is sent.
    """
    settings = scene.mono2mesh
    root = session.output_root()
    photo, mask = check_inputs(scene)
    method = settings.method
    location = tuple(scene.cursor.location)
    target_size = settings.target_size

    def options_for(settings: Any, info: dict[str, Any] | None) -> dict[str, Any]:
        if info is not None and not info["available"]:
            raise ValueError(f"Method {method} is unavailable: {info['reason']}")
        return dict(settings.method_options(info["options_schema"] if info else None))

    def upload(options: dict[str, Any]) -> dict[str, Any]:  # worker thread: no bpy
        return client.submit(photo, mask=mask, method=method, options=options)

    def sent(scene: bpy.types.Scene, data: dict[str, Any]) -> Any:
        name = safe_name(photo.name)
        job = session.ActiveJob(
            job_id=data["id"],
            kind="reconstruct",
            scene_name=scene.name,
            name=name,
            image_path=str(photo),
            output_dir=_job_folder(root, name, data["id"]),
            method=method,
            location=location,
            target_size=target_size,
        )
        _show_submitted(scene.mono2mesh, data, "reconstruct")
        return _track_or_wait(client, job, wait, timeout)

    return _send(scene, client, method, options_for, upload, sent, wait)


def check_refinable(mesh_object: bpy.types.Object) -> Path:
    """The source photo of a result; ``ValueError`` when it is gone."""
    photo = Path(str(mesh_object.get(importer.PROPERTY_SOURCE, "")))
    if not photo.is_file():
        raise ValueError(f"The source photo of {mesh_object.name} is missing: {photo}")
    return photo


def submit_refinement(
    scene: bpy.types.Scene,
    mesh_object: bpy.types.Object,
    client: BackendClient,
    wait: bool = False,
    timeout: float = 600.0,
) -> session.ActiveJob | bpy.types.Object:
    """Send ``mesh_object`` (with the artist's edits) and its source photo as a refinement job."""
    settings = scene.mono2mesh
    photo = check_refinable(mesh_object)
    root = session.output_root()
    stem = safe_name(mesh_object.name)
    scratch = root / "_inputs"
    scratch.mkdir(parents=True, exist_ok=True)
    glb = importer.export_for_refinement(mesh_object, scratch / f"{stem}_edited.glb")
    method = str(mesh_object.get(importer.PROPERTY_METHOD) or settings.method)
    object_name = mesh_object.name

    def options_for(settings: Any, info: dict[str, Any] | None) -> dict[str, Any]:
        return dict(settings.method_options(info["options_schema"] if info else None))

    def upload(options: dict[str, Any]) -> dict[str, Any]:  # worker thread: no bpy
        return client.submit(photo, mesh=glb, method=method, options=options)

    def sent(scene: bpy.types.Scene, data: dict[str, Any]) -> Any:
        job = session.ActiveJob(
            job_id=data["id"],
            kind="refine",
            scene_name=scene.name,
            name=object_name,
            image_path=str(photo),
            output_dir=_job_folder(root, stem, data["id"]),
            method=method,
            target_object=object_name,
        )
        _show_submitted(scene.mono2mesh, data, "refine")
        return _track_or_wait(client, job, wait, timeout)

    return _send(scene, client, method, options_for, upload, sent, wait)


def _send(
    scene: bpy.types.Scene,
    client: BackendClient,
    method: str,
    options_for: Callable[[Any, dict[str, Any] | None], dict[str, Any]],
    upload: Callable[[dict[str, Any]], dict[str, Any]],
    sent: Callable[[bpy.types.Scene, dict[str, Any]], Any],
    wait: bool,
) -> Any:
    """Submit a job of ``scene``: the methods list if not known yet, ``options_for(settings, info)``
    (main thread), ``upload(options)`` -> job JSON, then ``sent(scene, data)`` (main thread).

    With ``wait`` everything runs here (scripts). Otherwise the network requests (a health check
    with a short timeout first, the methods list, the upload) run on worker threads: the scene shows
    status "starting", stage "upload" meanwhile (busy: Cancel is offered, and a job sent after a
    Cancel is canceled on the backend), and the caller waits at most ``session.INLINE_WAIT`` s in
    all; a quick upload is tracked before this returns, a slow one later from the timers. Raises at
    once when the backend is known not to answer (``session.check_answering``).
    """
    if wait:
        if not session.methods():
            session.refresh_methods(client)
        options = options_for(scene.mono2mesh, session.method_info(method))
        return sent(scene, upload(options))
    session.check_answering(client)
    scene_name = scene.name
    settings = scene.mono2mesh
    settings.job_id = ""
    settings.job_status = "starting"
    settings.job_progress = 0.0
    settings.job_stage = "upload"
    session.set_message(settings, f"Sending to {client.url}…")
    deadline = time.monotonic() + session.INLINE_WAIT
    failed = partial(_submission_failed, scene_name)

    def wanted() -> bpy.types.Scene | None:  # not canceled meanwhile (nor another file opened)
        scene = bpy.data.scenes.get(scene_name)
        return scene if scene is not None and scene.mono2mesh.job_status == "starting" else None

    def uploaded(data: dict[str, Any]) -> Any:
        scene = wanted()
        if scene is None:
            try:
                session.cancel_in_background(client, data["id"])
            except BackendError as error:
                print(f"Mono2Mesh: cancel {data['id']}: {error}")
            return None
        return sent(scene, data)

    def with_methods(fetched: list[dict[str, Any]] | None) -> Any:
        if fetched is not None:
            session.apply_methods(fetched)
        scene = wanted()
        if scene is None:
            return None
        options = options_for(scene.mono2mesh, session.method_info(method))

        def work() -> dict[str, Any]:
            if fetched is None:  # one short request first: a hung backend costs a short timeout
                client.health(timeout=session.HEALTH_TIMEOUT)
            return upload(options)

        left = max(0.0, deadline - time.monotonic())
        return session.run_task(work, uploaded, failed, client=client, wait=left, label="upload")

    if session.methods():
        return with_methods(None)

    def fetch() -> list[dict[str, Any]]:
        client.health(timeout=session.HEALTH_TIMEOUT)
        return client.methods()

    return session.run_task(
        fetch, with_methods, failed, client=client, wait=session.INLINE_WAIT, label="methods"
    )


def _submission_failed(scene_name: str, error: Exception) -> None:
    """A submission that went on in the background failed (main thread, from the timers)."""
    scene = bpy.data.scenes.get(scene_name)
    settings = scene.mono2mesh if scene is not None else None
    if settings is not None and settings.job_status in ("starting", "submitting"):
        settings.job_status = "failed"
        session.set_message(settings, str(error), error=True)
    print(f"Mono2Mesh: {error}")


def _show_submitted(settings: Any, data: dict[str, Any], kind: str) -> None:
    settings.job_id = data["id"]
    settings.job_kind = kind
    settings.job_status = data["status"]
    settings.job_progress = float(data.get("progress") or 0.0)
    settings.job_stage = data.get("stage") or ""
    session.set_message(settings, "")


def _track_or_wait(
    client: BackendClient, job: session.ActiveJob, wait: bool, timeout: float
) -> session.ActiveJob | bpy.types.Object:
    local = session.local_backend()
    job.client = client
    job.local = local if local is not None and local.client is client else None
    if not wait:
        session.track(job)
        return job
    settings = session.settings_of(job)
    is_alive = job.local.is_alive if job.local is not None else None
    try:
        data = client.wait(job.job_id, timeout=timeout, is_alive=is_alive)
    except (BackendError, TimeoutError) as error:
        message = str(error)
        if job.local is not None and not job.local.is_alive():
            message = f"The backend stopped during the job; see {job.local.log_file}"
        settings.job_status = "failed"
        session.set_message(settings, message, error=True)
        raise BackendError(message) from error
    result = session.finish(job, data)
    if result is None:
        raise BackendError(settings.message or "import failed")
    return result


def download_results(client: BackendClient, job_id: str, folder: Path, stem: str) -> dict[str, Path]:
    """Save the job's GLB, texture, preview, report and mask as ``<stem>.glb``, ``<stem>_texture.png``,
    ``<stem>_preview.png``, ``<stem>.json``, ``<stem>_mask.png``; the mask is left out (no ``"mask"``
    key) when the backend has none (404)."""
    names = {"glb": f"{stem}.glb", "texture": f"{stem}_texture.png", "preview": f"{stem}_preview.png"}
    names["report"] = f"{stem}.json"
    names["mask"] = f"{stem}_mask.png"
    # the status worker already downloaded them (off the main thread): only move them into place
    taken = session.take_prefetched(job_id)
    prefetched, ready = taken is not None, taken or {}
    files = {}
    for kind in RESULT_KINDS + OPTIONAL_KINDS:
        target = folder / names[kind]
        if kind in ready and ready[kind].is_file():
            os.replace(ready.pop(kind), target)
            files[kind] = target
        elif kind in OPTIONAL_KINDS and prefetched:
            continue  # the status worker asked already: the backend has none
        else:
            try:
                files[kind] = client.download(job_id, kind, target)
            except BackendHTTPError as error:
                if kind not in OPTIONAL_KINDS or error.status != 404:
                    raise
    for leftover in ready.values():
        leftover.unlink(missing_ok=True)
    return files


def finish_reconstruction(job: session.ActiveJob, data: dict[str, Any]) -> bpy.types.Object:
    """Download the result and import it into the job's scene at the recorded cursor location."""
    import json

    scene = bpy.data.scenes[job.scene_name]
    started = time.perf_counter()
    files = download_results(session.job_client(job), job.job_id, job.output_dir, job.name)
    report = json.loads(files["report"].read_text(encoding="utf-8"))
    collection = _target_collection(scene)
    settings = scene.mono2mesh
    mesh_object = importer.import_result(
        collection,
        files["glb"],
        files["texture"],
        name=job.name,
        location=job.location,
        target_size=job.target_size,
        properties=importer.report_properties(report, data, job.image_path),
        camera=report.get("camera"),
        texture_storage=settings.texture_storage,
    )
    mesh_object["mono2mesh_fetch_seconds"] = time.perf_counter() - started
    text = f"Imported {mesh_object.name} (IoU {report.get('silhouette_iou')})" + _attach_mask(
        mesh_object, files, report
    )
    if settings.as_in_photo:
        try:
            if importer.add_photo_camera(mesh_object, report, job.image_path, collection, scene) is None:
                text += "; no photo camera: the report has no camera"
        except (OSError, RuntimeError) as error:  # the result stays; only the camera is missing
            text += f"; no photo camera: {error}"
    _select_only(mesh_object)
    session.set_message(settings, text + _texture_note(settings, mesh_object))
    _mark_succeeded(settings)
    push_undo(f"Mono2Mesh: Reconstruct {mesh_object.name}")
    return mesh_object


def _attach_mask(mesh_object: bpy.types.Object, files: dict[str, Path], report: dict[str, Any]) -> str:
    """Attach the job's mask to the result; a note for the message when it could not be loaded."""
    try:
        importer.attach_mask(mesh_object, files.get("mask"), report)
    except (OSError, RuntimeError) as error:  # the result stays; only the mask preview is missing
        return f"; mask not loaded: {error}"
    return ""


def _texture_note(settings: Any, mesh_object: bpy.types.Object) -> str:
    if settings.texture_storage == "BESIDE_BLEND" and mesh_object.get(importer.PROPERTY_TEXTURE) == "packed":
        return "; texture packed: save the .blend first to keep textures beside it"
    return ""


def _mark_succeeded(settings: Any) -> None:
    """The job's final state, set before the undo step so that undo/redo never restore a busy scene."""
    settings.job_status = "succeeded"
    settings.job_progress = 1.0


def finish_refinement(job: session.ActiveJob, data: dict[str, Any]) -> bpy.types.Object:
    """Download the refined result and swap it into the target object's mesh (one undo step)."""
    import json

    scene = bpy.data.scenes[job.scene_name]
    mesh_object = bpy.data.objects.get(job.target_object)
    if mesh_object is None:
        raise RuntimeError(f"The object {job.target_object} to refine is gone")
    files = download_results(session.job_client(job), job.job_id, job.output_dir, safe_name(job.name))
    report = json.loads(files["report"].read_text(encoding="utf-8"))
    settings = scene.mono2mesh
    importer.replace_mesh(
        mesh_object,
        files["glb"],
        files["texture"],
        importer.report_properties(report, data, job.image_path),
        texture_storage=settings.texture_storage,
    )
    text = f"Refined {mesh_object.name}" + _attach_mask(mesh_object, files, report)
    session.set_message(settings, text + _texture_note(settings, mesh_object))
    _mark_succeeded(settings)
    push_undo(f"Mono2Mesh: Refine {mesh_object.name}")
    return mesh_object


def push_undo(message: str) -> None:
    """Record one undo step named ``message`` for changes made outside an operator (timers).

    The one helper for this in the add-on. Needs a window (the bpy module has one even in background
    mode; ``blender -b`` has none, and then nothing is recorded).
    """
    window_manager = bpy.context.window_manager
    if window_manager is None or not window_manager.windows:
        return
    window = window_manager.windows[0]
    with bpy.context.temp_override(window=window):
        bpy.ops.ed.undo_push(message=message)


def _target_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    if bpy.context.scene == scene and bpy.context.view_layer is not None:
        return bpy.context.view_layer.active_layer_collection.collection
    return scene.collection


def _select_only(mesh_object: bpy.types.Object) -> None:
    view_layer = bpy.context.view_layer
    if view_layer is None or mesh_object.name not in view_layer.objects:
        return
    for obj in view_layer.objects:
        obj.select_set(False)
    mesh_object.select_set(True)
    view_layer.objects.active = mesh_object


session.finishers["reconstruct"] = finish_reconstruction
session.finishers["refine"] = finish_refinement
