"""The ``unsup3d`` method: Unsup3d (Wu, Rupprecht and Vedaldi 2020), a trained network that reads a
photo's canonical depth, albedo, light and view (``backend.models.unsup3d``; trained by
``mono2mesh-train unsup3d``), served as a textured relief mesh.

Given the crop (S x S, at least the network's input side n, 64) and its mask, three phases, each timed:

1. **network** (``timings["network"]``): the crop area-resized to n x n (unmasked: the network learnt
   from raw images) gives the canonical depth (n, n) in [0.9, 1.1], albedo, light (ambient, diffuse,
   direction), view (rotation degrees about x, y, z and translation, the reference's frame) and the
   photometric confidence (sigma, input and flipped).
2. **mesh** (``timings["mesh"]``): the depth grid (``backend.geometry.depth_grid``: the n x n pixel centres
   plus the cell centres, four triangles per cell, the reference's export) as a relief
   (``backend.meshing.depth_relief``), read under parallel projection in the object's **canonical frame**:
   symmetric about x = 0 like the depth map, Y up, its front (+Z) towards the camera, x and y in [-1, 1]
   over the pixel centres. The Reconstruction's weak-perspective camera carries the predicted view: its
   rotation is the view's, its scale and translation fitted (least squares) to the exact projection of
   the kept front vertices through the network's 10-degree perspective camera (``unsup3d_view``); the
   report's ``camera_fit`` gives the remaining error in crop pixels (0 for a frontal view).
   With ``mask_cut`` the faces whose centre the view projects outside the mask are dropped (and those
   that would leave two parts touching at a vertex only). ``close`` makes it a solid: ``mirror`` (the
   default) adds a back surface whose depth is the front's mirrored about a plane just behind the
   farthest kept point, ``plane`` a flat back on that plane, ``none`` leaves the front surface only (the
   reference's export); a rim joins front and back along the cut, so the solid is closed (every edge
   shared by two faces). The back is ``BACK_GAP`` of the depth range behind the farthest point.
3. **texture** (``timings["texture"]``) at ``texture_size`` (256) on the grid's UVs (the canonical image
   grid): ``photo`` (default) samples the crop where the view sees each texel's surface point (for a
   frontal view: the crop resized), texels the view hides taking their mirror texel's colour
   (``symmetric_fill``); ``delit`` is that divided by the predicted shading (upsampled, at least
   ``SHADING_FLOOR``, clamped to [0, 1]); ``albedo`` is the network's canonical albedo upsampled from
   n x n. The back and the rim share the front's UVs: the back shows the front's texture through the
   object, the rim the colour of its front edge, with no seam along the cut.

Why the canonical frame: every other method builds its object in its own frame and lets the camera
carry the pose, and the add-on relies on it (Blender's Front view shows the object, the symmetry plane
is x = 0 for X-mirror editing, "As in the Photo" adds the camera that sees it as the photo did); the
network's canonical depth is exactly that frame. Why parallel projection: the weak-perspective camera
(the one camera kind with a free rotation) then reprojects the front exactly for a frontal view, and a
back built along the same parallel rays hides behind it, so the closed object's outline is the photo's;
the cost is the 10-degree perspective's foreshortening (points are at most 1.11 times too wide over the
depth range). Why ``mirror`` by default: a Blender user turns the object round; a flat back (``plane``)
reads as a plaque, the mirrored back as a rounded object of about twice the relief's depth, the same
from behind as in front.

The report: ``template`` "depthgrid-64" (every result's UVs are the same canonical grid; two results
with ``mask_cut=false`` and the same ``close`` share their whole layout, so the add-on transfers
textures between them by copying), the silhouette IoU of the reprojection against the mask (with
``mask_cut``; without it the grid fills the crop and no IoU is reported), and in ``extra`` the depth
range, the light, the view, the confidence means, the camera fit, the mesh's parts and the texture's
hidden and filled texels. ``init_mesh`` (refinement) is not supported. Checkpoints are
``backend.checkpoints`` files of method ``unsup3d``; without ``--checkpoint`` the newest installed one.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.fitting.report import reprojection_iou
from backend.geometry.depth_grid import depth_grid_faces, grid_pixel_positions, grid_vertex_depths
from backend.geometry.mesh import TexturedMesh
from backend.meshing.depth_relief import CloseMode, ParallelFrame, relief_mesh
from backend.meshing.relief import Relief
from backend.methods.base import MethodError, MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.checkpointed import CheckpointedMethod
from backend.methods.unsup3d_texture import albedo_texture, delit, photo_texture
from backend.methods.unsup3d_view import ViewProjection, fit_weak_camera
from backend.models.unsup3d import TEMPLATE_ID, Unsup3dNet, Unsup3dOutput, build_unsup3d, shade

Field = pydantic.Field

TextureMode = Literal["photo", "delit", "albedo"]
BACK_GAP = 0.05
"""Distance of the back's plane behind the farthest kept point, as a share of the depth range."""
HIDDEN_TOLERANCE = 0.05
"""Depth (share of the depth range) by which a texel's point must lie behind the seen surface to count
as hidden (``unsup3d_texture.photo_texture``)."""
NETWORK_SHARE = 0.6
"""Share of the "shape" stage's progress given to the network (the rest: the mesh)."""


class Unsup3dOptions(MethodOptions):
    """Options of the ``unsup3d`` method (module docstring)."""

    crop_size: int = Field(
        256, ge=16, le=2048,
        description="side of the photo crop around the object; at least the network's input side (64)",
    )  # fmt: skip
    texture: TextureMode = Field(
        "photo", description="photo: the crop where the view sees each texel; delit: that divided by the "
        "predicted shading; albedo: the network's canonical albedo, upsampled",
    )  # fmt: skip
    texture_size: int = Field(256, ge=16, le=4096, description="side of the output texture")
    mask_cut: bool = Field(True, description="drop the faces outside the mask (the background)")
    close: CloseMode = Field(
        "mirror", description="mirror: a back surface of mirrored depth (a closed, rounded object); "
        "plane: a flat back; none: the front surface only",
    )  # fmt: skip
    symmetric_fill: bool = Field(
        True, description="texels the view hides take the colour of their mirror texel where it is seen"
    )
    resolution: int = Field(128, ge=16, le=1024, description="side of the silhouette the report's IoU uses")
    cpu_threads: int = Field(
        1, ge=1, le=256, description="torch CPU threads on a CPU (1 is fastest on a busy machine)"
    )


def _rounded(values: Tensor, digits: int = 4) -> list[float]:
    return [round(float(value), digits) for value in values.flatten()]


class Unsup3dMethod(CheckpointedMethod[Unsup3dOptions, Unsup3dNet]):
    """The ``unsup3d`` method (module docstring); one instance per device and checkpoint."""

    name = "unsup3d"
    Options = Unsup3dOptions
    template = TEMPLATE_ID
    train_command = "mono2mesh-train unsup3d"
    automatic_mask = False  # tightly framed photos, as the network learnt from: GrabCut finds an eye there

    def __init__(self, device: torch.device | str = "cpu", checkpoint: str | None = None) -> None:
        super().__init__(device, checkpoint)
        self.network.requires_grad_(False)

    def build_network(self, settings: dict[str, Any]) -> Unsup3dNet:
        return build_unsup3d(settings)

    @property
    def image_size(self) -> int:
        """n, the side of the network's square input."""
        return self.network.config.image_size

    def check_crop(self, image: np.ndarray) -> None:
        """``MethodError`` when the crop is smaller than the network's input."""
        size = self.image_size
        if image.shape[0] < size:
            side = image.shape[0]
            raise MethodError(
                f"the crop is {side} x {side} pixels, smaller than the unsup3d network's {size} x {size} "
                f"input: set crop_size to at least {size}"
            )

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> Unsup3dOutput:
        """The network's predictions for a crop (S, S, 3) in [0, 1], area-resized to n x n."""
        size = self.image_size
        small = cv2.resize(image.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        images = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1)[None].to(self.device)
        return self.network(images.clamp(0, 1))

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction:
        opts = self.options_of(options)
        self.refuse_refinement(init_mesh, "reads the depth from the photo")
        self.check_inputs(image, mask)
        self.check_crop(image)
        config = self.network.config
        watch = Stopwatch()
        with self.threads(opts.cpu_threads), torch.no_grad():
            progress(0.0, "shape")
            with watch.stage("network"):
                output = self.predict(image)
            progress(NETWORK_SHARE, "shape")
            projection = ViewProjection(output.view, self.image_size, config.fov, config.pivot_depth)
            crop_mask = torch.from_numpy(mask.astype(np.float32))[None, None].to(self.device)
            with watch.stage("mesh"):
                relief, mesh, ndc = self.relief(output, projection, crop_mask, opts)
                front = relief.source[: relief.front_vertices]
                camera, residual = fit_weak_camera(
                    relief.vertices[: relief.front_vertices].float(), ndc[front], projection.rotation()
                )
            progress(1.0, "shape")
            progress(0.0, "texture")
            with watch.stage("texture"):
                texture, texels = self.texture(image, output, projection, opts)
                mesh = mesh.with_texture(texture).to("cpu")
            progress(1.0, "texture")
            iou = 0.0
            if opts.mask_cut:
                iou = reprojection_iou(mesh.vertices, mesh.faces, camera.to("cpu"), mask, opts.resolution)
        pixels = mask.shape[0] / 2  # crop pixels per NDC unit
        extra = {
            "network": {"image_size": self.image_size, "fov": config.fov},
            "depth": {
                "min": round(float(output.canon_depth.min()), 5),
                "max": round(float(output.canon_depth.max()), 5),
            },
            "light": {
                "ambient": round(float(output.ambient[0]), 4),
                "diffuse": round(float(output.diffuse[0]), 4),
                "direction": _rounded(output.light_direction[0]),
            },
            "view": {
                "rotation_degrees": _rounded(output.view[0, :3], 3),
                "translation": _rounded(output.view[0, 3:], 5),
            },
            "confidence": {
                "sigma_mean": round(float(output.conf_photometric[0, 0].mean()), 5),
                "flip_sigma_mean": round(float(output.conf_photometric[0, 1].mean()), 5),
            },
            "camera_fit": {
                "scale": round(float(camera.weak.scale[0]), 5),
                "mean_error_px": round(float(residual.mean()) * pixels, 4),
                "max_error_px": round(float(residual.max()) * pixels, 4),
            },
            "mesh": {
                "close": opts.close,
                "mask_cut": opts.mask_cut,
                "front_faces": relief.front_faces,
                "rim_faces": relief.rim_faces,
                "front_vertices": relief.front_vertices,
            },
            "texture": opts.texture,
            "texture_size": opts.texture_size,
            **texels,
        }
        result = self.result(
            opts, mesh, camera, mask,
            timings=watch.timings, silhouette_iou=iou, template=f"depthgrid-{self.image_size}", extra=extra,
        )  # fmt: skip
        if not opts.mask_cut:  # the grid fills the crop: its outline says nothing about the mask
            result.report.silhouette_iou = None
        return result

    def relief(
        self, output: Unsup3dOutput, projection: ViewProjection, mask: Tensor, opts: Unsup3dOptions
    ) -> tuple[Relief, TexturedMesh, Tensor]:
        """The relief of the canonical depth (untextured: a 1 x 1 placeholder), and the crop NDC (N, 2)
        where the view projects each grid vertex (module docstring, phase 2)."""
        config, size = self.network.config, self.image_size
        depth = output.canon_depth[0]  # (n, n)
        faces = depth_grid_faces(size, size, self.device)  # (F, 3)
        pixels = grid_pixel_positions(size, size, self.device, depth.dtype)  # (N, 2)
        ndc, _ = projection.crop_ndc(pixels, grid_vertex_depths(depth[None])[0])  # (N, 2)
        keep = torch.ones(faces.shape[0], dtype=torch.bool, device=self.device)
        if opts.mask_cut:
            centres = ndc[faces].mean(dim=1)  # (F, 2)
            grid = torch.stack([centres[:, 0], -centres[:, 1]], dim=-1)[None, None]  # (1, 1, F, 2), y down
            inside = F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            keep = inside.flatten() >= 0.5
            if not bool(keep.any()):
                raise MethodError(
                    "no face of the depth grid falls inside the mask; check the mask, or keep the whole "
                    "grid with mask_cut=false"
                )
        frame = ParallelFrame(size, size, config.fov, config.pivot_depth)
        placeholder = torch.zeros(1, 1, 3, device=self.device)
        gap = BACK_GAP * (config.depth_max - config.depth_min)
        try:
            mesh, relief = relief_mesh(depth, keep, placeholder, frame, opts.close, gap)
        except ValueError as error:  # the pinch removal left nothing
            raise MethodError(f"the mask leaves no usable surface: {error}") from error
        return relief, mesh, ndc

    def texture(
        self, image: np.ndarray, output: Unsup3dOutput, projection: ViewProjection, opts: Unsup3dOptions
    ) -> tuple[Tensor, dict[str, float]]:
        """The texture (T, T, 3) (module docstring, phase 3) and its report entries."""
        config, size = self.network.config, opts.texture_size
        if opts.texture == "albedo":
            return albedo_texture(output.canon_albedo, size), {}
        crop = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        depth = output.canon_depth[0]
        photo = photo_texture(
            crop.to(self.device), projection, depth, size, symmetric_fill=opts.symmetric_fill,
            tolerance=HIDDEN_TOLERANCE * (config.depth_max - config.depth_min),
        )  # fmt: skip
        texels = {
            "hidden_texels": round(float(photo.hidden.float().mean()), 4),
            "filled_texels": round(float(photo.filled.float().mean()), 4),
        }
        if opts.texture == "photo":
            return photo.colours, texels
        shading = shade(
            output.canon_albedo, output.canon_depth, output.ambient, output.diffuse, output.light_direction,
            config.fov,
        ).shading  # fmt: skip
        return delit(photo.colours, shading), texels


SPEC = Unsup3dMethod.spec(
    "Unsup3d: a network trained on raw photos reads canonical depth, albedo, light and view; a relief of "
    "the depth grid, closed by a mirrored back, textured from the photo (needs a trained checkpoint)"
)
