"""Import a backend result (GLB + texture PNG + report) as one Blender object; swap a refined mesh.

Contract of ``import_result``: Blender's glTF importer reads the GLB (Y up in the file, Z up in
Blender: glTF (x, y, z) becomes (x, -z, y)); the new objects are diffed against the scene, glTF
empties removed, and the one mesh object is renamed after the photo. Its mesh is **welded** (one
vertex per position: the glTF file splits vertices along UV seams, the seams stay only in the UV
layer, whose per-corner UVs are unchanged) and **placed** (``placement_matrix``): turned half round
about Z when needed so that the object's front, the end of its own front-back axis the photo saw,
faces -Y (Blender's Front view looks at it; the report's camera says which end; up stays +Z, the
symmetry plane stays x = 0), scaled so its largest dimension is ``target_size`` and moved so
its origin is the bottom centre (lowest point at the origin's height, x/y centred on the bounding
box). The whole import transform is one 4x4 matrix baked into the mesh data and recorded
(``PROPERTY_TRANSFORM``, row-major, from the backend frame in Blender axes to the mesh), so object
scale stays 1 and ``backend_frame_mesh`` (Refine) inverts it exactly. The object is placed at
``location`` (the 3D cursor), shaded smooth, with its material's Image Texture node (feeding the
Principled BSDF's Base Color) showing the texture PNG, **packed into the .blend** by default
(``texture_storage="PACK"``), or with ``"BESIDE_BLEND"`` copied to ``//textures/`` next to the saved
.blend with a relative path (an unsaved .blend gets it packed: ``PROPERTY_TEXTURE`` says which).
Either way the image never depends on the extension's own folder, which uninstalling deletes.
``add_photo_camera`` adds the orthographic or perspective camera that sees the result as the photo
did, with the photo as its background image.
Custom properties (``PROPERTY_*`` keys) record the source image, method, checkpoint, job id, template
topology id and the report's quality numbers. On any error every object and data-block the import
created is removed, so a failed job leaves nothing half-imported.
``attach_mask`` (called after the import or the mesh swap) records the mask the backend used: the
report's ``photo.mask_source`` / ``mask_model`` / ``mask_note`` and the path of the downloaded
``<stem>_mask.png`` as custom properties, and the file loaded as the image ``"<object> mask"`` (a file
reference, not packed: a view of what the backend used, and the file "Use This Mask" sends), held by
the object through the ID custom property ``PROPERTY_MASK_IMAGE`` (so it is saved with the .blend and
goes with the object). ``mask_label`` is the panel's text for a source.

Functions take explicit data-blocks and paths (no selection or area assumptions) so the batch script
and the operators share them. Only ``bpy``, ``mathutils`` and the standard library.
"""

import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bmesh
import bpy
from mathutils import Matrix, Quaternion, Vector

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
# the import transform: 16 floats, row-major; mesh data = matrix @ (backend frame in Blender axes)
PROPERTY_TRANSFORM = PREFIX + "import_matrix"
PROPERTY_TEXTURE = PREFIX + "texture_storage"  # "packed" or "file"
PROPERTY_WELDED = PREFIX + "welded_vertices"  # vertices merged by the weld
# the mask the backend used (``attach_mask``)
PROPERTY_MASK = PREFIX + "mask_path"  # the downloaded mask PNG (photo resolution, white = object)
PROPERTY_MASK_SOURCE = PREFIX + "mask_source"  # "given", "alpha", "salient", "grabcut" or "whole"
PROPERTY_MASK_MODEL = PREFIX + "mask_model"  # the salient-object model's name, when it made the mask
PROPERTY_MASK_NOTE = PREFIX + "mask_note"  # the backend's note (e.g. why the model was not used)
PROPERTY_MASK_IMAGE = PREFIX + "mask_image"  # the loaded mask image (an ID property: keeps it alive)
MASK_SOURCE_LABELS = {
    "given": "yours",
    "alpha": "alpha channel",
    "salient": "salient model",
    "grabcut": "GrabCut (automatic)",
    "whole": "whole photo (no segmentation)",
}
# glTF (x, y, z) -> Blender (x, -z, y), what Blender's glTF importer does
BLENDER_FROM_GLTF = Matrix(((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)))
WELD_DISTANCE = 1e-6  # relative to the mesh's largest dimension
TEXTURE_STORAGE = ("PACK", "BESIDE_BLEND")
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


def weld(mesh: bpy.types.Mesh, relative_distance: float = WELD_DISTANCE) -> int:
    """Merge vertices that share a position (UV-seam duplicates); returns how many were merged.

    ``bmesh.ops.remove_doubles`` keeps every face corner's UV, so the UV layout is unchanged and
    seams live only in the UV layer. The distance is ``relative_distance`` times the mesh's largest
    dimension: duplicates of one vertex are at distance 0, distinct vertices far further apart.
    """
    if not mesh.vertices:
        raise RuntimeError("the result mesh has no vertices")
    low, high = _bounds(mesh)
    distance = max(max(high - low) * relative_distance, 1e-12)
    before = len(mesh.vertices)
    work = bmesh.new()
    try:
        work.from_mesh(mesh)
        bmesh.ops.remove_doubles(work, verts=list(work.verts), dist=distance)
        work.to_mesh(mesh)
    finally:
        work.free()
    mesh.update()
    return before - len(mesh.vertices)


def _bounds(mesh: bpy.types.Mesh) -> tuple[Vector, Vector]:
    xs, ys, zs = zip(*(vertex.co for vertex in mesh.vertices), strict=True)
    return Vector((min(xs), min(ys), min(zs))), Vector((max(xs), max(ys), max(zs)))


def camera_rotation(camera: dict[str, Any] | None) -> Matrix | None:
    """The backend camera's world-to-view rotation (3x3, glTF axes), or None if unknown.

    ``weak_perspective``: the rotation quaternion (w, x, y, z); ``look_at``: SoftRas's camera at
    ``(d cos e sin a, d sin e, -d cos e cos a)`` looking at the origin with Y up (rows: right, up,
    backward), as in ``backend.geometry.camera``.
    """
    if not camera:
        return None
    try:
        if camera.get("kind") == "weak_perspective":
            return Quaternion([float(value) for value in camera["rotation"][0]]).normalized().to_matrix()
        if camera.get("kind") == "look_at":
            backward = _look_at_eye(camera).normalized()
            right = (-backward).cross(Vector((0.0, 1.0, 0.0)))
            right = right.normalized() if right.length > 1e-6 else Vector((1.0, 0.0, 0.0))
            up = right.cross(-backward)
            return Matrix((right, up, backward))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return None


def _look_at_eye(camera: dict[str, Any]) -> Vector:
    distance = float(camera["distance"][0])
    elevation = math.radians(float(camera["elevation"][0]))
    azimuth = math.radians(float(camera["azimuth"][0]))
    return distance * Vector(
        (
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
            -math.cos(elevation) * math.cos(azimuth),
        )
    )


def facing_angle(camera: dict[str, Any] | None) -> float:
    """The turn about Blender's Z (radians, 0 or pi) that makes the object's front face -Y.

    Results are built in the object's own frame: symmetric about x = 0, up +Y in glTF (+Z here), the
    front and back along the other axis (Blender's Y). The front is the end the camera saw: the
    direction towards the camera is the view's +Z axis (the last row of the rotation) in glTF axes;
    when its Y component (in Blender axes) is positive the object is turned half round. Only half
    turns are used so that the symmetry plane stays x = 0 (X-mirror editing, sculpt symmetry) and the
    object stands on the world axes, whatever angle the photo was taken from. A camera looking straight
    down decides by the top of the photo instead. Without a camera, 0.
    """
    rotation = camera_rotation(camera)
    if rotation is None:
        return 0.0
    towards = BLENDER_FROM_GLTF @ Vector(rotation[2])
    if abs(towards.y) > 1e-3:
        return math.pi if towards.y > 0 else 0.0
    up = BLENDER_FROM_GLTF @ Vector(rotation[1])
    return math.pi if up.y < 0 else 0.0


def placement_matrix(
    mesh: bpy.types.Mesh, target_size: float, camera: dict[str, Any] | None = None
) -> Matrix:
    """The import transform (module docstring) of ``mesh`` (in the backend frame, Blender axes).

    ``S(k) @ T(-bottom_centre) @ Rz(facing_angle(camera))``: the largest dimension becomes
    ``target_size``, the bottom centre of the turned bounding box the origin.
    """
    if not mesh.vertices:
        raise RuntimeError("the result mesh has no vertices")
    turn = Matrix.Rotation(facing_angle(camera), 4, "Z")
    turned = [turn @ vertex.co for vertex in mesh.vertices]
    low = Vector(tuple(min(point[axis] for point in turned) for axis in range(3)))
    high = Vector(tuple(max(point[axis] for point in turned) for axis in range(3)))
    bottom = Vector(((low.x + high.x) / 2, (low.y + high.y) / 2, low.z))
    largest = max(high - low)
    scale = target_size / largest if largest > 0 else 1.0
    return Matrix.Scale(scale, 4) @ Matrix.Translation(-bottom) @ turn


def import_matrix(mesh_object: bpy.types.Object) -> Matrix:
    """The recorded import transform of a result (older results: their scale and offset)."""
    values = mesh_object.get(PROPERTY_TRANSFORM)
    if values is not None and len(values) == 16:
        rows = [[float(value) for value in values[row * 4 : row * 4 + 4]] for row in range(4)]
        return Matrix(rows)
    scale = float(mesh_object.get(PROPERTY_SCALE, 1.0))
    offset = Vector(mesh_object.get(PROPERTY_OFFSET, (0.0, 0.0, 0.0)))
    return Matrix.Scale(scale, 4) @ Matrix.Translation(-offset)


def _record_transform(mesh_object: bpy.types.Object, matrix: Matrix) -> None:
    mesh_object[PROPERTY_TRANSFORM] = [float(value) for row in matrix for value in row]
    mesh_object[PROPERTY_SCALE] = matrix.to_scale()[0]
    # the point of the backend frame (Blender axes) that lands on the object's origin
    mesh_object[PROPERTY_OFFSET] = list(matrix.inverted() @ Vector((0.0, 0.0, 0.0)))


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
    """Load the texture PNG from disk (a file reference; ``store_texture`` packs or moves it)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = name
    return image


def store_texture(image: bpy.types.Image, storage: str | None = "PACK") -> str:
    """Keep ``image`` with the .blend: ``"PACK"`` packs it into the file; ``"BESIDE_BLEND"`` copies its
    file to ``//textures/`` next to the saved .blend and points at it with a relative path (an unsaved
    .blend: packed); ``None`` leaves it where it is (scripts that pack later, like the batch).
    Returns what was done: ``"packed"``, ``"file"`` or ``"kept"``."""
    if storage is None:
        return "kept"
    if storage not in TEXTURE_STORAGE:
        raise ValueError(f"texture storage must be one of {TEXTURE_STORAGE}, got {storage!r}")
    if storage == "BESIDE_BLEND" and bpy.data.filepath:
        source = Path(bpy.path.abspath(image.filepath))
        folder = Path(bpy.path.abspath("//textures"))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{file_stem(image.name)}.png"
        counter = 1
        while target.exists() and not (source.exists() and target.samefile(source)):
            target = folder / f"{file_stem(image.name)}_{counter}.png"
            counter += 1
        if not target.exists():
            shutil.copyfile(source, target)
        image.filepath = bpy.path.relpath(str(target))
        image.reload()
        return "file"
    image.pack()
    return "packed"


def file_stem(name: str) -> str:
    """``name`` as a file stem: letters, digits, ``-`` and ``_`` kept, anything else ``_``."""
    return "".join(char if char.isalnum() or char in "-_" else "_" for char in name) or "texture"


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


def mask_label(source: str, model: str = "") -> str:
    """The panel's line for a mask source, e.g. ``"Mask: salient model u2netp"``, ``"Mask: yours"``."""
    text = MASK_SOURCE_LABELS.get(source, source or "unknown")
    if source == "salient" and model:
        text += f" {model}"
    return f"Mask: {text}"


def mask_image_name(mesh_object: bpy.types.Object) -> str:
    """The name of the object's mask image: ``"<object> mask"``."""
    return f"{mesh_object.name} mask"


def attach_mask(
    mesh_object: bpy.types.Object, mask_path: str | Path | None, report: dict[str, Any]
) -> bpy.types.Image | None:
    """Record the mask the backend used on ``mesh_object`` and load it (module docstring).

    ``report["photo"]`` gives the source, model and note; ``mask_path`` is the downloaded mask (None:
    the backend sent none, only the source is recorded). A previous mask image of the object (a
    refinement) is replaced and removed when nothing else uses it. Returns the image, or None when
    there is no file; a file Blender cannot read raises ``RuntimeError`` after the properties are set.
    """
    photo = report.get("photo") or {}
    mesh_object[PROPERTY_MASK_SOURCE] = str(photo.get("mask_source") or "")
    mesh_object[PROPERTY_MASK_MODEL] = str(photo.get("mask_model") or "")
    mesh_object[PROPERTY_MASK_NOTE] = str(photo.get("mask_note") or "")
    old = mesh_object.get(PROPERTY_MASK_IMAGE)
    if PROPERTY_MASK_IMAGE in mesh_object:
        del mesh_object[PROPERTY_MASK_IMAGE]
    if isinstance(old, bpy.types.Image) and old.users == 0:
        bpy.data.images.remove(old)
    if mask_path is None:
        mesh_object[PROPERTY_MASK] = ""
        return None
    mesh_object[PROPERTY_MASK] = str(Path(mask_path).resolve())
    return _load_mask(mesh_object, Path(mask_path))


def _load_mask(mesh_object: bpy.types.Object, path: Path) -> bpy.types.Image:
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = mask_image_name(mesh_object)
    image.colorspace_settings.name = "Non-Color"  # a mask, not a colour
    mesh_object[PROPERTY_MASK_IMAGE] = image
    return image


def mask_image(mesh_object: bpy.types.Object) -> bpy.types.Image | None:
    """The object's loaded mask image (None when it has none or it was removed)."""
    image = mesh_object.get(PROPERTY_MASK_IMAGE)
    return image if isinstance(image, bpy.types.Image) else None


def ensure_mask_image(mesh_object: bpy.types.Object) -> bpy.types.Image:
    """The object's mask image, loaded again from its recorded file when it is not in the .blend.

    Raises ``ValueError`` when the object has no mask or its file is gone.
    """
    image = mask_image(mesh_object)
    if image is not None:
        return image
    path = Path(str(mesh_object.get(PROPERTY_MASK) or ""))
    if not mesh_object.get(PROPERTY_MASK) or not path.is_file():
        raise ValueError(f"The mask file of {mesh_object.name} is missing: {path}")
    return _load_mask(mesh_object, path)


def import_result(
    collection: bpy.types.Collection,
    glb_path: str | Path,
    texture_path: str | Path,
    *,
    name: str,
    location: tuple[float, float, float] | Vector = (0.0, 0.0, 0.0),
    target_size: float = 2.0,
    properties: dict[str, Any] | None = None,
    camera: dict[str, Any] | None = None,
    texture_storage: str | None = "PACK",
) -> bpy.types.Object:
    """Import a result as one object in ``collection`` (module docstring); return it.

    ``properties`` (see ``report_properties``) are stored on the object. ``camera`` is the report's
    camera (it decides which side faces -Y); ``texture_storage`` as in ``store_texture``.
    """
    started = time.perf_counter()
    with _rollback_on_error():
        mesh_object = _single_mesh(import_glb(glb_path))
        for users in list(mesh_object.users_collection):
            users.objects.unlink(mesh_object)
        collection.objects.link(mesh_object)
        mesh_object.name = name
        mesh_object.data.name = name
        merged = weld(mesh_object.data)
        matrix = placement_matrix(mesh_object.data, target_size, camera)
        mesh_object.data.transform(matrix)
        _smooth(mesh_object.data)
        mesh_object.location = Vector(location)
        image = load_texture(texture_path, f"{name}_texture")
        stored = store_texture(image, texture_storage)
        ensure_textured_material(mesh_object, image, name)
        for key, value in (properties or {}).items():
            mesh_object[key] = value
        _record_transform(mesh_object, matrix)
        mesh_object[PROPERTY_WELDED] = merged
        mesh_object[PROPERTY_TEXTURE] = stored
        mesh_object[PROPERTY_OUTPUT] = str(Path(texture_path).parent)
    mesh_object["mono2mesh_import_seconds"] = time.perf_counter() - started
    return mesh_object


def add_photo_camera(
    mesh_object: bpy.types.Object,
    report: dict[str, Any],
    photo_path: str | Path,
    collection: bpy.types.Collection,
    scene: bpy.types.Scene | None = None,
) -> bpy.types.Object | None:
    """Add a camera that sees ``mesh_object`` as the photo did, the photo as its background image.

    From the report's ``camera`` (weak perspective: an orthographic camera; look-at: a perspective
    one), ``crop_box`` and ``photo`` size: the frame covers the whole photo, and the scene's render
    resolution becomes the photo's size so the aspect matches. The backend camera is mapped through
    the object's import transform and world matrix. The scene's camera if it had none. Returns None
    (adding nothing) when the report lacks what is needed.
    """
    camera = report.get("camera") or {}
    rotation = camera_rotation(camera)
    box, photo = report.get("crop_box") or {}, report.get("photo") or {}
    try:
        x0, y0, side = float(box["x0"]), float(box["y0"]), float(box["side"])
        width, height = int(photo["width"]), int(photo["height"])
    except (KeyError, TypeError, ValueError):
        return None
    if rotation is None or side <= 0 or width <= 0 or height <= 0:
        return None
    # the photo's centre and half-extent in the crop's NDC (x right, y up, -1..1 over the crop box)
    centre_x, centre_y = (width - 2 * x0) / side - 1, 1 - (height - 2 * y0) / side
    extent = max(width, height) / side
    image = bpy.data.images.load(str(photo_path), check_existing=True)  # first: may raise, adds nothing
    data = bpy.data.cameras.new(f"{mesh_object.name}_photo_camera")
    if camera["kind"] == "weak_perspective":
        scale = float(camera["scale"][0])
        tx, ty = (float(value) for value in camera["translation"][0])
        # p_view = R p + (tx/s, ty/s, -10); the camera sits at the photo centre, 10 in front
        translation = Vector((tx / scale, ty / scale, -10.0))
        position_view = Vector((centre_x / scale, centre_y / scale, 0.0))
        data.type = "ORTHO"
        ortho = 2 * extent / scale
    else:
        eye = _look_at_eye(camera)
        translation = -(rotation @ eye)
        position_view = Vector((0.0, 0.0, 0.0))
        data.type = "PERSP"
        data.sensor_fit = "AUTO"
        half = math.radians(float(camera["viewing_angle"][0]))
        data.angle = 2 * math.atan(math.tan(half) * extent)
        data.shift_x, data.shift_y = centre_x / (2 * extent), centre_y / (2 * extent)
    inverse = rotation.transposed()
    camera_to_gltf = inverse.to_4x4()
    camera_to_gltf.translation = inverse @ (position_view - translation)
    to_world = mesh_object.matrix_world @ import_matrix(mesh_object) @ BLENDER_FROM_GLTF.to_4x4()
    location, turn, scales = (to_world @ camera_to_gltf).decompose()
    if data.type == "ORTHO":
        data.ortho_scale = ortho * scales[0]
    data.clip_end = max(100.0, 40.0 * scales[0])
    camera_object = bpy.data.objects.new(data.name, data)
    camera_object.matrix_world = Matrix.Translation(location) @ turn.to_matrix().to_4x4()
    collection.objects.link(camera_object)
    data.show_background_images = True
    background = data.background_images.new()
    background.image = image
    background.alpha = 0.6
    background.frame_method = "FIT"
    scene = scene or bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    if scene.camera is None:
        scene.camera = camera_object
    camera_object[PREFIX + "photo_camera_of"] = mesh_object.name
    return camera_object


def backend_frame_mesh(mesh_object: bpy.types.Object) -> bpy.types.Mesh:
    """A copy of the object's mesh moved back into the backend's frame (the import transform undone)."""
    mesh = mesh_object.data.copy()
    mesh.transform(import_matrix(mesh_object).inverted())
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
    texture_storage: str | None = "PACK",
) -> bpy.types.Mesh:
    """Swap the object's mesh data for the refined result, keeping its materials and transform.

    The refined mesh is welded and gets the object's recorded import transform (so it sits where the
    old one did); the material's Image Texture node now shows the refined texture, stored as
    ``store_texture`` says. Returns the new mesh.
    """
    with _rollback_on_error():  # everything that can fail happens before the object is touched
        created = import_glb(glb_path)
        donor = _single_mesh(created)
        mesh = donor.data
        bpy.data.objects.remove(donor)
        merged = weld(mesh)
        image = load_texture(texture_path, f"{mesh_object.name}_texture")
        stored = store_texture(image, texture_storage)
    mesh.transform(import_matrix(mesh_object))
    mesh_object[PROPERTY_WELDED] = merged
    mesh_object[PROPERTY_TEXTURE] = stored
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
