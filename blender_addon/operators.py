"""Operators: thin glue between the panel and ``workflow``, ``transfer`` and ``session``.

Each operator reports errors with ``self.report({'ERROR'}, message)`` and returns ``CANCELLED``;
messages come from ``BackendError`` and ``ValueError`` texts, which name what to do. Reconstruct,
Refine and Start Backend return at once: a local backend that is not running is launched and the
submission waits for it in ``session.poll_start`` (a timer), and jobs are polled by
``session.poll_once``. Their requests (upload, methods, health, cancel) run on worker threads
(``session.run_task``: a click waits at most ``session.INLINE_WAIT`` s); Stop Backend does not wait
for the process to exit; a backend known not to answer fails the click at once. The hidden ``wait``
option of Reconstruct and Refine blocks instead, for scripts and background mode.

Mask model (preferences): Check Mask Model and Download Mask Model send their request through
``masks.request`` (a worker thread, the same rules; the hidden ``wait`` blocks); a slow answer shows in
the preferences' box, not as a report. The mask of a result: Open Mask shows the active result's mask
image in an Image Editor (one already open, else a new window); Use This Mask makes it the scene's
mask (``mask_path``, with the result's photo as the scene's photo) so it can be painted or replaced
and sent again.
"""

from functools import partial
from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty

from . import importer, masks, session, transfer, workflow
from .client import BackendClient, BackendError

_ERRORS = (BackendError, ValueError, OSError, RuntimeError, TimeoutError)


class MONO2MESH_OT_reconstruct(bpy.types.Operator):
    """Send the photo to the backend and import the textured mesh when it is done"""

    bl_idname = "mono2mesh.reconstruct"
    bl_label = "Reconstruct from Image"
    bl_options = {"REGISTER"}  # noqa: RUF012 (a set, as Blender requires)

    wait: BoolProperty(
        name="Wait", description="Block until the job is done", options={"HIDDEN", "SKIP_SAVE"}
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and not context.scene.mono2mesh.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        settings = scene.mono2mesh
        settings.job_id = ""
        settings.job_status = "submitting"
        try:
            workflow.check_inputs(scene)  # before a backend is started for nothing
            if self.wait:
                workflow.submit_reconstruction(scene, session.get_client(context), wait=True)
                return {"FINISHED"}
            client = session.ensure_backend(scene.name, partial(_submit_later, scene.name), context)
            if client is None:
                settings.job_status = "starting"
                self.report({"INFO"}, "Starting the backend; the photo is sent when it answers")
            else:
                workflow.submit_reconstruction(scene, client)
        except _ERRORS as error:
            if settings.job_status in ("submitting", "starting"):
                settings.job_status = "failed"
            session.set_message(settings, str(error), error=True)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


def _submit_later(scene_name: str, client: BackendClient) -> None:
    """Send the scene's reconstruction once a starting backend answers (from ``session.poll_start``)."""
    scene = bpy.data.scenes.get(scene_name)
    if scene is None or scene.mono2mesh.job_status != "starting":
        return  # the scene is gone, or the artist canceled while the backend was starting
    scene.mono2mesh.job_status = "submitting"
    workflow.submit_reconstruction(scene, client)


def _refine_later(scene_name: str, object_name: str, client: BackendClient) -> None:
    """Send a refinement once a starting backend answers (from ``session.poll_start``)."""
    scene = bpy.data.scenes.get(scene_name)
    mesh_object = bpy.data.objects.get(object_name)
    if scene is None or scene.mono2mesh.job_status != "starting":
        return
    if mesh_object is None:
        raise ValueError(f"The object {object_name} to refine is gone")
    scene.mono2mesh.job_status = "submitting"
    workflow.submit_refinement(scene, mesh_object, client)


class MONO2MESH_OT_cancel(bpy.types.Operator):
    """Cancel the scene's running job"""

    bl_idname = "mono2mesh.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}  # noqa: RUF012 (a set, as Blender requires)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and context.scene.mono2mesh.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.mono2mesh
        job_id = settings.job_id
        was_starting = settings.job_status == "starting"
        # nothing will be imported for it, whatever the backend says
        job = session.jobs.pop(job_id, None)
        settings.job_status = "canceled"
        session.set_message(settings, "Canceled")
        if was_starting or not job_id:  # nothing sent yet (a photo being sent is canceled once sent)
            return {"FINISHED"}
        try:  # on a worker: a quick answer's error is reported here, a slow one printed later
            client = job.client if job is not None and job.client is not None else None
            client = client or session.get_client(context, start=False)
            session.cancel_in_background(client, job_id, wait=session.INLINE_WAIT)
        except BackendError as error:  # already finished (409) or backend gone: nothing to stop
            self.report({"WARNING"}, str(error))
        return {"FINISHED"}


class MONO2MESH_OT_refine(bpy.types.Operator):
    """Send the active result, with your edits, and its photo back to the backend to refine it"""

    bl_idname = "mono2mesh.refine"
    bl_label = "Refine"
    # no "UNDO": submitting changes nothing undoable; the finished refinement pushes its own step
    bl_options = {"REGISTER"}  # noqa: RUF012 (a set, as Blender requires)

    wait: BoolProperty(
        name="Wait", description="Block until the job is done", options={"HIDDEN", "SKIP_SAVE"}
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return (
            obj is not None
            and obj.type == "MESH"
            and importer.PROPERTY_SOURCE in obj
            and not context.scene.mono2mesh.busy
        )

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        settings = scene.mono2mesh
        mesh_object = context.active_object
        if mesh_object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            workflow.check_refinable(mesh_object)
            if self.wait:
                workflow.submit_refinement(scene, mesh_object, session.get_client(context), wait=True)
                return {"FINISHED"}
            later = partial(_refine_later, scene.name, mesh_object.name)
            client = session.ensure_backend(scene.name, later, context)
            if client is None:
                settings.job_id = ""
                settings.job_status = "starting"
                self.report({"INFO"}, "Starting the backend; the mesh is sent when it answers")
            else:
                workflow.submit_refinement(scene, mesh_object, client)
        except _ERRORS as error:
            if settings.job_status == "starting":
                settings.job_status = "failed"
            session.set_message(settings, str(error), error=True)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


class MONO2MESH_OT_transfer_texture(bpy.types.Operator):
    """Give the active object the texture of the other selected object (copy or closest-point transfer)"""

    bl_description = (
        "Give the active object the texture of the other selected object: the image itself when their "
        "UV layouts are the same, else each texel's colour from the closest point of the source (both "
        "meshes normalised to their bounding boxes), computed in the background with a Cancel. Nothing "
        "is applied when more than 5 % of the texels are out of reach, unless Apply Anyway"
    )

    bl_idname = "mono2mesh.transfer_texture"
    bl_label = "Transfer Texture"
    # no "UNDO": starting changes nothing undoable; applying the result pushes its own step
    bl_options = {"REGISTER"}  # noqa: RUF012 (a set, as Blender requires)

    wait: BoolProperty(
        name="Wait", description="Block until the transfer is done", options={"HIDDEN", "SKIP_SAVE"}
    )
    force: BoolProperty(
        name="Apply Anyway",
        description="Apply the transfer even when more than 5 % of the target's texels are out of the "
        "source's reach (they get the mean colour)",
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        target = context.active_object
        others = [obj for obj in context.selected_objects if obj != target and obj.type == "MESH"]
        return (
            target is not None
            and target.type == "MESH"
            and len(others) == 1
            and not transfer.running(context.scene.name)
        )

    def execute(self, context: bpy.types.Context) -> set[str]:
        target = context.active_object
        source = next(obj for obj in context.selected_objects if obj != target and obj.type == "MESH")
        scene_name = context.scene.name
        resolution = context.scene.mono2mesh.bake_resolution
        if target.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            pending = transfer.jobs.get(scene_name)
            if (
                self.force
                and pending is not None
                and pending.state == "refused"
                and (pending.source_name, pending.target_name) == (source.name, target.name)
                and pending.resolution == resolution
            ):
                pending.apply()  # the refused result, computed already
                self.report({"WARNING"}, pending.message)
                return {"FINISHED"}
            if transfer.same_uv_layout(source, target):
                transfer.copy_texture(source, target)
                self.report({"INFO"}, f"Texture of {source.name} copied onto {target.name} (same UV layout)")
                return {"FINISHED"}
            output = session.output_root(context) / "transfers"
            job = transfer.TransferJob(source, target, output, resolution, self.force, scene_name)
            if not self.wait:
                transfer.start(job)
                self.report({"INFO"}, f"Transferring the texture of {source.name} onto {target.name}")
                return {"FINISHED"}
            transfer.jobs[scene_name] = job.run()
        except _ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if job.state != "done":
            self.report({"ERROR"}, job.message)
            return {"CANCELLED"}
        self.report({"INFO"}, job.message)
        return {"FINISHED"}


class MONO2MESH_OT_cancel_transfer(bpy.types.Operator):
    """Stop the running texture transfer; the target keeps its texture"""

    bl_idname = "mono2mesh.cancel_transfer"
    bl_label = "Cancel Transfer"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and transfer.running(context.scene.name)

    def execute(self, context: bpy.types.Context) -> set[str]:
        transfer.cancel(context.scene.name)
        self.report({"INFO"}, "Texture transfer canceled")
        return {"FINISHED"}


class MONO2MESH_OT_start_backend(bpy.types.Operator):
    """Start the local backend (or check the URL) and fetch its methods"""

    bl_idname = "mono2mesh.start_backend"
    bl_label = "Start Backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not session.backend_starting()

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene_name = context.scene.name
        try:
            client = session.ensure_backend(scene_name, context=context)
            if client is None:
                self.report({"INFO"}, "Starting the backend")
                return {"FINISHED"}
            session.check_answering(client)
            # health and methods on a worker; a quick answer is reported here, a slow one later
            text = session.run_task(
                lambda: (client.health(timeout=session.HEALTH_TIMEOUT), client.methods()),
                partial(_backend_answered, scene_name, client),
                partial(_backend_failed, scene_name),
                client=client,
                label="health",
            )
        except BackendError as error:
            session.set_message(context.scene.mono2mesh, str(error), error=True)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Checking the backend at {client.url}" if text is session.PENDING else text)
        return {"FINISHED"}


def _backend_answered(scene_name: str, client: BackendClient, answer: tuple[dict, list]) -> str:
    """Main thread: Start Backend's health and methods answers arrived."""
    health, fetched = answer
    session.apply_methods(fetched)
    text = f"Backend {health.get('version')} at {client.url}"
    scene = bpy.data.scenes.get(scene_name)
    session.set_message(scene.mono2mesh if scene is not None else None, text)
    return text


def _backend_failed(scene_name: str, error: Exception) -> None:
    scene = bpy.data.scenes.get(scene_name)
    session.set_message(scene.mono2mesh if scene is not None else None, str(error), error=True)
    print(f"Mono2Mesh: {error}")


class MONO2MESH_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend this Blender session started"""

    bl_idname = "mono2mesh.stop_backend"
    bl_label = "Stop Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        stopped = session.stop_backend()
        self.report({"INFO"}, "Backend stopped" if stopped else "No local backend was running")
        return {"FINISHED"}


class MONO2MESH_OT_check_mask_model(bpy.types.Operator):
    """Ask the backend whether it has its salient-object mask model (nothing is downloaded)"""

    bl_idname = "mono2mesh.check_mask_model"
    bl_label = "Check Mask Model"

    wait: BoolProperty(
        name="Wait", description="Block until the backend answers", options={"HIDDEN", "SKIP_SAVE"}
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not masks.state.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        return _mask_model_request(self, context, masks.CHECK, "")


class MONO2MESH_OT_download_mask_model(bpy.types.Operator):
    """Have the backend download its salient-object mask model now (a few MB, from the internet), so
    photos without a mask are segmented by the model instead of GrabCut"""

    bl_idname = "mono2mesh.download_mask_model"
    bl_label = "Download Mask Model"

    wait: BoolProperty(
        name="Wait", description="Block until the download is done", options={"HIDDEN", "SKIP_SAVE"}
    )
    name: StringProperty(
        name="Model", description="Model to download; empty: the backend's default", options={"SKIP_SAVE"}
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not masks.state.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        return _mask_model_request(self, context, masks.DOWNLOAD, self.name)


def _mask_model_request(
    operator: bpy.types.Operator, context: bpy.types.Context, kind: str, name: str
) -> set[str]:
    try:
        text = masks.request(kind, context, wait=operator.wait, name=name)
    except _ERRORS as error:
        operator.report({"ERROR"}, str(error))
        return {"CANCELLED"}
    if text is None:
        operator.report({"INFO"}, "Starting the backend; the request is sent when it answers")
    elif text is session.PENDING:
        what = "Downloading the mask model" if kind == masks.DOWNLOAD else "Asking the backend"
        operator.report({"INFO"}, f"{what}; the Mask Model box in the preferences shows the answer")
    else:
        operator.report({"INFO"}, text)
    return {"FINISHED"}


def _mask_result(context: bpy.types.Context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if obj is not None and obj.get(importer.PROPERTY_MASK) else None


def image_editors(context: bpy.types.Context) -> list[bpy.types.Area]:
    """The Image Editor areas of the open windows (the context's window first)."""
    window_manager = context.window_manager
    windows = list(window_manager.windows) if window_manager is not None else []
    if context.window in windows:
        windows.remove(context.window)
        windows.insert(0, context.window)
    return [area for window in windows for area in window.screen.areas if area.type == "IMAGE_EDITOR"]


def show_image(context: bpy.types.Context, image: bpy.types.Image, paint: bool = False) -> bool:
    """Show ``image`` in an open Image Editor (Paint mode with ``paint``); False when none is open."""
    editors = image_editors(context)
    if not editors:
        return False
    space = editors[0].spaces.active
    space.image = image
    if paint:
        space.ui_mode = "PAINT"
    editors[0].tag_redraw()
    return True


class MONO2MESH_OT_show_mask(bpy.types.Operator):
    """Show the mask the backend used for the active result in an Image Editor"""

    bl_idname = "mono2mesh.show_mask"
    bl_label = "Open Mask"

    paint: BoolProperty(name="Paint", description="Open it in Paint mode", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _mask_result(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _mask_result(context)
        assert obj is not None  # poll
        try:
            image = importer.ensure_mask_image(obj)
        except (ValueError, RuntimeError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not show_image(context, image, self.paint) and not _new_image_window(context, image, self.paint):
            self.report({"WARNING"}, f"Open an Image Editor and pick the image {image.name!r}")
            return {"FINISHED"}
        self.report({"INFO"}, f"{image.name} shown in the Image Editor")
        return {"FINISHED"}


def _new_image_window(context: bpy.types.Context, image: bpy.types.Image, paint: bool) -> bool:
    """Open a new window whose one area is an Image Editor showing ``image`` (False without a UI)."""
    window_manager = context.window_manager
    if bpy.app.background or window_manager is None or context.window is None:
        return False
    before = set(window_manager.windows)
    try:
        bpy.ops.wm.window_new()
    except RuntimeError:
        return False
    created = [window for window in window_manager.windows if window not in before]
    if not created:
        return False
    area = max(created[0].screen.areas, key=lambda area: area.width * area.height)
    area.type = "IMAGE_EDITOR"
    area.spaces.active.image = image
    if paint:
        area.spaces.active.ui_mode = "PAINT"
    return True


class MONO2MESH_OT_use_mask(bpy.types.Operator):
    """Make the mask of the active result the scene's mask (and its photo the scene's photo), to paint
    it in the Image Editor (Paint mode; save it) or replace it, then Reconstruct again"""

    bl_idname = "mono2mesh.use_mask"
    bl_label = "Use This Mask"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (a set, as Blender requires)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _mask_result(context) is not None and not context.scene.mono2mesh.busy

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _mask_result(context)
        assert obj is not None  # poll
        settings = context.scene.mono2mesh
        mask = Path(str(obj[importer.PROPERTY_MASK]))
        try:
            image = importer.ensure_mask_image(obj)
            if not mask.is_file():  # the file is gone but the .blend kept the image's pixels
                image.filepath_raw = str(mask)
                image.file_format = "PNG"
                mask.parent.mkdir(parents=True, exist_ok=True)
                image.save()
        except (ValueError, RuntimeError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        settings.mask_path = str(mask)
        text = f"Mask: {mask.name}"
        photo = Path(str(obj.get(importer.PROPERTY_SOURCE) or ""))
        current = Path(bpy.path.abspath(settings.image_path)) if settings.image_path else None
        if photo.is_file() and (settings.image_source != "FILE" or current != photo):
            settings.image_source = "FILE"
            settings.image_path = str(photo)
            text += f", photo: {photo.name}"
        shown = show_image(context, image, paint=True)
        text += "; paint it " + ("in the Image Editor" if shown else "(Open Mask, Paint mode)")
        text += " or choose another mask file, then Reconstruct"
        session.set_message(settings, text)
        self.report({"INFO"}, text)
        return {"FINISHED"}


classes = (
    MONO2MESH_OT_reconstruct,
    MONO2MESH_OT_cancel,
    MONO2MESH_OT_refine,
    MONO2MESH_OT_transfer_texture,
    MONO2MESH_OT_cancel_transfer,
    MONO2MESH_OT_start_backend,
    MONO2MESH_OT_stop_backend,
    MONO2MESH_OT_check_mask_model,
    MONO2MESH_OT_download_mask_model,
    MONO2MESH_OT_show_mask,
    MONO2MESH_OT_use_mask,
)
