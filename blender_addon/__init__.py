"""Mono2Mesh for Blender: one photo -> textured mesh, through a local reconstruction backend.

The extension (installed as ``bl_ext.<repo>.mono2mesh``) talks to the backend over HTTP only
(``client``); it imports ``bpy`` and the standard library, never the backend itself. ``register``
registers one list of classes in order (preferences, the settings group, operators, panels) and
attaches the one scene settings pointer ``Scene.mono2mesh`` and the persistent ``load_post`` handler
``session.on_load_post`` (a file saved during a job reopens without a stale, frozen job); it touches no
scene data. ``unregister`` undoes that in reverse and stops a backend this session started (without
waiting: ``session.shutdown`` returns at once).

Modules: ``client`` (HTTP + backend process, no bpy), ``session`` (connection, jobs, the polling
function), ``workflow`` (submit and finish jobs), ``importer`` (GLB -> object, mesh swap),
``transfer`` (texture copy or closest-point transfer), ``masks`` (the backend's mask-model status,
check and download), ``properties``, ``preferences``, ``operators``, ``panels``, ``batch`` (the
headless script).
"""

import bpy

from . import operators, panels, preferences, properties, session

classes = (
    preferences.Mono2MeshPreferences,
    properties.Mono2MeshSettings,
    *operators.classes,
    *panels.classes,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.mono2mesh = bpy.props.PointerProperty(type=properties.Mono2MeshSettings)
    if session.on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(session.on_load_post)


def unregister() -> None:
    if session.on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(session.on_load_post)
    session.shutdown()
    del bpy.types.Scene.mono2mesh
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
