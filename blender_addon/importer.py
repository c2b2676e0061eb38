"""Import a backend result (GLB + texture PNG + report) as one Blender object; swap a refined mesh.

Contract of ``import_result``: Blender's glTF importer reads the GLB (Y up in the file, Z up in
Blender); the new objects are diffed against the scene, glTF empties removed, and the one mesh object
is renamed after the photo, its mesh centred on its bounding box and scaled so its largest dimension
is ``target_size`` (the factor and offset are baked into the mesh data and recorded, so object scale
stays 1), placed at ``location``, shaded smooth, with its material's Image Texture node (feeding the
Principled BSDF's Base Color) pointing at the texture PNG saved next to the outputs (not packed).
Custom properties (``PROPERTY_*`` keys) record the source image, method, checkpoint, job id, template
topology id and the report's quality numbers. On any error every object and data-block the import
created is removed, so a failed job leaves nothing half-imported.

Functions take explicit data-blocks and paths (no selection or area assumptions) so the batch script
and the operators share them. Only ``bpy``, ``mathutils`` and the standard library.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bpy
from mathutils import Matrix, Vector

PREFIX = "mono2mesh_"
PROPERTY_SOURCE = PREFIX + "source_image"
PROPERTY_METHOD = PREFIX + "method"
PROPERTY_CHECKPOINT = PREFIX + "checkpoint"
PROPERTY_JOB = PREFIX + "job_id"
PROPERTY_TEMPLATE = PREFIX + "template"
PROPERTY_IOU = PREFIX + "silhouette_iou"
PROPERTY_VERTICES = PREFIX + "num_vertices"
PROPERTY_FACES = PREFIX + "num_faces"
PROPERTY_SECONDS = PREFIX + "backend_seconds"
PROPERTY_SCALE = PREFIX + "import_scale"
PROPERTY_OFFSET = PREFIX + "import_offset"
PROPERTY_OUTPUT = PREFIX + "output_dir"
# shown by the panel for the active object, in this order: (key, label)
SHOWN_PROPERTIES = (
    (PROPERTY_SOURCE, "Photo"),
    (PROPERTY_METHOD, "Method"),
    (PROPERTY_CHECKPOINT, "Checkpoint"),
    (PROPERTY_TEMPLATE, "Topology"),
    (PROPERTY_IOU, "Silhouette IoU"),
    (PROPERTY_VERTICES, "Vertices"),
    (PROPERTY_FACES, "Faces"),
    (PROPERTY_SECONDS, "Backend Time (s)"),
    (PROPERTY_JOB, "Job"),
)
_DATA_COLLECTIONS = ("objects", "meshes", "materials", "images", "textures")


@contextmanager
def _rollback_on_error() -> Iterator[None]:
    """Remove every object/mesh/material/image created inside the block if it raises."""
    before = {name: set(getattr(bpy.data, name)) for name in _DATA_COLLECTIONS}
    try:
        yield
    except BaseException:
        for name in _DATA_COLLECTIONS:  # objects first: they use the meshes
            collection = getattr(bpy.data, name)
            for block in set(collection) - before[name]:
                collection.remove(block)
        raise


def import_glb(filepath: str | Path) -> list[bpy.types.Object]:
    """Run Blender's glTF importer on ``filepath``; return the objects it created."""
    before = set(bpy.data.objects)
    result = bpy.ops.import_scene.gltf(filepath=str(filepath))
    if "FINISHED" not in result:
        raise RuntimeError(f"Blender's glTF importer could not read {filepath}")
    return [obj for obj in bpy.data.objects if obj not in before]


def _single_mesh(created: list[bpy.types.Object]) -> bpy.types.Object:
    meshes = [obj for obj in created if obj.type == "MESH"]
    if len(meshes) != 1:
        raise RuntimeError(f"expected one mesh in the result, found {len(meshes)}")
    mesh_object = meshes[0]
    world = mesh_object.matrix_world.copy()
    mesh_object.parent = None
    mesh_object.matrix_world = world
    for obj in created:
        if obj is not mesh_object:
            bpy.data.objects.remove(obj)
    # bake the glTF node transform into the mesh so the object's own transform is identity
    mesh_object.data.transform(mesh_object.matrix_world)
    mesh_object.matrix_world = Matrix.Identity(4)
    return mesh_object


def normalize_mesh(mesh: bpy.types.Mesh, target_size: float) -> tuple[float, Vector]:
    """Centre ``mesh`` on its bounding box and scale it so its largest side is ``target_size``.

    Returns ``(scale, offset)`` with ``new = scale * (old - offset)``.
    """
    if not mesh.vertices:
        raise RuntimeError("the result mesh has no vertices")
    xs, ys, zs = zip(*(vertex.co for vertex in mesh.vertices), strict=True)
    low, high = Vector((min(xs), min(ys), min(zs))), Vector((max(xs), max(ys), max(zs)))
    offset = (low + high) / 2
    largest = max(high - low)
    scale = target_size / largest if largest > 0 else 1.0
    mesh.transform(Matrix.Scale(scale, 4) @ Matrix.Translation(-offset))
    return scale, offset


def _smooth(mesh: bpy.types.Mesh) -> None:
    mesh.shade_smooth()
    if "sharp_face" in mesh.attributes:
        mesh.attributes.remove(mesh.attributes["sharp_face"])


def _uses_nodes(material: bpy.types.Material) -> bool:
    if bpy.app.version >= (5, 0, 0):
        return material.node_tree is not None
    return bool(material.use_nodes)


def texture_node(material: bpy.types.Material) -> bpy.types.ShaderNodeTexImage | None:
    """The Image Texture node that feeds the Principled BSDF's Base Color (else the first one)."""
    if material is None or not _uses_nodes(material):
        return None
    nodes = material.node_tree.nodes
    for node in nodes:
        if node.type == "BSDF_PRINCIPLED" and node.inputs["Base Color"].is_linked:
            source = node.inputs["Base Color"].links[0].from_node
            if source.type == "TEX_IMAGE":
                return source
    return next((node for node in nodes if node.type == "TEX_IMAGE"), None)


def ensure_textured_material(
    mesh_object: bpy.types.Object, image: bpy.types.Image, name: str
) -> bpy.types.Material:
    """Give the object a material whose Image Texture (``image``) feeds Principled BSDF Base Color."""
    material = mesh_object.active_material
    if material is None:
        material = bpy.data.materials.new(name)
        mesh_object.data.materials.append(material)
    if not _uses_nodes(material):
        material.use_nodes = True  # Blender < 5.0; from 5.0 materials always use nodes
    nodes, links = material.node_tree.nodes, material.node_tree.links
    principled = next((node for node in nodes if node.type == "BSDF_PRINCIPLED"), None)
    if principled is None:
        principled = nodes.new("ShaderNodeBsdfPrincipled")
        output = next((node for node in nodes if node.type == "OUTPUT_MATERIAL"), None) or nodes.new(
            "ShaderNodeOutputMaterial"
        )
        links.new(principled.outputs["BSDF"], output.inputs["Surface"])
    node = texture_node(material)
    if node is None:
        node = nodes.new("ShaderNodeTexImage")
        node.location = principled.location - Vector((350.0, 0.0))
    if not node.outputs["Color"].is_linked or not principled.inputs["Base Color"].is_linked:
        links.new(node.outputs["Color"], principled.inputs["Base Color"])
    old = node.image
    node.image = image
    if old is not None and old is not image and old.users == 0:
        bpy.data.images.remove(old)
    nodes.active = node
    return material


def load_texture(path: str | Path, name: str) -> bpy.types.Image:
    """Load the texture PNG from disk (a file reference, not packed)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = name
    return image


def report_properties(report: dict[str, Any], job: dict[str, Any], source_image: str) -> dict[str, Any]:
    """The custom properties recorded on an imported object."""
    timings = report.get("timings") or {}
    return {
        PROPERTY_SOURCE: source_image,
        PROPERTY_METHOD: str(report.get("method") or job.get("method") or ""),
        PROPERTY_CHECKPOINT: str(report.get("checkpoint") or ""),
        PROPERTY_JOB: str(job.get("id") or ""),
        PROPERTY_TEMPLATE: str(report.get("template") or ""),
        PROPERTY_IOU: float(report.get("silhouette_iou") or 0.0),
        PROPERTY_VERTICES: int(report.get("num_vertices") or 0),
        PROPERTY_FACES: int(report.get("num_faces") or 0),
        PROPERTY_SECONDS: float(timings.get("total") or 0.0),
    }


def import_result(
    collection: bpy.types.Collection,
    glb_path: str | Path,
    texture_path: str | Path,
    *,
    name: str,
    location: tuple[float, float, float] | Vector = (0.0, 0.0, 0.0),
    target_size: float = 2.0,
    properties: dict[str, Any] | None = None,
) -> bpy.types.Object:
    """Import a result as one object in ``collection`` (module docstring); return it.

    ``properties`` (see ``report_properties``) are stored on the object.
    """
    started = time.perf_counter()
    with _rollback_on_error():
        mesh_object = _single_mesh(import_glb(glb_path))
        for users in list(mesh_object.users_collection):
            users.objects.unlink(mesh_object)
        collection.objects.link(mesh_object)
        mesh_object.name = name
        mesh_object.data.name = name
        scale, offset = normalize_mesh(mesh_object.data, target_size)
        _smooth(mesh_object.data)
        mesh_object.location = Vector(location)
        image = load_texture(texture_path, f"{name}_texture")
        ensure_textured_material(mesh_object, image, name)
        for key, value in (properties or {}).items():
            mesh_object[key] = value
        mesh_object[PROPERTY_SCALE] = scale
        mesh_object[PROPERTY_OFFSET] = list(offset)
        mesh_object[PROPERTY_OUTPUT] = str(Path(texture_path).parent)
    mesh_object["mono2mesh_import_seconds"] = time.perf_counter() - started
    return mesh_object


def backend_frame_mesh(mesh_object: bpy.types.Object) -> bpy.types.Mesh:
    """A copy of the object's mesh moved back into the backend's frame (undoing the import scale)."""
    mesh = mesh_object.data.copy()
    scale = float(mesh_object.get(PROPERTY_SCALE, 1.0))
    offset = Vector(mesh_object.get(PROPERTY_OFFSET, (0.0, 0.0, 0.0)))
    mesh.transform(Matrix.Translation(offset) @ Matrix.Scale(1.0 / scale, 4))
    return mesh


def export_for_refinement(mesh_object: bpy.types.Object, filepath: str | Path) -> Path:
    """Write the object's mesh (with its edits, in the backend's frame) as a GLB to ``filepath``."""
    mesh = backend_frame_mesh(mesh_object)
    temporary = bpy.data.objects.new(f"{mesh_object.name}_refine", mesh)
    scene_collection = bpy.context.scene.collection
    scene_collection.objects.link(temporary)
    selected = [obj for obj in bpy.context.view_layer.objects if obj.select_get()]
    active = bpy.context.view_layer.objects.active
    try:
        for obj in selected:
            obj.select_set(False)
        temporary.select_set(True)
        bpy.context.view_layer.objects.active = temporary
        result = bpy.ops.export_scene.gltf(
            filepath=str(filepath),
            export_format="GLB",
            use_selection=True,
            export_yup=True,
            export_apply=False,
        )
        if "FINISHED" not in result:
            raise RuntimeError(f"Blender's glTF exporter could not write {filepath}")
    finally:
        bpy.data.objects.remove(temporary)
        bpy.data.meshes.remove(mesh)
        for obj in selected:
            obj.select_set(True)
        bpy.context.view_layer.objects.active = active
    return Path(filepath)


def replace_mesh(
    mesh_object: bpy.types.Object,
    glb_path: str | Path,
    texture_path: str | Path,
    properties: dict[str, Any] | None = None,
) -> bpy.types.Mesh:
    """Swap the object's mesh data for the refined result, keeping its materials and transform.

    The refined mesh gets the object's recorded import scale and offset (so it sits where the old
    one did); the material's Image Texture node now shows the refined texture. Returns the new mesh.
    """
    with _rollback_on_error():  # everything that can fail happens before the object is touched
        created = import_glb(glb_path)
        donor = _single_mesh(created)
        mesh = donor.data
        bpy.data.objects.remove(donor)
        image = load_texture(texture_path, f"{mesh_object.name}_texture")
    scale = float(mesh_object.get(PROPERTY_SCALE, 1.0))
    offset = Vector(mesh_object.get(PROPERTY_OFFSET, (0.0, 0.0, 0.0)))
    mesh.transform(Matrix.Scale(scale, 4) @ Matrix.Translation(-offset))
    _smooth(mesh)
    imported_materials = list(mesh.materials)
    mesh.materials.clear()
    for material in mesh_object.data.materials:
        mesh.materials.append(material)
    for material in imported_materials:
        if material is not None and material.users == 0:
            for node in material.node_tree.nodes if _uses_nodes(material) else []:
                if node.type == "TEX_IMAGE" and node.image is not None and node.image.users == 1:
                    bpy.data.images.remove(node.image)
            bpy.data.materials.remove(material)
    old = mesh_object.data
    name = old.name
    old.name = f"{name}_before_refine"  # kept (without users) until the file is saved; undo restores it
    mesh.name = name
    mesh_object.data = mesh
    if mesh_object.active_material is not None:
        ensure_textured_material(mesh_object, image, mesh_object.name)
    elif image.users == 0:
        bpy.data.images.remove(image)
    for key, value in (properties or {}).items():
        if key != PROPERTY_SOURCE:
            mesh_object[key] = value
    return mesh
