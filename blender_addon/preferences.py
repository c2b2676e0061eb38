"""Add-on preferences: how to reach the backend, where outputs go.

``bl_idname = __package__`` (the extension's module name, ``bl_ext.<repo>.mono2mesh``); read them with
``preferences.get(context)``. Backend modes: ``LOCAL`` starts ``<python> -m backend serve`` with the
configured Python (state file, log and job folders under the extension's user directory); ``URL``
connects to a running backend with a token. The output folder holds each job's downloaded files
(GLB, texture, preview, report); the .blend never depends on it, nor on the extension's user folder
that uninstalling deletes: imported textures are packed into the .blend or copied next to it (the
scene setting "Textures", ``Scene.mono2mesh.texture_storage``).

The "Mask Model" box shows whether the backend has its salient-object mask model (the photo's object
is then found by the model instead of GrabCut): nothing is asked on start-up; Check asks the backend
(``mono2mesh.check_mask_model``) and Download Mask Model has the backend fetch it
(``mono2mesh.download_mask_model``), only when pressed. The box's text comes from ``masks.lines()``.
"""

import bpy
from bpy.props import EnumProperty, FloatProperty, StringProperty

from . import masks


class Mono2MeshPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend_mode: EnumProperty(
        name="Backend",
        items=[
            ("LOCAL", "Start a Local Backend", "Run the backend with the Python of its environment"),
            ("URL", "Connect to a URL", "Use a backend that is already running"),
        ],
        default="LOCAL",
    )
    python_path: StringProperty(
        name="Backend Python",
        description="Python executable of the environment where the mono2mesh backend is installed",
        subtype="FILE_PATH",
    )
    url: StringProperty(
        name="URL", description="Backend URL, e.g. http://127.0.0.1:8765", default="http://127.0.0.1:8765"
    )
    token: StringProperty(
        name="Token", description="Bearer token of the backend (its state file has it)", subtype="PASSWORD"
    )
    output_dir: StringProperty(
        name="Output Folder",
        description="Where downloaded results (GLB, texture, preview, report) are saved; empty: the "
        "extension's user folder. Imported textures are packed into the .blend (or copied next to it)",
        subtype="DIR_PATH",
    )
    start_timeout: FloatProperty(
        name="Start Timeout", description="Seconds to wait for a local backend", default=120.0, min=5.0
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "backend_mode", expand=True)
        if self.backend_mode == "LOCAL":
            layout.prop(self, "python_path")
            layout.prop(self, "start_timeout")
        else:
            layout.prop(self, "url")
            layout.prop(self, "token")
        layout.prop(self, "output_dir")
        row = layout.row()
        row.operator("mono2mesh.start_backend", icon="PLAY")
        row.operator("mono2mesh.stop_backend", icon="PAUSE")
        draw_mask_model(layout.box())


def draw_mask_model(box: bpy.types.UILayout) -> None:
    """The "Mask Model" box: the last known status and the Check and Download buttons."""
    box.label(text="Mask Model (finds the object in photos without a mask)", icon="MOD_MASK")
    column = box.column(align=True)
    for text, icon in masks.lines():
        column.label(text=text, icon=icon)
    row = box.row()
    row.operator("mono2mesh.check_mask_model", text="Check", icon="FILE_REFRESH")
    row.operator("mono2mesh.download_mask_model", icon="IMPORT")


def get(context: bpy.types.Context | None = None) -> Mono2MeshPreferences:
    """This add-on's preferences."""
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences
