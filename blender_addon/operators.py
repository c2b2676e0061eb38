"""Operators: thin glue between the panel and ``workflow``, ``transfer`` and ``session``.

Each operator reports errors with ``self.report({'ERROR'}, message)`` and returns ``CANCELLED``;
messages come from ``BackendError`` and ``ValueError`` texts, which name what to do. Reconstruct and
Refine return at once (the timer in ``session`` polls); their hidden ``wait`` option blocks instead,
for scripts.
"""

import bpy
from bpy.props import BoolProperty

from . import importer, session, transfer, workflow
from .client import BackendError

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
        settings = context.scene.mono2mesh
        settings.job_status = "submitting"
        try:
            workflow.submit_reconstruction(context, wait=self.wait)
        except _ERRORS as error:
            if settings.job_status == "submitting":
                settings.job_status = "failed"
            session.set_message(settings, str(error), error=True)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


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
        session.jobs.pop(job_id, None)  # nothing will be imported for it, whatever the backend says
        settings.job_status = "canceled"
        session.set_message(settings, "Canceled")
        try:
            session.get_client(context, start=False).cancel(job_id)
        except BackendError as error:  # already finished (409) or backend gone: nothing to stop
            self.report({"WARNING"}, str(error))
        return {"FINISHED"}


class MONO2MESH_OT_refine(bpy.types.Operator):
    """Send the active result, with your edits, and its photo back to the backend to refine it"""

    bl_idname = "mono2mesh.refine"
    bl_label = "Refine"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (a set, as Blender requires)

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
        settings = context.scene.mono2mesh
        if context.active_object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        try:
            workflow.submit_refinement(context, context.active_object, wait=self.wait)
        except _ERRORS as error:
            session.set_message(settings, str(error), error=True)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return {"FINISHED"}


class MONO2MESH_OT_transfer_texture(bpy.types.Operator):
    """Give the active object the texture of the other selected object (copy or Cycles bake)"""

    bl_idname = "mono2mesh.transfer_texture"
    bl_label = "Transfer Texture"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (a set, as Blender requires)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        target = context.active_object
        others = [obj for obj in context.selected_objects if obj != target and obj.type == "MESH"]
        return target is not None and target.type == "MESH" and len(others) == 1

    def execute(self, context: bpy.types.Context) -> set[str]:
        target = context.active_object
        source = next(obj for obj in context.selected_objects if obj != target and obj.type == "MESH")
        window_manager = context.window_manager

        def progress(fraction: float, stage: str) -> None:
            window_manager.progress_update(int(fraction * 100))
            print(f"Mono2Mesh: transfer {stage} ({fraction:.0%})")

        window_manager.progress_begin(0, 100)
        try:
            output = session.output_root(context) / "transfers"
            kind = transfer.transfer_texture(
                source, target, output, context.scene.mono2mesh.bake_resolution, progress
            )
        except _ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        finally:
            window_manager.progress_end()
        how = "copied (same topology)" if kind == "copy" else "baked with Cycles"
        self.report({"INFO"}, f"Texture of {source.name} {how} onto {target.name}")
        return {"FINISHED"}


class MONO2MESH_OT_start_backend(bpy.types.Operator):
    """Start the local backend (or check the URL) and fetch its methods"""

    bl_idname = "mono2mesh.start_backend"
    bl_label = "Start Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            client = session.get_client(context)
            session.refresh_methods(client)
            health = client.health()
        except BackendError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Backend {health.get('version')} at {client.url}")
        return {"FINISHED"}


class MONO2MESH_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend this Blender session started"""

    bl_idname = "mono2mesh.stop_backend"
    bl_label = "Stop Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        stopped = session.stop_backend()
        self.report({"INFO"}, "Backend stopped" if stopped else "No local backend was running")
        return {"FINISHED"}


classes = (
    MONO2MESH_OT_reconstruct,
    MONO2MESH_OT_cancel,
    MONO2MESH_OT_refine,
    MONO2MESH_OT_transfer_texture,
    MONO2MESH_OT_start_backend,
    MONO2MESH_OT_stop_backend,
)
