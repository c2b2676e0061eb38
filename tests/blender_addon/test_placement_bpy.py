"""How a result lands in the scene: welded (UV seams only in the UV layer), standing on the floor at
the cursor with the photographed side towards -Y, the import transform recorded so Refine inverts it
exactly, the texture packed (or next to the saved .blend), and the "As in the Photo" camera."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.blender_addon.helpers import PHOTOS
from tests.blender_addon.test_reconstruct_bpy import pixels, reconstruct


def boundary_edges(mesh: Any) -> int:
    import bmesh

    work = bmesh.new()
    try:
        work.from_mesh(mesh)
        return sum(1 for edge in work.edges if edge.is_boundary)
    finally:
        work.free()


def world_points(obj: Any) -> np.ndarray:
    matrix = np.array(obj.matrix_world)
    local = np.array([tuple(vertex.co) for vertex in obj.data.vertices])
    return local @ matrix[:3, :3].T + matrix[:3, 3]


def raw_import(bpy: ModuleType, addon: ModuleType, glb: Path) -> Any:
    """The GLB as Blender's glTF importer gives it (no weld, no placement), one mesh object."""
    created = addon.importer.import_glb(glb)
    return addon.importer._single_mesh(created)


def test_import_is_welded_closed_and_keeps_the_uv_layout(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    obj = reconstruct(bpy, addon, photo)
    folder = Path(obj["mono2mesh_output_dir"])
    report = json.loads((folder / f"{obj.name}.json").read_text())
    raw = raw_import(bpy, addon, folder / f"{obj.name}.glb")
    raw_boundary, welded_boundary = boundary_edges(raw.data), boundary_edges(obj.data)
    print(
        f"vertices {len(raw.data.vertices)} -> {len(obj.data.vertices)}, "
        f"boundary edges {raw_boundary} -> {welded_boundary}"
    )
    assert raw_boundary > 0  # the file splits vertices along the UV seam
    assert welded_boundary == 0  # the fit result is closed
    assert len(obj.data.vertices) == report["num_vertices"] == 642
    assert obj["mono2mesh_welded_vertices"] == len(raw.data.vertices) - len(obj.data.vertices)
    assert len(obj.data.polygons) == len(raw.data.polygons) == report["num_faces"]
    # the UV layout (one UV per face corner) is unchanged by the weld
    raw_uvs = np.array([tuple(loop.uv) for loop in raw.data.uv_layers.active.data])
    uvs = np.array([tuple(loop.uv) for loop in obj.data.uv_layers.active.data])
    assert uvs.shape == raw_uvs.shape and np.allclose(uvs, raw_uvs, atol=1e-7)
    # a Subdivision Surface modifier gives a closed surface: no hole at the poles, no seam crack
    obj.modifiers.new("subdivision", "SUBSURF").levels = 1
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    subdivided = evaluated.to_mesh()
    try:
        assert boundary_edges(subdivided) == 0
    finally:
        evaluated.to_mesh_clear()


def test_result_stands_at_the_cursor_facing_minus_y(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    scene.cursor.location = (1.0, -2.0, 0.5)
    obj = reconstruct(bpy, addon, photo)
    points = world_points(obj)
    low, high = points.min(axis=0), points.max(axis=0)
    # origin at the bottom centre: the lowest point at the cursor's height, x/y centred on the cursor
    assert tuple(obj.location) == pytest.approx((1.0, -2.0, 0.5))
    assert low[2] == pytest.approx(0.5, abs=1e-5)
    assert (low[:2] + high[:2]) / 2 == pytest.approx([1.0, -2.0], abs=1e-5)
    assert (high - low).max() == pytest.approx(scene.mono2mesh.target_size, rel=1e-5)
    # the recorded import transform maps the backend frame (Blender axes) onto the mesh data
    matrix = addon.importer.import_matrix(obj)
    assert matrix.to_scale()[0] == pytest.approx(obj["mono2mesh_import_scale"])
    # the front the photo saw faces -Y: the report's camera, seen through that transform, is on the -Y side
    report = json.loads((Path(obj["mono2mesh_output_dir"]) / f"{obj.name}.json").read_text())
    rotation = addon.importer.camera_rotation(report["camera"])
    towards = matrix.to_3x3().normalized() @ (addon.importer.BLENDER_FROM_GLTF @ rotation[2])
    assert towards.y < 0
    # only half turns: the symmetric result stays mirror-symmetric about x = 0 (X-mirror editing works)
    local = np.array([tuple(vertex.co) for vertex in obj.data.vertices])
    mirrored = local * np.array([-1.0, 1.0, 1.0])
    nearest = np.abs(mirrored[:, None, :] - local[None, :, :]).max(axis=2).min(axis=1)
    assert nearest.max() < 1e-4 * scene.mono2mesh.target_size


def test_refine_round_trip_returns_the_backend_frame_exactly(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    bpy = blender
    scene.cursor.location = (0.3, 0.7, -1.0)
    obj = reconstruct(bpy, addon, photo)
    folder = Path(obj["mono2mesh_output_dir"])
    raw = raw_import(bpy, addon, folder / f"{obj.name}.glb")
    addon.importer.weld(raw.data)
    expected = np.array([tuple(vertex.co) for vertex in raw.data.vertices])
    back = addon.importer.backend_frame_mesh(obj)
    try:
        got = np.array([tuple(vertex.co) for vertex in back.vertices])
    finally:
        bpy.data.meshes.remove(back)
    size = np.ptp(expected, axis=0).max()
    error = np.abs(got - expected).max() / size
    print(f"round trip error {error:.2e} of the size")
    assert got.shape == expected.shape and error < 1e-5


def test_texture_packed_or_next_to_the_saved_blend(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path, tmp_path: Path
) -> None:
    bpy = blender
    settings = scene.mono2mesh
    assert settings.texture_storage == "PACK"
    obj = reconstruct(bpy, addon, photo)
    image = addon.importer.texture_node(obj.active_material).image
    assert image.packed_file is not None
    # next to the .blend, unsaved: packed, and the message says so
    settings.texture_storage = "BESIDE_BLEND"
    obj = reconstruct(bpy, addon, photo)
    assert addon.importer.texture_node(obj.active_material).image.packed_file is not None
    assert "save the .blend" in settings.message
    # next to a saved .blend: a relative path to <blend folder>/textures/
    blend = tmp_path / "birds" / "scene.blend"
    blend.parent.mkdir()
    assert bpy.ops.wm.save_as_mainfile(filepath=str(blend)) == {"FINISHED"}
    obj = reconstruct(bpy, addon, photo)
    image = addon.importer.texture_node(obj.active_material).image
    assert image.packed_file is None and image.filepath.startswith("//textures/")
    path = Path(bpy.path.abspath(image.filepath))
    assert path.parent == blend.parent / "textures" and path.is_file()
    assert pixels(image).shape[:2] == (image.size[1], image.size[0])  # it loads from there
    assert obj["mono2mesh_texture_storage"] == "file"


def _wide_crop(bpy: ModuleType, source: Path, folder: Path) -> Path:
    """A landscape photo (the bird off centre): rows 120..520 of the square bird photo, as PNG."""
    image = bpy.data.images.load(str(source))
    width, height = image.size
    rows = pixels(image)[height - 520 : height - 120]  # Blender's rows run bottom-up
    wide = bpy.data.images.new("wide", width, rows.shape[0], alpha=True)
    wide.pixels.foreach_set(np.ascontiguousarray(rows, dtype=np.float32).reshape(-1))
    path = folder / "bird_wide.png"
    wide.filepath_raw = str(path)
    wide.file_format = "PNG"
    wide.save()
    return path


@pytest.mark.parametrize("shape", ["square", "wide"])
def test_as_in_the_photo_camera(
    blender: ModuleType,
    addon: ModuleType,
    scene: Any,
    photo: Path,
    backend: Any,
    tmp_path: Path,
    shape: str,
) -> None:
    bpy = blender
    bird = PHOTOS / "bird_bunting.jpg"
    if not bird.is_file():
        pytest.skip(f"no bird photo in {PHOTOS}")
    source = bird if shape == "square" else _wide_crop(bpy, bird, tmp_path)
    scene.mono2mesh.as_in_photo = True
    obj = reconstruct(bpy, addon, source, iterations=40, resolution=64)
    report = json.loads((Path(obj["mono2mesh_output_dir"]) / f"{obj.name}.json").read_text())
    cameras = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert len(cameras) == 1 and scene.camera == cameras[0]
    camera = cameras[0]
    background = camera.data.background_images[0]
    assert Path(bpy.path.abspath(background.image.filepath)) == source
    assert camera.data.show_background_images
    assert (scene.render.resolution_x, scene.render.resolution_y) == (
        report["photo"]["width"],
        report["photo"]["height"],
    )
    # it looks at the result from the -Y side (the placement convention, reached another way)
    forward = -np.array(camera.matrix_world)[:3, 2]
    assert forward[1] > 0  # on the -Y side, at whatever angle the photo was taken (half turns only)
    # through it, the result covers the photo's mask (the whole photo, not just the crop)
    width, height = report["photo"]["width"], report["photo"]["height"]
    scene.render.resolution_percentage = max(1, round(100 * 64 / max(width, height)))
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    scene.render.film_transparent = True
    scene.render.filepath = str(tmp_path / "render.png")
    bpy.ops.render.render(write_still=True)
    rendered = pixels(bpy.data.images.load(str(tmp_path / "render.png")))[::-1, :, 3] > 0.5
    mask_path = backend.client.download(obj["mono2mesh_job_id"], "mask", tmp_path / "mask.png")
    mask = pixels(bpy.data.images.load(str(mask_path)))[::-1, :, 0] > 0.5
    rows = ((np.arange(rendered.shape[0]) + 0.5) * mask.shape[0] / rendered.shape[0]).astype(int)
    columns = ((np.arange(rendered.shape[1]) + 0.5) * mask.shape[1] / rendered.shape[1]).astype(int)
    mask = mask[rows][:, columns]
    iou = float((rendered & mask).sum() / max((rendered | mask).sum(), 1))
    mirrored = float((rendered[:, ::-1] & mask).sum() / max((rendered[:, ::-1] | mask).sum(), 1))
    print(f"IoU through the photo camera {iou:.3f}, backend {report['silhouette_iou']:.3f}")
    assert abs(iou - report["silhouette_iou"]) < 0.1
    assert mirrored < iou - 0.1  # the bird is not left-right symmetric: a mirrored view would show


def test_photo_camera_of_a_look_at_report(
    blender: ModuleType, addon: ModuleType, scene: Any, photo: Path
) -> None:
    """SoftRas's perspective look-at camera (no checkpoint here: a report written by hand)."""
    from mathutils import Matrix, Vector

    bpy = blender
    obj = reconstruct(bpy, addon, photo)
    importer = addon.importer
    camera = {"kind": "look_at", "distance": [2.732], "elevation": [30.0], "azimuth": [45.0]}
    camera["viewing_angle"] = [15.0]
    # the photo is the crop box itself: the frame is the crop, no shift
    report = {"camera": camera, "crop_box": {"x0": 0, "y0": 0, "side": 96}}
    report["photo"] = {"width": 96, "height": 96}
    made = importer.add_photo_camera(obj, report, photo, scene.collection)
    assert made is not None and made.data.type == "PERSP"
    assert made.data.angle == pytest.approx(2 * np.radians(15.0), rel=1e-5)
    assert (made.data.shift_x, made.data.shift_y) == pytest.approx((0.0, 0.0), abs=1e-6)
    # eye = (d cos e sin a, d sin e, -d cos e cos a) in glTF axes, through the import transform
    e, a = np.radians(30.0), np.radians(45.0)
    eye = 2.732 * Vector((np.cos(e) * np.sin(a), np.sin(e), -np.cos(e) * np.cos(a)))
    to_world = obj.matrix_world @ importer.import_matrix(obj) @ importer.BLENDER_FROM_GLTF.to_4x4()
    assert tuple(made.matrix_world.translation) == pytest.approx(tuple(to_world @ eye), abs=1e-4)
    forward = made.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0))
    target = (to_world @ Vector((0.0, 0.0, 0.0)) - made.matrix_world.translation).normalized()
    assert forward.dot(target) == pytest.approx(1.0, abs=1e-5)  # it looks at the backend's origin
    # the camera's side of the object is the front: turned by facing_angle (a half turn or none), it
    # lies on the -Y side, and the turn keeps the object's x axis (its symmetry plane) on the world's
    towards = importer.BLENDER_FROM_GLTF @ eye.normalized()  # (sin a, cos a) cos e horizontally
    angle = importer.facing_angle(camera)
    turned = Matrix.Rotation(angle, 3, "Z") @ towards
    assert turned.y < 0 and min(abs(angle), abs(abs(angle) - np.pi)) < 1e-9
    # a report without a camera adds nothing
    assert importer.add_photo_camera(obj, {"photo": {}}, photo, scene.collection) is None
