"""The renderer: world-space meshes and cameras in, a ``RenderOutput`` of images out.

``render`` = ``Camera.project`` -> ``rasterize`` (or ``dense.rasterize_dense``: ``settings.backend``,
chosen by ``backends.select_backend``) -> shading (texture or vertex colours, optional
Lambert light) -> dense images. On the CPU (the numba backend) the visible surface, the soft
silhouette and the texture lookup come from compiled loops (``cpu_raster``) instead. Everything is
differentiable in vertex positions, camera parameters, UV textures and vertex colours.

Precision: the renderer computes in float32 (float64 when the vertices are float64, for gradcheck),
whatever the caller's autocast state. Inside ``torch.autocast`` (fp16 or bf16 training steps) it turns
autocast off and promotes half-precision inputs to float32: the squared edge distances of the soft band,
the log-space product of the soft silhouette, barycentrics and depths lose too much in 8-10 mantissa
bits, and the renderer's scatters need one dtype. Every image of ``RenderOutput`` is therefore float32
(or float64); callers under autocast mix it with their half-precision tensors as autocast allows, and
gradients flow back to half-precision inputs through the casts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor

from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.render import shade
from backend.render.backends import select_backend
from backend.render.cpu_raster import cpu_sample_texture, cpu_soft_silhouette
from backend.render.dense import rasterize_dense
from backend.render.rasterize import Fragments, rasterize, validate_vertices
from backend.render.settings import RasterSettings


@dataclass(frozen=True)
class Lighting:
    """Lambert lighting in view space: colour * (ambient + diffuse * max(0, n . light_direction)).

    The default (ambient 1, diffuse 0) shows the texture as it is; ``light_direction`` (0, 0, 1)
    points from the surface towards the camera.
    """

    ambient: float = 1.0
    diffuse: float = 0.0
    light_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)


OUTPUTS = ("all", "alpha")
"""The values of ``render``'s ``outputs``: every image, or the silhouette alone."""


@dataclass(frozen=True)
class RenderOutput:
    """Images of B meshes, S x S pixels, row 0 at the top.

    ``rgb`` and ``alpha`` are made by ``render``; the other images are made from the fragments the
    first time they are read (so a loss that needs only colour and silhouette pays for nothing else).
    A render with ``outputs="alpha"`` made ``alpha`` alone: reading any other image raises
    ``RuntimeError``.

    Attributes:
        alpha: (B, S, S, 1) the soft silhouette (SoftRas) when ``settings.soft``, else the hard one.
        raster: the rasterization the images are made from (packed, or dense on the triton backend;
            without the visible surface after a soft ``outputs="alpha"`` render on the torch backend;
            the visible surface alone, no band pairs, on the numba backend, and None after a soft
            ``outputs="alpha"`` render there); read it as ``fragments``.
        rgb_image: the (B, S, S, 3) colour image (``rgb``), None when ``outputs`` is "alpha".
        outputs: what the render made ("all" or "alpha").
    """

    alpha: Tensor
    raster: Fragments | None
    rgb_image: Tensor | None = None
    outputs: str = "all"

    @property
    def fragments(self) -> Fragments:
        """The rasterization the images are made from (``raster``); a silhouette from the numba kernel
        has none (``RuntimeError``: render with ``backend="torch"`` to read them)."""
        if self.raster is None:
            raise RuntimeError(
                "this render made its silhouette with the numba CPU kernel, which makes no fragments; "
                "render with RasterSettings(backend='torch') to read them"
            )
        return self.raster

    def _require_all(self, name: str) -> None:
        if self.outputs != "all":
            raise RuntimeError(
                f"RenderOutput.{name} was not produced: this render made only the silhouette "
                f"(render(..., outputs={self.outputs!r})); render with outputs='all' to read it"
            )

    @property
    def rgb(self) -> Tensor:
        """(B, S, S, 3) colour of the visible surface at each pixel centre, background elsewhere."""
        self._require_all("rgb")
        assert self.rgb_image is not None  # outputs "all" always makes it
        return self.rgb_image

    @cached_property
    def mask(self) -> Tensor:
        """(B, S, S, 1) hard coverage in {0, 1}."""
        self._require_all("mask")
        return shade.hard_silhouette(self.fragments)

    @cached_property
    def depth(self) -> Tensor:
        """(B, S, S, 1) depth of the visible surface, 0 on the background; differentiable."""
        self._require_all("depth")
        return shade.to_image(self.fragments, self.fragments.depth[:, None])

    @cached_property
    def face_index(self) -> Tensor:
        """(B, S, S) int64 index of the visible face, -1 on the background."""
        self._require_all("face_index")
        return shade.to_image(self.fragments, self.fragments.face[:, None], -1).squeeze(-1)

    @cached_property
    def barycentrics(self) -> Tensor:
        """(B, S, S, 3) barycentric coordinates of the pixel centre in the visible face; differentiable."""
        self._require_all("barycentrics")
        return shade.to_image(self.fragments, self.fragments.bary)


def render(
    vertices: Tensor,
    faces: Tensor,
    camera: Camera,
    settings: RasterSettings,
    *,
    uvs: Tensor | None = None,
    face_uvs: Tensor | None = None,
    texture: Tensor | None = None,
    vertex_colors: Tensor | None = None,
    lighting: Lighting | None = None,
    outputs: str = "all",
) -> RenderOutput:
    """Render B meshes that share faces, one per camera.

    Args:
        vertices: (B, V, 3) world positions, or (V, 3) shared by all B cameras.
        faces: (F, 3) int64.
        camera: B cameras.
        settings: raster settings (``perspective_correct`` is set here from the camera kind).
        uvs, face_uvs, texture: (T, 2), (F, 3) and (H, W, 3) or (B, H, W, 3): colour from a UV texture.
        vertex_colors: (B, V, 3) or (V, 3): colour from vertices, when no texture is given.
        lighting: Lambert lighting; None shows unlit colours (white when there is no colour source).
        outputs: "all" (the default) makes every image; "alpha" makes the silhouette alone, for losses
            that read nothing else: the torch backend then skips the colours and, for a soft silhouette,
            the visible-surface search (z-buffer, barycentrics, depth); the same ``alpha`` either way.
            Reading ``rgb``, ``mask``, ``depth``, ``face_index`` or ``barycentrics`` then raises.

    Returns:
        Images in float32 (float64 for float64 vertices), also under ``torch.autocast`` (module docstring).
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
    dtype = _render_dtype(vertices)
    device_type = vertices.device.type
    if torch.is_autocast_enabled(device_type) or _any_half(vertices, texture, vertex_colors, camera):
        with torch.autocast(device_type, enabled=False):
            return _render(
                vertices.to(dtype), faces, camera.to(vertices.device, dtype), settings, uvs=uvs,
                face_uvs=face_uvs, texture=None if texture is None else texture.to(dtype),
                vertex_colors=None if vertex_colors is None else vertex_colors.to(dtype), lighting=lighting,
                outputs=outputs,
            )  # fmt: skip
    return _render(
        vertices, faces, camera, settings, uvs=uvs, face_uvs=face_uvs, texture=texture,
        vertex_colors=vertex_colors, lighting=lighting, outputs=outputs,
    )  # fmt: skip


def _render_dtype(vertices: Tensor) -> torch.dtype:
    """float64 for float64 vertices, float32 for everything else (half precision included)."""
    return torch.float64 if vertices.dtype == torch.float64 else torch.float32


def _any_half(vertices: Tensor, texture: Tensor | None, colors: Tensor | None, camera: Camera) -> bool:
    tensors = [vertices, texture, colors, *camera.tensors().values()]
    return any(t is not None and t.dtype in (torch.float16, torch.bfloat16) for t in tensors)


def _render(
    vertices: Tensor,
    faces: Tensor,
    camera: Camera,
    settings: RasterSettings,
    *,
    uvs: Tensor | None,
    face_uvs: Tensor | None,
    texture: Tensor | None,
    vertex_colors: Tensor | None,
    lighting: Lighting | None,
    outputs: str,
) -> RenderOutput:
    lighting = lighting or Lighting()
    if vertices.dim() == 2:
        vertices = vertices.unsqueeze(0).expand(camera.batch_size, -1, -1)
    if vertices.dim() != 3 or vertices.shape[0] != camera.batch_size:
        raise ValueError(
            f"vertices of shape {tuple(vertices.shape)} do not match a batch of {camera.batch_size} cameras"
        )
    if texture is not None and (uvs is None or face_uvs is None):
        raise ValueError("a texture needs uvs and face_uvs")
    settings = replace(settings, perspective_correct=camera.kind == "look_at")
    vertices_ndc = camera.project(vertices)  # (B, V, 3)
    backend = select_backend(vertices_ndc.device, settings.backend).name
    if backend == "numba" and settings.soft and outputs == "alpha":  # the fit loop's render
        validate_vertices(vertices_ndc, faces)
        return RenderOutput(
            alpha=cpu_soft_silhouette(vertices_ndc, faces, settings), raster=None, outputs=outputs
        )
    if backend == "numba":  # the visible surface compiled; the soft silhouette (if any) too
        fragments = rasterize(vertices_ndc, faces, settings, compiled=True)
        alpha = (
            cpu_soft_silhouette(vertices_ndc, faces, settings)
            if settings.soft
            else shade.hard_silhouette(fragments)
        )
    else:
        if backend == "triton":
            fragments = rasterize_dense(vertices_ndc, faces, settings)
        else:
            # the soft silhouette reads only the band pairs; the hard one reads the visible surface
            fragments = rasterize(
                vertices_ndc, faces, settings, visible=outputs == "all" or not settings.soft
            )
        alpha = (
            shade.soft_silhouette(fragments, settings.sigma)
            if settings.soft
            else shade.hard_silhouette(fragments)
        )
    if outputs == "alpha":
        return RenderOutput(alpha=alpha, raster=fragments, outputs=outputs)

    dtype, device = vertices_ndc.dtype, vertices_ndc.device
    if texture is not None and uvs is not None and face_uvs is not None:
        if face_uvs.shape != faces.shape:
            raise ValueError(
                f"face_uvs must have the shape of faces {tuple(faces.shape)}, got {tuple(face_uvs.shape)}"
            )
        if backend == "numba":
            colors = cpu_sample_texture(fragments, uvs.to(dtype), face_uvs, texture)
        else:
            uv = shade.interpolate_face_attributes(fragments, uvs.to(dtype), face_uvs)
            colors = shade.sample_texture(fragments, uv, texture)
    elif vertex_colors is not None:
        colors = shade.interpolate_vertex_attributes(fragments, vertex_colors, faces)
    else:
        colors = torch.ones(fragments.pixel.shape[0], 3, dtype=dtype, device=device)  # (P, 3)
    if lighting.diffuse != 0.0 or lighting.ambient != 1.0:
        normals = shade.face_normals_at_pixels(fragments, camera.transform_points(vertices), faces)
        light = torch.tensor(lighting.light_direction, dtype=dtype, device=device)
        colors = shade.lambert(colors, normals, light, lighting.ambient, lighting.diffuse)

    background = torch.tensor(lighting.background, dtype=colors.dtype, device=device)
    return RenderOutput(
        alpha=alpha, raster=fragments, rgb_image=shade.to_image(fragments, colors, background)
    )


def render_mesh(
    mesh: TexturedMesh, camera: Camera, settings: RasterSettings, lighting: Lighting | None = None
) -> RenderOutput:
    """Render one textured mesh from each of the B cameras."""
    return render(
        mesh.vertices,
        mesh.faces,
        camera,
        settings,
        uvs=mesh.uvs,
        face_uvs=mesh.face_uvs,
        texture=mesh.texture,
        lighting=lighting,
    )
