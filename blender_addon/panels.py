"""The sidebar tab "Mono2Mesh" of the 3D viewport: inputs, job progress, result info, tools.

Drawing reads the scene settings and the active object's custom properties only; it never talks
to the backend (the methods list comes from the cache that Start Backend / Reconstruct fill).
"""

import bpy

from . import importer, session, transfer


class VIEW3D_PT_mono2mesh(bpy.types.Panel):
    bl_label = "Reconstruct from Image"
    bl_idname = "VIEW3D_PT_mono2mesh"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Mono2Mesh"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.mono2mesh
        layout.prop(settings, "image_source", expand=True)
        if settings.image_source == "FILE":
            layout.prop(settings, "image_path")
        else:
            layout.template_ID(settings, "image", open="image.open")
        layout.prop(settings, "mask_path")
        layout.prop(settings, "method")
        for method in session.methods():
            if not method["available"]:
                row = layout.row()
                row.enabled = False
                row.label(text=f"{method['name']}: {method['reason']}", icon="ERROR")
        layout.prop(settings, "quality")
        layout.prop(settings, "extra_options")
        layout.prop(settings, "target_size")
        layout.prop(settings, "texture_storage")
        layout.prop(settings, "as_in_photo")
        if settings.busy:
            row = layout.row(align=True)
            text = f"{settings.job_status} {settings.job_stage}".strip()
            row.progress(factor=settings.job_progress, type="BAR", text=text)
            row.operator("mono2mesh.cancel", text="", icon="CANCEL")
        else:
            layout.operator("mono2mesh.reconstruct", icon="MESH_MONKEY")
        if settings.message:
            layout.label(text=settings.message, icon="ERROR" if settings.message_is_error else "INFO")


class VIEW3D_PT_mono2mesh_result(bpy.types.Panel):
    bl_label = "Result"
    bl_idname = "VIEW3D_PT_mono2mesh_result"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Mono2Mesh"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        obj = context.active_object
        if obj is None or importer.PROPERTY_SOURCE not in obj:
            layout.label(text="Select a reconstructed object")
        else:
            column = layout.column(align=True)
            for key, label in importer.SHOWN_PROPERTIES:
                value = obj.get(key)
                if value not in (None, ""):
                    text = f"{value:.3f}" if isinstance(value, float) else str(value)
                    column.label(text=f"{label}: {text}")
        layout.operator("mono2mesh.refine", icon="MODIFIER")
        layout.prop(context.scene.mono2mesh, "bake_resolution")
        job = transfer.jobs.get(context.scene.name)
        if job is not None and transfer.running(context.scene.name):
            row = layout.row(align=True)
            row.progress(factor=job.progress, type="BAR", text=f"Transfer: {job.stage}")
            row.operator("mono2mesh.cancel_transfer", text="", icon="CANCEL")
        else:
            layout.operator("mono2mesh.transfer_texture", icon="TEXTURE")
        about_active = job is not None and obj is not None and job.target_name == obj.name
        if about_active and job.message and job.state != "running":
            icon = "ERROR" if job.state in ("refused", "failed") else "INFO"
            layout.label(text=job.message, icon=icon)
        if about_active and job.state == "refused":
            layout.operator("mono2mesh.transfer_texture", text="Apply Anyway", icon="ERROR").force = True


class VIEW3D_PT_mono2mesh_backend(bpy.types.Panel):
    bl_label = "Backend"
    bl_idname = "VIEW3D_PT_mono2mesh_backend"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Mono2Mesh"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 (a set, as Blender requires)

    def draw(self, context: bpy.types.Context) -> None:
        local = session.local_backend()
        if session.backend_starting():
            text, icon = "Local backend starting…", "SORTTIME"
        elif local is not None and local.is_alive():
            text, icon = "Local backend running", "CHECKMARK"
        else:
            text, icon = "No local backend running", "DOT"
        self.layout.label(text=text, icon=icon)
        row = self.layout.row()
        row.operator("mono2mesh.start_backend", icon="PLAY")
        row.operator("mono2mesh.stop_backend", icon="PAUSE")


classes = (VIEW3D_PT_mono2mesh, VIEW3D_PT_mono2mesh_result, VIEW3D_PT_mono2mesh_backend)
