"""The embedded default method ``fit``: a symmetric template fitted to the mask by test-time optimisation.

No checkpoint, no download; seconds on a laptop CPU. Given the square crop and its object mask:

1. **Shape** (stage "shape"). Start from the 642-vertex symmetric icosphere (``icosphere_template``) and
   optimise per-vertex offsets of its free (plane and right) vertices, mirrored onto the left ones, so the
   mesh stays bilaterally symmetric, together with a weak-perspective camera (log scale, NDC
   translation, a free quaternion normalised in use; CMR/UMR's camera). Loss per camera hypothesis:

   - ``1 - soft IoU`` between the SoftRas silhouette at ``resolution`` and the mask (seeds' eq. 1);
   - MeshInversion's Chamfer mask loss: the symmetric 2-D Chamfer distance between the projected
     vertices and the mask's pixel centres, so vertices far outside the mask still get a gradient;
   - the uniform Laplacian (mean over vertices of ``|L v|^2``), SoftRas's flatten loss and CMR's
     deformation loss (mean offset norm) as regularisers.

   A side view and its mirror explain a silhouette equally well, so ``hypotheses`` cameras with
   evenly spaced azimuths (UMR keeps several camera heads for the same reason) are optimised in one
   batch for the first ``selection_fraction`` of the iterations; the one with the lowest loss is kept
   for the rest.
2. **Texture** (stage "texture"). Each texel takes the photo colour where its surface point projects,
   when that point is visible and faces the camera (``backend.meshing.texturing.project_photo``); the
   hidden side is filled from the mirrored visible side, and what is still empty is inpainted.

**Refinement** (``init_mesh`` given, e.g. an artist's edit): topology and UVs kept; the photo moves the
shape only where it contradicts it. A silhouette observes the outline and nothing else, so:

1. The camera is fitted first with the mesh frozen (the first half of the iterations, hypotheses as
   above), so the edit is not explained away by offsets that undo it while the camera wanders; the
   camera then stays fixed.
2. The offsets from the given mesh are fitted with per-vertex ``keep`` weights (``refine_terms.
   outline_freedom``): ``outline_keep_weight`` (weak) for vertices the photo constrains (rim vertices
   on the outline of the mesh's silhouette in that view, and vertices projecting outside the mask),
   fading to ``keep_shape_weight`` (strong) over two edge rings; ``depth_weight * mean (o . d)^2``
   holds every offset off the view direction d, which no silhouette observes (and which Adam's
   per-axis steps would otherwise leak into). The Laplacian is taken on the offsets, not the shape, so
   the edit is not smoothed away; SoftRas's flatten loss (on the absolute shape) is left out for the
   same reason. Alternatives rejected: only a depth penalty would let the Chamfer mask-to-vertex term
   slide interior vertices in the image plane (the "bump on the head"); only outline weights would
   leave depth free to drift under Adam.
3. ``keep_symmetry``: "auto" ties the offsets mirror-symmetric (``(o_i + M o_j) / 2`` over mirror
   partners i, j, M flipping x) when the given vertex set is x -> -x symmetric about x = mean x within
   1e-3 of its size (``refine_terms.mirror_pairs``; it is then snapped exactly symmetric, so the result
   is too); "on" ties mutually nearest mirror vertices of any mesh; "off" for a deliberately asymmetric
   edit. An asymmetric mesh is never tied under "auto".
4. Texture (``keep_texture``, set by ``reconstruct``): texels whose surface point moved less than
   ``texture_keep_distance`` of the size keep the given texture (re-projecting them through the new
   camera would slide the texture, e.g. onto an eye); the photo is projected only onto visible texels
   that moved; unseen ones keep the given texture.

Known limit: an outline edit the photo contradicts is pulled back only partly, because the camera fit
of step 1 shrinks the camera to explain part of it (a spike of 40 % of the size keeps about 70 %).

**Other methods' meshes** (``FitMethod.fit_mesh``): a learned method (e.g. ``softras``) predicts a
shape but not the camera that explains the photo; ``fit_mesh`` finds that camera with the mesh frozen
(``shape="pose"``: the hypotheses, losses and schedule above, on the camera only) or lets the shape
move as in refinement (``shape="refine"``), then textures the mesh from the photo (mirror fill for
symmetric template layouts, or the mesh's own texture for unseen texels).

The world frame of the result is the template's: Y up, the object's symmetry plane x = 0.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import cv2
import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.geometry.camera import Camera, axis_angle_to_quaternion, quaternion_multiply
from backend.geometry.mesh import TexturedMesh
from backend.geometry.metrics import mask_iou
from backend.geometry.ops import (
    deformation_loss,
    edge_adjacent_faces,
    flatten_loss,
    laplacian_loss,
    uniform_laplacian,
)
from backend.geometry.templates import SymmetricTemplate, icosphere_template, symmetrize_vertices
from backend.meshing.texturing import fill_mirrored, inpaint, project_photo
from backend.methods.base import MethodOptions, ProgressCallback, Reconstruction, Report, cpu_threads
from backend.methods.refine_terms import (
    mirror_pairs,
    moved_texels,
    nearest_mirror_pairs,
    outline_freedom,
    symmetrize_offsets_by_pairs,
    symmetrize_positions,
)
from backend.render.renderer import render
from backend.render.settings import RasterSettings

Field = pydantic.Field

MASK_POINTS = 400
"""Mask pixels sampled for the mask-to-vertex direction of the Chamfer mask loss."""


class FitOptions(MethodOptions):
    """Options of the ``fit`` method (defaults: about ten seconds per photo on a 2-core CPU)."""

    iterations: int = Field(200, ge=0, le=20000, description="optimisation steps for shape and camera")
    resolution: int = Field(
        128, ge=16, le=1024, description="side in pixels of the silhouettes compared with the mask"
    )
    hypotheses: int = Field(
        4, ge=1, le=12, description="camera azimuth hypotheses, evenly spaced, optimised together at first"
    )
    selection_fraction: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="share of the iterations all hypotheses run (at half resolution) before the best is kept",
    )
    learning_rate: float = Field(0.01, gt=0.0, le=1.0, description="Adam step size")
    sigma: float = Field(1e-4, gt=0.0, le=1.0, description="SoftRas silhouette sharpness")
    silhouette_weight: float = Field(1.0, ge=0.0, description="weight of 1 - soft IoU")
    chamfer_weight: float = Field(1.0, ge=0.0, description="weight of the 2-D Chamfer mask loss")
    laplacian_weight: float = Field(20.0, ge=0.0, description="weight of the mean squared uniform Laplacian")
    flatten_weight: float = Field(5e-4, ge=0.0, description="weight of SoftRas's flatten loss")
    deformation_weight: float = Field(0.05, ge=0.0, description="weight of the mean offset norm")
    keep_shape_weight: float = Field(
        10.0,
        ge=0.0,
        description="refinement only: weight of the mean squared offset from the given mesh of the vertices "
        "the photo's outline does not constrain",
    )
    outline_keep_weight: float = Field(
        0.1,
        ge=0.0,
        description="refinement only: that weight for vertices on the photo's outline (or outside the mask)",
    )
    depth_weight: float = Field(
        100.0,
        ge=0.0,
        description="refinement only: weight of the mean squared offset along the view direction "
        "(a silhouette does not see depth)",
    )
    keep_symmetry: Literal["auto", "on", "off"] = Field(
        "auto",
        description="refinement only: tie the offsets mirror-symmetric (x -> -x): auto when the given mesh "
        "is symmetric, on (mutually nearest mirror vertices), off (for a deliberately asymmetric edit)",
    )
    texture_keep_distance: float = Field(
        0.01,
        ge=0.0,
        description="refinement only: texels whose surface moved less than this share of the mesh's size "
        "keep the given texture",
    )
    texture_size: int = Field(512, ge=16, le=4096, description="texture height; its width is twice that")
    crop_size: int = Field(
        512, ge=32, le=2048, description="side of the photo crop the texture is taken from"
    )
    seed: int = Field(0, description="seed of the random choices (mask points for the Chamfer loss)")
    cpu_threads: int = Field(
        1, ge=1, le=256, description="torch CPU threads while fitting on a CPU (small tensors: 1 is fastest)"
    )


ShapeMode = Literal["template", "refine", "pose"]
"""How ``FitMethod.fit_mesh`` treats the shape (see its docstring)."""


@dataclass
class ShapeFit:
    """The outcome of the shape stage: one mesh's vertices (V, 3), its camera, losses and choices."""

    vertices: Tensor
    camera: Camera
    hypothesis: int
    hypothesis_losses: list[float]
    final_loss: float


UV_ID_GRID = 2.0**16
"""UV coordinates are rounded to 1 / ``UV_ID_GRID`` (about 1.5e-5) before ``topology_id`` hashes them."""


def _uv_layout_key(mesh: TexturedMesh) -> bytes:
    """The mesh's UV faces in a canonical form: (F, 6) int64 rows, as bytes.

    Each face is its three UV corners, rounded to 1 / ``UV_ID_GRID`` and rotated (winding kept) to
    the lexicographically smallest of its three rotations; the rows are sorted. That is the faces'
    connectivity as the UV map sees it (faces sharing a UV corner share its coordinates) and the UV
    layout, but none of the vertex numbering, the face order or how seams split vertices. Before
    rounding, ``v -> 1 - (1 - v)`` in float32 (exact for v >= 0.5 and idempotent) removes the last-bit
    noise of the glTF V flip (``1 - v``) done by the backend's writer, Blender and back, so a result
    that went through Blender hashes exactly as before.
    """
    one = np.float32(1.0)
    uvs = mesh.uvs.detach().cpu().numpy().astype(np.float32)
    uvs = one - (one - uvs)
    quantised = np.rint(uvs.astype(np.float64) * UV_ID_GRID).astype(np.int64)  # (T, 2)
    corners = quantised[mesh.face_uvs.detach().cpu().numpy()]  # (F, 3, 2)
    rotations = np.stack([np.roll(corners, -shift, axis=1).reshape(-1, 6) for shift in range(3)], 1)
    candidate = np.ones(rotations.shape[:2], dtype=bool)  # (F, 3): rotations still tied for smallest
    for column in range(6):
        values = np.where(candidate, rotations[:, :, column], np.iinfo(np.int64).max)
        candidate &= values == values.min(axis=1, keepdims=True)
    canonical = rotations[np.arange(len(rotations)), candidate.argmax(axis=1)]  # (F, 6)
    canonical = canonical[np.lexsort(canonical.T[::-1])]
    return np.ascontiguousarray(canonical).tobytes()


def _layout_hash(mesh: TexturedMesh) -> str:
    return hashlib.sha1(_uv_layout_key(mesh)).hexdigest()[:12]


_KNOWN_TEMPLATES: dict[str, str] = {}  # layout hash -> the template's fixed id, filled on first use


def _known_template_id(digest: str) -> str | None:
    """The fixed id (e.g. "icosphere-642") of the shared template with this layout hash, if any."""
    if not _KNOWN_TEMPLATES:
        from backend.geometry.templates import uv_sphere_template

        for template in (icosphere_template(level) for level in (2, 3, 4)):
            _KNOWN_TEMPLATES[_layout_hash(template.mesh)] = f"icosphere-{template.mesh.num_vertices}"
        sphere = uv_sphere_template().mesh
        _KNOWN_TEMPLATES[_layout_hash(sphere)] = f"uvsphere-{sphere.num_vertices}"
    return _KNOWN_TEMPLATES.get(digest)


def topology_id(mesh: TexturedMesh) -> str:
    """A short id of a mesh's UV layout: meshes with the same id share their texture layout.

    The id depends on the faces as UV triangles only (``_uv_layout_key``): renumbered vertices,
    shuffled faces, vertices split (or welded) along UV seams and moved vertices keep it; a changed UV
    layout changes it. A layout equal to a shared template's has that template's fixed id
    ("icosphere-642", "icosphere-162", "icosphere-2562", "uvsphere-482"), so a refined template
    result keeps the id of the template's other results; any other layout gets ``"<F>f-<12 hex>"``.
    """
    digest = _layout_hash(mesh)
    return _known_template_id(digest) or f"{mesh.num_faces}f-{digest}"


@torch.no_grad()
def reprojection_iou(
    vertices: Tensor, faces: Tensor, camera: Camera, mask: np.ndarray, resolution: int
) -> float:
    """Hard silhouette IoU of a mesh (V, 3), (F, 3) seen by a batch-of-one ``camera`` against the crop mask
    (S, S), both at ``resolution`` pixels (the mask area-resized, then thresholded at 0.5): the report's
    ``silhouette_iou``."""
    hard = render(vertices, faces, camera.to(vertices.device), RasterSettings(resolution, soft=False)).alpha[
        0, ..., 0
    ]
    target = cv2.resize(mask.astype(np.float32), (resolution,) * 2, interpolation=cv2.INTER_AREA) > 0.5
    return float(mask_iou(hard, torch.from_numpy(target).to(hard), soft=False))


def initial_rotations(
    count: int, elevation_degrees: float = 0.0, device: torch.device | str = "cpu"
) -> Tensor:
    """(count, 4) quaternions on ``device``: azimuths 360/count apart starting at half a step, then
    ``elevation``.

    With 4 hypotheses the azimuths are 45, 135, 225 and 315 degrees: every view is within 45 degrees
    of one of them.
    """
    azimuths = torch.tensor([(k + 0.5) * 2 * math.pi / count for k in range(count)], device=device)
    y_axis = torch.tensor([[0.0, 1.0, 0.0]], device=device)
    about_y = axis_angle_to_quaternion(y_axis.expand(count, 3), azimuths)
    tilt = torch.full((count,), math.radians(elevation_degrees), device=device)
    x_axis = torch.tensor([[1.0, 0.0, 0.0]], device=device)
    about_x = axis_angle_to_quaternion(x_axis.expand(count, 3), tilt)
    return quaternion_multiply(about_x, about_y)


def mask_points(mask: Tensor, limit: int, generator: torch.Generator) -> Tensor:
    """NDC centres (M, 2) of at most ``limit`` randomly chosen pixels of an (R, R) bool mask."""
    size = mask.shape[0]
    rows, columns = torch.nonzero(mask, as_tuple=True)
    if rows.numel() > limit:
        # drawn on the CPU, where ``generator`` lives, then moved to the mask's device
        keep = torch.randperm(rows.numel(), generator=generator, device="cpu")[:limit].to(rows.device)
        rows, columns = rows[keep], columns[keep]
    x = (2 * columns.float() + 1) / size - 1
    y = 1 - (2 * rows.float() + 1) / size
    return torch.stack([x, y], dim=-1)


def outside_distance(mask: np.ndarray) -> Tensor:
    """(R, R) NDC distance from each pixel centre to the nearest mask pixel centre (0 on the mask)."""
    size = mask.shape[0]
    pixels = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return torch.from_numpy(pixels * (2.0 / size)).float()


def chamfer_mask_loss(projected: Tensor, distance: Tensor, points: Tensor) -> Tensor:
    """MeshInversion's 2-D Chamfer mask loss per batch item, both directions as mean squared distances.

    Vertex to mask: the distance field ``distance`` (from ``outside_distance``) sampled bilinearly at each
    projected vertex, which equals the distance to the nearest mask pixel (zero inside) and costs O(V).
    Mask to vertex: each of the M sampled mask pixel centres to its nearest projected vertex.

    Args:
        projected: (B, V, 2) projected vertices in NDC.
        distance: (R, R) outside-distance field of the mask, row 0 at the top.
        points: (M, 2) mask pixel centres in NDC.

    Returns:
        (B,) ``mean_v d(p_v, mask)^2 + mean_m min_v |p_v - q_m|^2``.
    """
    grid = torch.stack([projected[..., 0], -projected[..., 1]], dim=-1)[:, None]  # (B, 1, V, 2), y down
    field = distance[None, None].expand(projected.shape[0], 1, -1, -1)
    to_mask = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Outside the image the border value underestimates the distance: add the overshoot past |1|.
    overshoot = (projected.abs() - 1).clamp_min(0).norm(dim=-1)  # (B, V)
    vertex_term = (to_mask[:, 0, 0] + overshoot).pow(2).mean(dim=1)
    squared = (points[None, :, None, :] - projected[:, None, :, :]).pow(2).sum(-1)  # (B, M, V)
    return vertex_term + squared.min(dim=2).values.mean(dim=1)


@dataclass(frozen=True)
class _Target:
    """The mask at one fitting resolution R: soft mask (R, R), outside distance (R, R), points (M, 2)."""

    mask: Tensor
    distance: Tensor
    points: Tensor

    @staticmethod
    def build(mask: np.ndarray, size: int, generator: torch.Generator, device: torch.device) -> _Target:
        soft = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        binary = torch.from_numpy(soft > 0.5)
        return _Target(
            mask=torch.from_numpy(soft).to(device),
            distance=outside_distance(soft > 0.5).to(device),
            points=mask_points(binary, MASK_POINTS, generator).to(device),
        )


class FitMethod:
    """The ``fit`` method (module docstring); one instance per device."""

    name: ClassVar[str] = "fit"
    description: ClassVar[str] = (
        "Fit a symmetric sphere to the object's mask by optimisation and texture it from the photo "
        "(no checkpoint; a few seconds on a CPU)"
    )
    needs_checkpoint: ClassVar[bool] = False
    Options: ClassVar[type[MethodOptions]] = FitOptions

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.template: SymmetricTemplate = icosphere_template().to(self.device)
        self.template_id = "icosphere-642"

    def crop_size(self, options: MethodOptions) -> int:
        return _fit_options(options).crop_size

    def reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        options: MethodOptions,
        progress: ProgressCallback,
        *,
        init_mesh: TexturedMesh | None = None,
    ) -> Reconstruction:
        opts = _fit_options(options)
        if init_mesh is None:
            return self.fit_mesh(None, image, mask, opts, progress, shape="template")
        return self.fit_mesh(
            init_mesh, image, mask, opts, progress, shape="refine", mirror_texture=False, keep_texture=True
        )

    def fit_mesh(
        self,
        mesh: TexturedMesh | None,
        image: np.ndarray,
        mask: np.ndarray,
        opts: FitOptions,
        progress: ProgressCallback,
        *,
        shape: ShapeMode,
        mirror_texture: bool = True,
        template_id: str | None = None,
        initial_camera: Camera | None = None,
        keep_texture: bool = False,
    ) -> Reconstruction:
        """Fit ``mesh`` (or, with ``shape="template"``, the icosphere) and a camera to the mask; texture it.

        ``shape``: "template" (the default method), "refine" (free offsets held near ``mesh``) or
        "pose" (``mesh`` frozen, only the camera moves). ``mirror_texture``: fill the unseen half by
        mirroring (the mesh has a symmetric template layout) instead of keeping ``mesh``'s texture.
        ``template_id``: the report's topology id (default: the icosphere's, or ``mesh``'s own).
        ``initial_camera``: a batch-of-one camera (e.g. a network's prediction) to start from instead of
        the azimuth hypotheses around the mask's centroid (``opts.hypotheses`` is then ignored).
        ``keep_texture`` (an artist's refinement, ``mesh``'s texture is meaningful): texels whose surface
        moved less than ``opts.texture_keep_distance`` keep ``mesh``'s colour; only the rest take the photo.
        """
        with cpu_threads(opts.cpu_threads if self.device.type == "cpu" else None):
            return self._reconstruct(
                image, mask, opts, progress, mesh, shape, mirror_texture, template_id, initial_camera,
                keep_texture,
            )  # fmt: skip

    def _reconstruct(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        opts: FitOptions,
        progress: ProgressCallback,
        init_mesh: TexturedMesh | None,
        shape: ShapeMode,
        mirror_texture: bool,
        template_id: str | None,
        initial_camera: Camera | None = None,
        keep_texture: bool = False,
    ) -> Reconstruction:
        size = image.shape[0]
        if image.shape != (size, size, 3) or mask.shape != (size, size):
            raise ValueError(
                f"image must be (S, S, 3) with an (S, S) mask, got {image.shape} and {mask.shape}"
            )
        if not mask.any():
            raise ValueError("the mask is empty")
        if (init_mesh is None) != (shape == "template"):
            raise ValueError(f"shape={shape!r} {'needs' if init_mesh is None else 'takes no'} mesh")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if init_mesh is None:
            fitted = self._fit_template(mask, opts, progress)
            base = self.template.mesh
            template_id = template_id or self.template_id
        else:
            fitted = self._fit_refinement(
                init_mesh.to(self.device), mask, opts, progress, shape == "refine", initial_camera
            )
            base = init_mesh
            template_id = template_id or topology_id(init_mesh)
        timings["shape"] = time.perf_counter() - started

        started = time.perf_counter()
        progress(0.0, "texture")
        texture = self._texture(fitted, base, image, mask, opts, mirror_texture, keep_texture)
        mesh = TexturedMesh(
            vertices=fitted.vertices.detach().cpu(),
            faces=base.faces.cpu(),
            uvs=base.uvs.cpu(),
            face_uvs=base.face_uvs.cpu(),
            texture=texture,
        )
        progress(1.0, "texture")
        timings["texture"] = time.perf_counter() - started

        iou = reprojection_iou(
            fitted.vertices, base.faces.to(self.device), fitted.camera, mask, opts.resolution
        )
        report = Report(
            method=self.name,
            options=opts.model_dump(),
            device=str(self.device),
            timings=timings,
            silhouette_iou=round(iou, 4),
            num_vertices=mesh.num_vertices,
            num_faces=mesh.num_faces,
            template=template_id,
            extra={
                "hypothesis": fitted.hypothesis,
                "hypothesis_losses": [round(v, 5) for v in fitted.hypothesis_losses],
                "final_loss": round(fitted.final_loss, 5),
                "refined": shape == "refine",
                "shape": shape,
            },
        )
        return Reconstruction(mesh=mesh, camera=fitted.camera.to("cpu"), mask=mask.copy(), report=report)

    # -- shape -------------------------------------------------------------------------------------

    def _initial_camera(self, target: Tensor, count: int, radius: float) -> tuple[Tensor, Tensor, Tensor]:
        """log scale (B,), translation (B, 2) at the mask's centroid, rotations (B, 4).

        The scale starts at 0.6 / ``radius`` (the mesh's largest vertex norm): the unit template
        starts at 0.6, a predicted or given mesh of another size projects to the same extent.
        """
        size = target.shape[0]
        coords = (2 * torch.arange(size, device=self.device, dtype=torch.float32) + 1) / size - 1
        total = target.sum().clamp_min(1e-6)
        centre_x = (target.sum(0) * coords).sum() / total
        centre_y = -(target.sum(1) * coords).sum() / total
        log_scale = torch.full((count,), math.log(0.6 / max(radius, 1e-6)), device=self.device)
        translation = torch.stack([centre_x, centre_y]).expand(count, 2).clone()
        return log_scale, translation, initial_rotations(count, device=self.device)

    def _fit_template(self, mask: np.ndarray, opts: FitOptions, progress: ProgressCallback) -> ShapeFit:
        template = self.template
        base_free = template.mesh.vertices[template.free_index]  # (P + K, 3)
        count = opts.hypotheses
        offsets = torch.zeros(count, template.num_free, 3, device=self.device)

        def vertices_of(offsets: Tensor) -> Tensor:  # (B, P + K, 3) -> (B, V, 3)
            return symmetrize_vertices(base_free + offsets, template)

        def regularisers(vertices: Tensor, offsets: Tensor) -> Tensor:
            return opts.laplacian_weight * laplacian_loss(
                vertices, faces, laplacian=laplacian
            ) + opts.deformation_weight * deformation_loss(offsets)

        faces = template.mesh.faces
        laplacian = uniform_laplacian(faces, template.mesh.num_vertices, device=self.device)
        return self._optimise(mask, faces, offsets, vertices_of, regularisers, opts, progress)

    def _fit_refinement(
        self,
        mesh: TexturedMesh,
        mask: np.ndarray,
        opts: FitOptions,
        progress: ProgressCallback,
        train_shape: bool = True,
        initial_camera: Camera | None = None,
    ) -> ShapeFit:
        """Camera with the shape frozen, then (``train_shape``) the shape with the camera frozen (module
        docstring, "Refinement")."""
        base = mesh.vertices.float()  # (V, 3)
        faces = mesh.faces
        count = 1 if initial_camera is not None else opts.hypotheses
        pose_share = 0.5 if train_shape else 1.0
        pose_iterations = round(pose_share * opts.iterations)
        pairs: Tensor | None = None
        if train_shape and opts.keep_symmetry != "off":
            pairs = mirror_pairs(base)
            if pairs is not None:  # symmetric within float noise: make it exact, the output stays so
                base = symmetrize_positions(base, pairs.to(self.device))
            elif opts.keep_symmetry == "on":
                pairs = nearest_mirror_pairs(base)
        if pairs is not None:
            pairs = pairs.to(self.device)

        posed = self._optimise(
            mask, faces, torch.zeros(count, mesh.num_vertices, 3, device=self.device),
            lambda offsets: base + offsets, lambda vertices, offsets: offsets.new_zeros(offsets.shape[0]),
            opts.model_copy(update={"iterations": pose_iterations}),
            lambda fraction, stage: progress(pose_share * fraction, stage),
            train_shape=False, initial_camera=initial_camera,
        )  # fmt: skip
        if not train_shape:
            return posed

        target = cv2.resize(mask.astype(np.float32), (opts.resolution,) * 2, interpolation=cv2.INTER_AREA)
        freedom = outline_freedom(base, faces, posed.camera, target > 0.5, opts.resolution)  # (V,)
        if pairs is not None:  # a vertex moves with its mirror partner: free when either one is
            partner = torch.where(pairs >= 0, pairs, torch.arange(pairs.shape[0], device=self.device))
            freedom = torch.maximum(freedom, freedom[partner])
        keep = opts.keep_shape_weight * (1 - freedom) + opts.outline_keep_weight * freedom  # (V,)
        view_axis = posed.camera.to(self.device).view_transform()[0][0, 2]  # (3,) depth direction
        laplacian = uniform_laplacian(faces, mesh.num_vertices, device=self.device)

        def vertices_of(offsets: Tensor) -> Tensor:
            if pairs is not None:
                offsets = symmetrize_offsets_by_pairs(offsets, pairs)
            return base + offsets

        def regularisers(vertices: Tensor, offsets: Tensor) -> Tensor:
            offsets = vertices - base  # (B, V, 3) as applied (symmetrised)
            return (
                opts.laplacian_weight * laplacian_loss(offsets, faces, laplacian=laplacian)
                + (keep * offsets.pow(2).sum(-1)).mean(-1)
                + opts.depth_weight * (offsets @ view_axis).pow(2).mean(-1)
            )

        shaped = self._optimise(
            mask, faces, torch.zeros(1, mesh.num_vertices, 3, device=self.device), vertices_of, regularisers,
            opts.model_copy(update={"iterations": opts.iterations - pose_iterations}),
            lambda fraction, stage: progress(pose_share + (1 - pose_share) * fraction, stage),
            initial_camera=posed.camera, train_camera=False, flatten=False,
        )  # fmt: skip
        return ShapeFit(
            vertices=shaped.vertices,
            camera=shaped.camera,
            hypothesis=posed.hypothesis,
            hypothesis_losses=posed.hypothesis_losses,
            final_loss=shaped.final_loss,
        )

    def _optimise(
        self,
        mask: np.ndarray,
        faces: Tensor,
        offsets: Tensor,
        vertices_of: Callable[[Tensor], Tensor],
        regularisers: Callable[[Tensor, Tensor], Tensor],
        opts: FitOptions,
        progress: ProgressCallback,
        train_shape: bool = True,
        initial_camera: Camera | None = None,
        *,
        train_camera: bool = True,
        flatten: bool = True,
    ) -> ShapeFit:
        """Adam on offsets (B, ...) (unless not ``train_shape``: they stay zero) and B cameras (unless not
        ``train_camera``); ``flatten``: whether SoftRas's flatten loss (on the absolute shape) applies.

        All hypotheses run the first ``selection_fraction`` of the iterations at half the resolution;
        the one with the lowest loss then continues alone at the full resolution.
        """
        generator = torch.Generator().manual_seed(opts.seed)
        count = offsets.shape[0]
        select_at = round(opts.selection_fraction * opts.iterations) if count > 1 else 0
        full = _Target.build(mask, opts.resolution, generator, self.device)
        coarse = _Target.build(mask, max(opts.resolution // 2, 16), generator, self.device)
        radius = float(vertices_of(offsets[:1]).detach().norm(dim=-1).max())
        if initial_camera is None:
            log_scale, translation, rotation = self._initial_camera(full.mask, count, radius)
        else:
            start = initial_camera.to(self.device)
            log_scale = start.weak.scale.float().log().clone()
            translation = start.weak.translation.float().clone()
            rotation = start.weak.rotation.float().clone()
        params = [offsets, log_scale, translation, rotation]
        adjacency = edge_adjacent_faces(faces)
        hypothesis_losses: list[float] = []
        chosen = 0

        def camera() -> Camera:
            return Camera.weak_perspective(log_scale.exp(), translation, rotation)

        def loss_terms(target: _Target) -> Tensor:
            vertices = vertices_of(offsets)  # (B, V, 3)
            cameras = camera()
            settings = RasterSettings(image_size=target.mask.shape[0], sigma=opts.sigma)
            alpha = render(vertices, faces, cameras, settings).alpha[..., 0]  # (B, R, R)
            silhouette = 1 - mask_iou(alpha, target.mask.expand_as(alpha), soft=True)  # (B,)
            projected = cameras.project(vertices)[..., :2]  # (B, V, 2)
            chamfer = chamfer_mask_loss(projected, target.distance, target.points)
            data = opts.silhouette_weight * silhouette + opts.chamfer_weight * chamfer
            flat = opts.flatten_weight * flatten_loss(vertices, faces, adjacency) if flatten else 0.0
            return data + flat + regularisers(vertices, offsets)  # (B,)

        def choose(losses: Tensor) -> list[Tensor]:
            nonlocal chosen, hypothesis_losses
            hypothesis_losses = losses.tolist()
            chosen = int(torch.argmin(losses))
            return [
                p.detach()[chosen : chosen + 1].clone() for p in (offsets, log_scale, translation, rotation)
            ]

        progress(0.0, "shape")
        losses = torch.zeros(count, device="cpu")  # per-hypothesis losses, kept on the CPU (see below)
        optimiser = None
        for step in range(opts.iterations):
            if step == select_at and count > 1 and step > 0:
                offsets, log_scale, translation, rotation = choose(losses)
                optimiser = None
            if optimiser is None:
                params = ([log_scale, translation, rotation] if train_camera else []) + (
                    [offsets] if train_shape else []
                )
                for param in params:
                    param.requires_grad_(True)
                optimiser = torch.optim.Adam(params, lr=opts.learning_rate, betas=(0.5, 0.99))
            optimiser.zero_grad(set_to_none=True)
            per_item = loss_terms(coarse if step < select_at else full)
            per_item.sum().backward()
            optimiser.step()
            losses = per_item.detach().cpu()
            progress((step + 1) / max(opts.iterations, 1), "shape")
        with torch.no_grad():
            if offsets.shape[0] > 1:  # no selection phase ran: choose by the full-resolution loss
                offsets, log_scale, translation, rotation = choose(loss_terms(full).cpu())
            final = float(loss_terms(full)[0])
            vertices = vertices_of(offsets)[0].detach()
            fitted = camera()
        return ShapeFit(
            vertices=vertices,
            camera=Camera.weak_perspective(
                fitted.weak.scale.detach(),
                fitted.weak.translation.detach(),
                F.normalize(fitted.weak.rotation.detach(), dim=-1),
            ),
            hypothesis=chosen,
            hypothesis_losses=hypothesis_losses,
            final_loss=final,
        )

    # -- texture -----------------------------------------------------------------------------------

    def _texture(
        self,
        fitted: ShapeFit,
        base: TexturedMesh,
        image: np.ndarray,
        mask: np.ndarray,
        opts: FitOptions,
        mirror: bool,
        keep: bool = False,
    ) -> Tensor:
        size = (opts.texture_size, 2 * opts.texture_size)
        colors, known = project_photo(
            fitted.vertices, base.faces, base.uvs, base.face_uvs, fitted.camera, image, mask, size
        )
        if keep:  # the given texture stays where the surface stayed: no sliding under a new camera
            known &= moved_texels(
                base.vertices, fitted.vertices, base.faces, base.uvs, base.face_uvs, size,
                opts.texture_keep_distance,
            )  # fmt: skip
        if mirror:
            colors, known = fill_mirrored(colors, known)
        else:
            given = base.texture.detach().cpu().numpy().astype(np.float32)
            previous = cv2.resize(given, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            colors = np.where(known[..., None], colors, previous).astype(np.float32)
            known = np.ones_like(known)
        return torch.from_numpy(inpaint(colors, known)).clamp(0, 1)


def _fit_options(options: MethodOptions) -> FitOptions:
    if not isinstance(options, FitOptions):
        raise TypeError(f"fit expects FitOptions, got {type(options).__name__}")
    return options
