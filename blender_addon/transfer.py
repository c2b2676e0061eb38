"""Texture transfer between two results: copy when they share a topology, else a Cycles bake.

``transfer_texture(source, target, ...)`` returns ``"copy"`` or ``"bake"``:

- Same template topology id (custom property ``mono2mesh_template``, e.g. ``icosphere-642``) and the
  same number of UV corners: their UV layouts are the same, so the target's Image Texture node simply
  gets the source's image (the target keeps its own material).
- Otherwise the source's texture is baked onto the target with Cycles, ``DIFFUSE`` colour only,
  "Selected to Active": the target needs a UV map (Smart UV Project makes one if missing) and gets a
  new image of ``resolution`` pixels, saved as PNG into ``output_dir``. The cage extrusion and maximum
  ray distance scale with the larger object's size (10 % and 50 % of it: the two reconstructions of
  one photo lie within a few percent of each other, and a short ray keeps the bake from picking far
  surfaces); the margin is ``resolution / 64`` pixels (at least 4) against seam bleeding.

Needs a context with a view layer holding both objects (for ``bpy.ops.object.bake``); the render
engine and selection are restored afterwards.
"""

from collections.abc import Callable
from pathlib import Path

import bpy

from . import importer


def same_topology(source: bpy.types.Object, target: bpy.types.Object) -> bool:
    """Whether two results share a template topology (so their UV layouts are identical)."""
    source_id = source.get(importer.PROPERTY_TEMPLATE)
    target_id = target.get(importer.PROPERTY_TEMPLATE)
    return bool(source_id) and source_id == target_id and len(source.data.loops) == len(target.data.loops)


def source_image(source: bpy.types.Object) -> bpy.types.Image:
    """The image of the source's textured material (ValueError if it has none)."""
    node = importer.texture_node(source.active_material)
    if node is None or node.image is None:
        raise ValueError(f"{source.name} has no image texture to transfer")
    return node.image


def copy_texture(source: bpy.types.Object, target: bpy.types.Object) -> None:
    """Point the target's Image Texture node at the source's image (target keeps its material)."""
    image = source_image(source)
    material = target.active_material
    if material is not None and material.users > 1:  # do not retexture other objects sharing it
        material = material.copy()
        target.active_material = material
    importer.ensure_textured_material(target, image, f"{target.name}_material")


def bake_texture(
    source: bpy.types.Object,
    target: bpy.types.Object,
    output_dir: Path,
    resolution: int = 1024,
    progress: Callable[[float, str], None] | None = None,
) -> bpy.types.Image:
    """Bake the source's colour onto the target's UV map with Cycles; return the saved image."""
    source_image(source)  # fail early with a clear message
    report = progress or (lambda _fraction, _stage: None)
    report(0.0, "preparing")
    context = bpy.context
    view_layer = context.view_layer
    if target.data.uv_layers.active is None:
        _smart_uv(target)
    image = bpy.data.images.new(f"{target.name}_baked", resolution, resolution, alpha=False)
    material = target.active_material
    if material is None or material.users > 1:
        material = (
            material.copy() if material is not None else bpy.data.materials.new(f"{target.name}_material")
        )
        if target.data.materials:
            target.active_material = material
        else:
            target.data.materials.append(material)
    importer.ensure_textured_material(target, image, material.name)
    size = max(*source.dimensions, *target.dimensions, 1e-3)
    scene = context.scene
    saved_engine = scene.render.engine
    saved_selection = [obj for obj in view_layer.objects if obj.select_get()]
    saved_active = view_layer.objects.active
    try:
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = 1
        for obj in saved_selection:
            obj.select_set(False)
        source.select_set(True)
        target.select_set(True)
        view_layer.objects.active = target
        report(0.2, "baking")
        result = bpy.ops.object.bake(
            type="DIFFUSE",
            pass_filter={"COLOR"},
            use_selected_to_active=True,
            cage_extrusion=0.1 * size,
            max_ray_distance=0.5 * size,
            margin=max(4, resolution // 64),
            target="IMAGE_TEXTURES",
            use_clear=True,
        )
        if "FINISHED" not in result:
            raise RuntimeError("Cycles bake did not finish")
    finally:
        scene.render.engine = saved_engine
        for obj in view_layer.objects:
            obj.select_set(obj in saved_selection)
        view_layer.objects.active = saved_active
    report(0.9, "saving")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{importer.PREFIX}{_file_stem(target.name)}_baked.png"
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    report(1.0, "done")
    return image


def _file_stem(name: str) -> str:
    return "".join(char if char.isalnum() or char in "-_" else "_" for char in name)


def _smart_uv(target: bpy.types.Object) -> None:
    view_layer = bpy.context.view_layer
    active = view_layer.objects.active
    view_layer.objects.active = target
    with bpy.context.temp_override(active_object=target, object=target, selected_objects=[target]):
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project()
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = active


def transfer_texture(
    source: bpy.types.Object,
    target: bpy.types.Object,
    output_dir: Path,
    resolution: int = 1024,
    progress: Callable[[float, str], None] | None = None,
) -> str:
    """Move the source's texture onto the target (module docstring); returns "copy" or "bake"."""
    if source == target:
        raise ValueError("Select two different objects: the source, then the target as active")
    if target.type != "MESH" or source.type != "MESH":
        raise ValueError("Texture transfer needs two mesh objects")
    if same_topology(source, target):
        copy_texture(source, target)
        return "copy"
    bake_texture(source, target, output_dir, resolution, progress)
    return "bake"
