"""Mesh file IO: TexturedMesh <-> glTF binary (.glb) and Wavefront OBJ (.obj + .mtl + texture PNG).

Writing:

- ``save_glb`` writes one mesh with UVs and the texture embedded (PNG) as the base colour texture of
  a PBR material (metallic 0, roughness 1: a plain diffuse surface in Blender). glTF has one index
  buffer, so every distinct (vertex, uv) pair of the mesh becomes its own glTF vertex: vertices on
  UV seams are duplicated, ordered by their original index.
- ``save_obj`` writes ``<stem>.obj`` (positions and UVs indexed separately, ``f v/vt``, nothing
  duplicated, floats with 9 significant digits so float32 survives exactly), ``<stem>.mtl`` and
  ``<stem>_texture.png`` (``map_Kd``).
- Textures are quantised to 8 bits (``round(255 x)``); PNG is lossless after that. Vertex colours are
  not written.

Reading goes through trimesh, which splits vertices at UV seams. ``load_*`` then weld by default
(``weld_vertices``): vertices with bit-identical positions become one vertex again and identical UVs
one UV, both in order of first appearance, so a file we wrote reads back with its original vertex
and UV counts. A round trip therefore keeps: the same triangles in space (face corner positions), the
same UV at every face corner, and the same texture bytes. A file without a texture image gets a
64 x 64 texture filled with its material's colour (mid-grey when there is none); a file without UVs
gets a single UV (0, 0) for every corner, and its vertex colours, if any, as ``vertex_colors``.
A glTF ``baseColorFactor`` multiplies the texture, as the glTF specification says.

Errors: a missing file raises ``FileNotFoundError``; an unreadable file, a file with no triangles
or an unsupported suffix raises ``ValueError``; all messages name the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh
from PIL import Image
from torch import Tensor

from backend.geometry.mesh import TexturedMesh

DEFAULT_GREY = 0.5
"""Texture value of a mesh that has neither a texture nor a material colour."""

DEFAULT_TEXTURE_SIZE = 64
"""Side of the flat texture given to a mesh without a texture image."""

MATERIAL_NAME = "material_0"


def save_glb(mesh: TexturedMesh, path: str | Path) -> Path:
    """Write ``mesh`` as a binary glTF with its UVs and embedded PNG texture; returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".glb":
        raise ValueError(f"save_glb writes .glb files, got {path}")
    faces = mesh.faces.detach().cpu().numpy()
    face_uvs = mesh.face_uvs.detach().cpu().numpy()
    pairs = np.stack([faces.reshape(-1), face_uvs.reshape(-1)], axis=1)  # (3F, 2) (vertex, uv) per corner
    unique_pairs, corner_index = np.unique(pairs, axis=0, return_inverse=True)  # sorted by vertex index
    vertices = mesh.vertices.detach().cpu().numpy()[unique_pairs[:, 0]]
    uvs = mesh.uvs.detach().cpu().numpy()[unique_pairs[:, 1]]
    material = trimesh.visual.material.PBRMaterial(
        name=MATERIAL_NAME,
        baseColorTexture=texture_to_image(mesh.texture),
        metallicFactor=0.0,
        roughnessFactor=1.0,
    )
    exported = trimesh.Trimesh(
        vertices=vertices,
        faces=corner_index.reshape(-1, 3),
        visual=trimesh.visual.TextureVisuals(uv=uvs, material=material),
        process=False,
    )
    data = exported.export(file_type="glb")
    if not isinstance(data, bytes):
        raise TypeError(f"trimesh returned {type(data).__name__} instead of GLB bytes")
    path.write_bytes(data)
    return path


def save_obj(mesh: TexturedMesh, path: str | Path) -> list[Path]:
    """Write ``<stem>.obj``, ``<stem>.mtl`` and ``<stem>_texture.png``; returns the three paths."""
    path = Path(path)
    if path.suffix.lower() != ".obj":
        raise ValueError(f"save_obj writes .obj files, got {path}")
    mtl_path = path.with_suffix(".mtl")
    texture_path = path.with_name(f"{path.stem}_texture.png")
    lines = ["# Mono2Mesh", f"mtllib {mtl_path.name}", f"o {path.stem}"]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices.detach().cpu().tolist()]
    lines += [f"vt {u:.9g} {v:.9g}" for u, v in mesh.uvs.detach().cpu().tolist()]
    lines.append(f"usemtl {MATERIAL_NAME}")
    corners = torch.stack([mesh.faces, mesh.face_uvs], dim=-1).cpu() + 1  # (F, 3, 2), 1-based
    lines += [" ".join(["f"] + [f"{v}/{t}" for v, t in face]) for face in corners.tolist()]
    path.write_text("\n".join(lines) + "\n")
    mtl_path.write_text(
        f"newmtl {MATERIAL_NAME}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {texture_path.name}\n"
    )
    texture_to_image(mesh.texture).save(texture_path)
    return [path, mtl_path, texture_path]


def load_glb(path: str | Path, weld: bool = True) -> TexturedMesh:
    """Read a .glb/.gltf file (all its meshes, scene transforms applied) as one TexturedMesh."""
    return _load(Path(path), {".glb", ".gltf"}, weld)


def load_obj(path: str | Path, weld: bool = True) -> TexturedMesh:
    """Read an .obj file with the ``map_Kd`` texture of its .mtl as one TexturedMesh."""
    return _load(Path(path), {".obj"}, weld)


def load_mesh(path: str | Path, weld: bool = True) -> TexturedMesh:
    """Read a mesh file chosen by suffix: .glb/.gltf, .obj, or .ply/.off/.stl (through trimesh)."""
    return _load(Path(path), {".glb", ".gltf", ".obj", ".ply", ".off", ".stl"}, weld)


def texture_to_image(texture: Tensor) -> Image.Image:
    """An 8-bit RGB PIL image from a (H, W, 3) texture in [0, 1] (clamped, rounded)."""
    if texture.dim() != 3 or texture.shape[2] != 3:
        raise ValueError(f"texture must have shape (H, W, 3), got {tuple(texture.shape)}")
    pixels = (texture.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, mode="RGB")


def image_to_texture(image: Image.Image) -> Tensor:
    """A (H, W, 3) float32 texture in [0, 1] from a PIL image of any mode (alpha is dropped)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)


def weld_vertices(mesh: TexturedMesh) -> TexturedMesh:
    """Merge vertices with bit-identical positions and identical UVs, keeping first-appearance order.

    Face and face-UV indices are remapped; unused vertices and UVs are dropped. Vertex colours are
    kept (the first vertex of each group gives the colour).

    >>> vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]])
    >>> uvs = torch.tensor([[0.0, 0], [1, 0], [0, 1], [1, 0]])
    >>> faces = torch.tensor([[0, 1, 2], [3, 2, 0]])
    >>> welded = weld_vertices(TexturedMesh(vertices, faces, uvs, faces, torch.zeros(1, 1, 3)))
    >>> welded.num_vertices, welded.faces.tolist(), welded.uvs.shape[0]
    (3, [[0, 1, 2], [1, 2, 0]], 3)
    """
    vertex_map, vertex_keep = _first_unique(mesh.vertices, mesh.faces)
    uv_map, uv_keep = _first_unique(mesh.uvs, mesh.face_uvs)
    colors = None if mesh.vertex_colors is None else mesh.vertex_colors[vertex_keep]
    return TexturedMesh(
        mesh.vertices[vertex_keep],
        vertex_map[mesh.faces],
        mesh.uvs[uv_keep],
        uv_map[mesh.face_uvs],
        mesh.texture,
        colors,
    )


def _first_unique(rows: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Unique rows (N, D) among those ``index`` uses: old -> new map (N,), kept old rows (M,) in order."""
    used = torch.unique(index.reshape(-1)).cpu().numpy()
    values = rows.detach().cpu().numpy()[used]
    _, first, inverse = np.unique(values, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))  # group -> new index, first-use order
    mapping = np.zeros(rows.shape[0], dtype=np.int64)
    mapping[used] = rank[inverse.reshape(-1)]
    keep = used[np.sort(first)]
    return torch.from_numpy(mapping).to(index.device), torch.from_numpy(keep).to(rows.device)


def _load(path: Path, suffixes: set[str], weld: bool) -> TexturedMesh:
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{path}: unsupported suffix {path.suffix!r}, expected one of {sorted(suffixes)}")
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as error:  # trimesh raises many kinds of errors for malformed files
        raise ValueError(f"{path} is not a readable mesh file: {error}") from error
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{path} contains no triangles")
    try:
        mesh = _from_trimesh(loaded)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return weld_vertices(mesh) if weld else mesh


def _from_trimesh(loaded: trimesh.Trimesh) -> TexturedMesh:
    # a file reader: the mesh is built on the CPU, callers move it with ``.to(device)``
    vertices = torch.tensor(np.asarray(loaded.vertices), dtype=torch.float32, device="cpu")
    faces = torch.tensor(np.asarray(loaded.faces), dtype=torch.long, device="cpu")
    visual = loaded.visual
    uv = getattr(visual, "uv", None)
    image, color = _material_image_and_color(getattr(visual, "material", None))
    if image is not None:
        texture = image_to_texture(image) * color
    else:
        texture = color.expand(DEFAULT_TEXTURE_SIZE, DEFAULT_TEXTURE_SIZE, 3).clone()
    vertex_colors = None
    if uv is not None and len(uv) == len(vertices):
        uvs = torch.tensor(np.asarray(uv), dtype=torch.float32, device="cpu")
        face_uvs = faces.clone()
    else:
        uvs = torch.zeros(1, 2, device="cpu")
        face_uvs = torch.zeros_like(faces)
        if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
            colors = np.asarray(visual.vertex_colors)[:, :3]
            vertex_colors = torch.tensor(colors, dtype=torch.float32, device="cpu") / 255.0
    return TexturedMesh(vertices, faces, uvs, face_uvs, texture, vertex_colors)


def _material_image_and_color(material: object) -> tuple[Image.Image | None, Tensor]:
    """The texture image (or None) and the (3,) CPU colour that multiplies it (or fills the texture)."""
    grey = torch.full((3,), DEFAULT_GREY, device="cpu")
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        factor = material.baseColorFactor
        image = material.baseColorTexture
        if factor is not None:
            return image, torch.tensor(np.asarray(factor)[:3], dtype=torch.float32, device="cpu") / 255.0
        return image, torch.ones(3, device="cpu") if image is not None else grey
    if isinstance(material, trimesh.visual.material.SimpleMaterial):
        if material.image is not None:
            return material.image, torch.ones(3, device="cpu")  # MTL Kd is ignored under map_Kd, as Blender
        diffuse = np.asarray(material.diffuse)[:3]
        return None, torch.tensor(diffuse, dtype=torch.float32, device="cpu") / 255.0
    return None, grey
