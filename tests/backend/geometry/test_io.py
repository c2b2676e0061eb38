"""Tests for backend.geometry.io: Spot and template round trips through GLB and OBJ, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from backend.geometry.io import (
    load_glb,
    load_mesh,
    load_obj,
    save_glb,
    save_obj,
    texture_to_image,
    weld_vertices,
)
from backend.geometry.mesh import TexturedMesh
from backend.geometry.templates import icosphere_template

SPOT = Path("/work/shared/data/meshes/spot/spot_triangulated.obj")


@pytest.fixture(scope="module")
def spot() -> TexturedMesh:
    return load_obj(SPOT)


@pytest.fixture(scope="module")
def textured_sphere() -> TexturedMesh:
    mesh = icosphere_template().mesh
    texture = torch.rand(mesh.texture.shape, generator=torch.Generator().manual_seed(0))
    return mesh.with_texture(texture)


def face_corners(mesh: TexturedMesh) -> dict[tuple[tuple[float, ...], ...], np.ndarray]:
    """Each face keyed by its three corner positions (rotated to start at the smallest; order-free),
    mapped to its three corner UVs (3, 2)."""
    positions = mesh.vertices[mesh.faces].tolist()  # (F, 3, 3), exact float32 values
    uvs = mesh.uvs[mesh.face_uvs].numpy()  # (F, 3, 2)
    table = {}
    for face, face_uvs in zip(positions, uvs, strict=True):
        k = face.index(min(face))
        table[tuple(tuple(corner) for corner in face[k:] + face[:k])] = np.roll(face_uvs, -k, axis=0)
    return table


def assert_same_corners(loaded: TexturedMesh, original: TexturedMesh, uv_atol: float) -> None:
    """The same triangles in space (as a set) with the same UV at every corner."""
    loaded_table, original_table = face_corners(loaded), face_corners(original)
    assert loaded_table.keys() == original_table.keys()
    for key, uvs in original_table.items():
        assert np.allclose(loaded_table[key], uvs, atol=uv_atol, rtol=0)


def texture_bytes(mesh: TexturedMesh) -> np.ndarray:
    return np.asarray(texture_to_image(mesh.texture))


def assert_same_surface(loaded: TexturedMesh, original: TexturedMesh, uv_atol: float) -> None:
    """Same triangles in space, same UV per face corner, same 8-bit texture."""
    assert loaded.num_faces == original.num_faces
    assert_same_corners(loaded, original, uv_atol)
    # Corner by corner as well (both writers keep the face order).
    assert torch.equal(loaded.vertices[loaded.faces], original.vertices[original.faces])
    assert torch.allclose(loaded.uvs[loaded.face_uvs], original.uvs[original.face_uvs], atol=uv_atol, rtol=0)
    assert np.array_equal(texture_bytes(loaded), texture_bytes(original))


def test_spot_loads_with_file_counts(spot: TexturedMesh) -> None:
    # The file has 2930 v, 3225 vt and 5856 f; welding undoes trimesh's split at UV seams.
    assert (spot.num_vertices, spot.uvs.shape[0], spot.num_faces) == (2930, 3225, 5856)
    assert spot.texture.shape == (1024, 1024, 3)
    pixels = np.asarray(Image.open(SPOT.with_name("spot_texture.png")).convert("RGB"))
    assert np.array_equal(texture_bytes(spot), pixels)
    first_vertex = [float(x) for x in SPOT.read_text().split("\nv ", 1)[1].split("\n", 1)[0].split()]
    assert spot.vertices[0].tolist() == pytest.approx(first_vertex)
    unwelded = load_obj(SPOT, weld=False)
    assert (unwelded.num_vertices, unwelded.num_faces) == (3225, 5856)
    welded = weld_vertices(unwelded)
    assert torch.equal(welded.vertices, spot.vertices) and torch.equal(welded.faces, spot.faces)


@pytest.mark.parametrize("mesh_name", ["spot", "textured_sphere"])
def test_glb_round_trip(mesh_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    mesh = request.getfixturevalue(mesh_name)
    path = save_glb(mesh, tmp_path / "mesh.glb")
    loaded = load_glb(path)
    # glTF stores v flipped (1 - v), so UVs come back to float32 rounding, positions exactly.
    assert_same_surface(loaded, mesh, uv_atol=1e-6)
    assert (loaded.num_vertices, loaded.uvs.shape[0]) == (mesh.num_vertices, mesh.uvs.shape[0])
    # One glTF vertex per distinct (vertex, uv) pair; the material is a plain diffuse PBR material.
    raw = trimesh.load(path, force="mesh", process=False)
    pairs = torch.unique(torch.stack([mesh.faces.reshape(-1), mesh.face_uvs.reshape(-1)], dim=1), dim=0)
    assert len(raw.vertices) == len(pairs)
    assert raw.visual.material.metallicFactor == 0.0
    assert raw.visual.material.baseColorTexture.size == (mesh.texture.shape[1], mesh.texture.shape[0])


@pytest.mark.parametrize("mesh_name", ["spot", "textured_sphere"])
def test_obj_round_trip(mesh_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    mesh = request.getfixturevalue(mesh_name)
    written = save_obj(mesh, tmp_path / "result.obj")
    assert [p.name for p in written] == ["result.obj", "result.mtl", "result_texture.png"]
    assert "map_Kd result_texture.png" in written[1].read_text()
    text = written[0].read_text()
    assert text.count("\nv ") == mesh.num_vertices and text.count("\nvt ") == mesh.uvs.shape[0]
    loaded = load_obj(written[0])
    assert_same_surface(loaded, mesh, uv_atol=0)
    # OBJ keeps positions and UVs indexed separately (9 significant digits: float32 exactly), so
    # vertices and faces come back identical; UVs come back in trimesh's order.
    assert torch.equal(loaded.vertices, mesh.vertices) and torch.equal(loaded.faces, mesh.faces)
    assert loaded.uvs.shape == mesh.uvs.shape


def test_load_mesh_dispatches_on_suffix(textured_sphere: TexturedMesh, tmp_path: Path) -> None:
    save_glb(textured_sphere, tmp_path / "a.glb")
    save_obj(textured_sphere, tmp_path / "a.obj")
    for name in ("a.glb", "a.obj"):
        assert_same_corners(load_mesh(tmp_path / name), textured_sphere, uv_atol=1e-6)


def test_mesh_without_texture_gets_flat_texture(tmp_path: Path) -> None:
    box = trimesh.creation.box()
    path = tmp_path / "box.obj"
    path.write_text(trimesh.exchange.obj.export_obj(box, include_texture=False))
    loaded = load_obj(path)
    assert loaded.num_faces == 12
    assert loaded.texture.shape == (64, 64, 3)
    assert torch.allclose(loaded.texture, torch.full((64, 64, 3), 0.5))
    assert loaded.uvs.tolist() == [[0.0, 0.0]] and (loaded.face_uvs == 0).all()


def test_vertex_colours_are_kept_without_texture(tmp_path: Path) -> None:
    box = trimesh.creation.box()
    colors = np.tile(np.array([[255, 0, 0, 255]], dtype=np.uint8), (len(box.vertices), 1))
    colors[0] = [0, 255, 0, 255]
    box.visual = trimesh.visual.ColorVisuals(box, vertex_colors=colors)
    path = tmp_path / "box.ply"
    box.export(path)
    loaded = load_mesh(path, weld=False)
    assert loaded.vertex_colors is not None
    assert torch.allclose(loaded.vertex_colors, torch.tensor(colors[:, :3] / 255.0, dtype=torch.float32))


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    for loader in (load_glb, load_obj, load_mesh):
        suffix = ".glb" if loader is load_glb else ".obj"
        with pytest.raises(FileNotFoundError, match=f"missing{suffix}"):
            loader(tmp_path / f"missing{suffix}")


def test_bad_files_raise_value_error(tmp_path: Path) -> None:
    not_a_mesh = tmp_path / "garbage.glb"
    not_a_mesh.write_bytes(b"this is not a glTF file at all")
    with pytest.raises(ValueError, match=r"garbage\.glb"):
        load_glb(not_a_mesh)
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing here\n")
    with pytest.raises(ValueError, match=r"empty\.obj"):
        load_obj(empty)
    points_only = tmp_path / "points.obj"
    points_only.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(ValueError, match=r"points\.obj"):
        load_obj(points_only)
    image = tmp_path / "picture.png"
    Image.new("RGB", (4, 4)).save(image)
    with pytest.raises(ValueError, match=r"picture\.png"):
        load_mesh(image)


def test_writers_check_suffix(textured_sphere: TexturedMesh, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"mesh\.obj"):
        save_glb(textured_sphere, tmp_path / "mesh.obj")
    with pytest.raises(ValueError, match=r"mesh\.glb"):
        save_obj(textured_sphere, tmp_path / "mesh.glb")


def test_texture_is_quantised_to_8_bits(tmp_path: Path) -> None:
    mesh = icosphere_template().mesh
    texture = torch.full(mesh.texture.shape, 0.25)
    texture[0, 0] = torch.tensor([1.5, -0.2, 0.5])  # clamped to [0, 1]
    loaded = load_obj(save_obj(mesh.with_texture(texture), tmp_path / "q.obj")[0])
    assert loaded.texture[1, 1].tolist() == pytest.approx([64 / 255] * 3)  # round(63.75) = 64
    assert loaded.texture[0, 0].tolist() == pytest.approx([1.0, 0.0, 128 / 255])


def test_glb_material_colour_without_texture_fills_texture(tmp_path: Path) -> None:
    box = trimesh.creation.box()
    material = trimesh.visual.material.PBRMaterial(baseColorFactor=[255, 0, 51, 255])
    box.visual = trimesh.visual.TextureVisuals(material=material)
    path = tmp_path / "red.glb"
    box.export(path)
    loaded = load_glb(path)
    assert loaded.num_faces == 12 and loaded.texture.shape == (64, 64, 3)
    assert torch.allclose(loaded.texture, torch.tensor([1.0, 0.0, 0.2]).expand(64, 64, 3))
