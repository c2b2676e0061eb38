"""The sidebar tab "Mono2Mesh" of the 3D viewport: inputs, job progress, result info, tools.

Drawing reads the scene settings and the active object's custom properties only; it never talks
to the backend (the methods list comes from the cache that Start Backend / Reconstruct fill).
The Result panel shows, for a result that has one, the mask the backend used: where it came from
("Mask: salient model u2netp", "Mask: GrabCut (automatic)", "Mask: yours", ...), the backend's note, a
preview of the mask image, and the Open Mask and Use This Mask buttons.
"""

import textwrap

import bpy

from . import importer, session, transfer

NOTE_WIDTH = 44  # characters per label line of the mask note (labels do not wrap)


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
            if obj.get(importer.PROPERTY_MASK_SOURCE) is not None:
                draw_mask(layout.box(), obj)
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


def draw_mask(box: bpy.types.UILayout, obj: bpy.types.Object) -> None:
    """The mask row of a result: source, note, preview, Open Mask and Use This Mask."""
    source = str(obj.get(importer.PROPERTY_MASK_SOURCE) or "")
    model = str(obj.get(importer.PROPERTY_MASK_MODEL) or "")
    box.label(text=importer.mask_label(source, model), icon="MOD_MASK")
    note = str(obj.get(importer.PROPERTY_MASK_NOTE) or "")
    column = box.column(align=True)
    for index, line in enumerate(textwrap.wrap(note, NOTE_WIDTH)):
        column.label(text=line, icon="INFO" if index == 0 else "BLANK1")
    image = importer.mask_image(obj)
    if image is not None:
        # ``icon(image)`` is the image's preview icon (rendered on demand; no preview data is written)
        box.template_icon(icon_value=box.icon(image), scale=6.0)
    elif obj.get(importer.PROPERTY_MASK):
        box.label(text="Mask image not loaded: Open Mask loads it", icon="IMAGE_DATA")
    else:
        box.label(text="The backend sent no mask file", icon="BLANK1")
    row = box.row(align=True)
    row.operator("mono2mesh.show_mask", icon="IMAGE_DATA")
    row.operator("mono2mesh.use_mask", icon="BRUSH_DATA")


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
