"""The ``mesh-inversion`` method: MeshInversion (the seed paper), a textured mesh found by inverting a
pre-trained 3-D GAN, i.e. by searching its latent space for the mesh whose rendering best explains the
photo.

The generator (``backend.models.mesh_inversion.MeshGenerator``, ConvMesh's, trained by
``mono2mesh-train mesh-inversion-gan``) maps z (64-d) to a displacement map of the 482-vertex UV sphere
and a texture in its UV layout. Given the crop and its mask (stage "shape" for steps 1-3, "texture" for 4,
each timed in the report):

1. **pose** (``timings["pose"]``): the photo has no dataset camera, so a weak-perspective camera comes
   from a pose-only fit of the generator's mean shape (z = 0) to the mask (``backend.fitting.pose.fit_pose``:
   ``pose_hypotheses`` azimuth hypotheses, soft IoU and Chamfer mask loss; the best hypothesis is kept).
2. **z search** (``timings["z_search"]``): ``random_z`` codes z ~ N(0, I) are rendered with that camera,
   ``search_batch`` at a time, and the one with the lowest inversion loss is kept (for a class-conditional
   generator each code gets a random class unless ``class_label`` is given).
3. **stages** (``timings["stage_1"]`` ...): z and the camera are optimised jointly for ``stages`` x
   ``stage_iterations`` Adam steps (betas (0, 0.99)); stage k's learning rates are ``z_learning_rate``
   and ``pose_learning_rate`` times (1, 0.5, 0.1, 0.05)[k] (the reference's z 1e-1, 5e-2, 1e-2, 5e-3 and
   pose 1e-2, 5e-3, 1e-3, 5e-4); stages past the fourth keep the last factor.
4. **texture** (``timings["texture"]``): the generated texture of the final z (resized to
   ``texture_size`` when given); with ``blend_photo`` the photo's visible texels are blended in
   (projected through the fitted camera, ``backend.meshing.texturing.project_photo``, with a feathered
   edge). Off by default: the paper's point is the GAN's texture, consistent on the hidden side.

The inversion loss (eq. 7, ``backend.fitting.inversion_losses``): ``mask_weight`` (10) x the Chamfer mask
loss between the projected vertices and the mask pixels; ``pixel_texture_weight`` (1) x the pixel-level
Chamfer texture loss (``texture_points`` random foreground pixels); ``feature_texture_weight`` (0.04) x the
feature-level one on VGG-19 relu3_1 features (``backend.models.vgg``: ImageNet weights when present on this
machine, else fixed random features: the report's ``extra["vgg_weights"]`` says which); ``prior_weight``
(0.05) x ``mean(z^2) / 2``; ``smooth_weight`` (5e-5, the reference's) x the face-normal smoothness.
Renderings are hard (``backend.render``, weak perspective, UV texture) at ``render_size``.

**Ablation** (the paper's Table 3): ``texture_loss="l1"`` replaces both texture terms with the
pixel-aligned L1 colour loss (weight ``pixel_texture_weight``), ``"perceptual"`` with the pixel-aligned
VGG feature loss (weight ``feature_texture_weight``); ``mask_loss="iou"`` replaces the Chamfer mask loss
with ``1 - soft IoU`` of a soft silhouette (SoftRas, sigma ``IOU_SIGMA``; weight ``mask_weight``).
The report's ``extra["losses"]`` names the terms used.

**Defaults by device.** ``render_size`` and ``random_z`` left unset take the paper's values on a GPU
(256 px, 500 codes) and smaller renderings and fewer codes on a CPU (64 px, 64 codes; the report's
``extra["settings"]`` has the values used); both keep the paper's 4 x 50 steps. On a
2-core CPU shared with other work, one thread (``cpu_threads``, default 1: two threads were 7x slower
there) inverts a bird photo in 13-16 s with the trainer's ``cpu`` preset generator (texture 32, width
16; docs/BENCHMARKS.md), about 15 s with the default one (texture 64, width 32); the paper's
generator (texture 512, width 64) costs about 3 s per step on one core, minutes per photo: use a GPU or
fewer steps.

The result is the UV sphere (template ``uvsphere-482``) at the generated displacement: every result of
this method shares one UV layout, so textures move between them by copying. ``init_mesh`` (refinement)
is not supported: a ``MethodError`` says to refine with ``fit``. Checkpoints are ``backend.checkpoints``
files of method ``mesh-inversion`` holding the generator's weights; without ``--checkpoint`` the newest
installed one is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.fitting.camera import CameraVariables
from backend.fitting.inversion_losses import (
    TEXTURE_POINTS,
    ColouredPoints,
    InversionTarget,
    feature_chamfer_texture_loss,
    feature_points,
    iou_mask_loss,
    latent_prior,
    normal_smoothness_loss,
    perceptual_texture_loss,
    pixel_chamfer_texture_loss,
    pixel_l1_texture_loss,
)
from backend.fitting.optimise import FitSettings
from backend.fitting.pose import fit_pose
from backend.fitting.report import reprojection_iou
from backend.fitting.targets import chamfer_mask_loss
from backend.geometry.camera import Camera
from backend.geometry.mesh import TexturedMesh
from backend.geometry.ops import EdgeAdjacency, edge_adjacent_faces
from backend.meshing.texturing import project_photo
from backend.methods.base import MethodError, MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.checkpointed import CheckpointedMethod
from backend.models.mesh_inversion import TEMPLATE_ID, GeneratorOutput, MeshGenerator, build_generator
from backend.models.vgg import VggFeatures, load_vgg_features
from backend.progress import within
from backend.render.renderer import render
from backend.render.settings import RasterSettings

Field = pydantic.Field

ADAM_BETAS = (0.0, 0.99)
"""Adam's betas of the inversion (the reference's)."""
STAGE_FACTORS = (1.0, 0.5, 0.1, 0.05)
"""Learning-rate factor of each stage: the reference's z 1e-1, 5e-2, 1e-2, 5e-3; pose 1e-2 ... 5e-4."""
GPU_DEFAULTS = {"render_size": 256, "random_z": 500}
"""The paper's settings: what unset options take on a GPU (or any non-CPU device)."""
CPU_DEFAULTS = {"render_size": 64, "random_z": 64}
"""What unset options take on a CPU: 11-15 s per photo on one core, small generators (module docstring)."""
POSE_SHARE, SEARCH_SHARE = 0.1, 0.2
"""Shares of the "shape" stage's progress: the pose fit, the z search; the stages get the rest."""
BLEND_FEATHER = 0.04
"""Width of the photo blend's feathered edge, as a share of the texture side."""
LOSS_TERMS = ("mask", "pixel_texture", "feature_texture", "prior", "smooth")
TextureLoss = Literal["chamfer", "l1", "perceptual"]
MaskLoss = Literal["chamfer", "iou"]
IOU_SIGMA = 1e-4
"""SoftRas sharpness of the soft silhouette the ``iou`` mask loss compares (the renderer's default)."""


class MeshInversionOptions(MethodOptions):
    """Options of the ``mesh-inversion`` method (module docstring)."""

    crop_size: int = Field(256, ge=64, le=2048, description="side of the photo crop around the object")
    render_size: int | None = Field(
        None, ge=32, le=1024, multiple_of=4,
        description="side of the renderings compared with the photo; default 256 on a GPU, 64 on a CPU",
    )  # fmt: skip
    random_z: int | None = Field(
        None, ge=1, le=10000, description="random latent codes tried before the optimisation; "
        "default 500 on a GPU, 64 on a CPU",
    )  # fmt: skip
    search_batch: int = Field(32, ge=1, le=1024, description="codes rendered at once in the random-z search")
    stages: int = Field(4, ge=0, le=8, description="optimisation stages (learning rates drop each stage)")
    stage_iterations: int = Field(50, ge=0, le=5000, description="Adam steps per stage")
    z_learning_rate: float = Field(0.1, gt=0.0, le=10.0, description="first stage's step size for z")
    pose_learning_rate: float = Field(
        0.01, ge=0.0, le=1.0, description="first stage's step size for the camera"
    )
    optimise_pose: bool = Field(True, description="optimise the camera jointly with z")
    mask_weight: float = Field(10.0, ge=0.0, le=1e4, description="weight of the Chamfer mask loss")
    pixel_texture_weight: float = Field(
        1.0, ge=0.0, le=1e4, description="weight of the pixel-level Chamfer texture loss"
    )
    feature_texture_weight: float = Field(
        0.04, ge=0.0, le=1e4, description="weight of the feature-level (VGG-19) Chamfer texture loss"
    )
    prior_weight: float = Field(0.05, ge=0.0, le=1e4, description="weight of the latent prior mean(z^2) / 2")
    smooth_weight: float = Field(
        5e-5, ge=0.0, le=1e4, description="weight of the face-normal smoothness of the mesh"
    )
    texture_points: int = Field(
        TEXTURE_POINTS,
        ge=16,
        le=65536,
        description="random foreground pixels per image of the texture losses",
    )
    mask_points: int = Field(
        2048, ge=16, le=65536, description="mask pixels the Chamfer mask loss matches to the vertices"
    )
    pose_iterations: int = Field(
        60, ge=0, le=5000, description="steps of the pose-only fit of the mean shape that starts the camera"
    )
    pose_hypotheses: int = Field(4, ge=1, le=12, description="camera azimuth hypotheses of the pose fit")
    class_label: int | None = Field(
        None, ge=0, le=100000,
        description="class of a class-conditional generator; default: searched with z",
    )  # fmt: skip
    blend_photo: bool = Field(
        False, description="blend the photo's visible texels into the generated texture"
    )
    texture_size: int | None = Field(
        None, ge=16, le=4096, description="side of the output texture; default the generator's"
    )
    vgg_weights: str | None = Field(
        None, description="VGG-19 ImageNet weights file or folder; default: looked up on this machine"
    )
    resolution: int = Field(128, ge=16, le=1024, description="side of the silhouette the report's IoU uses")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of the random codes and point samples")
    cpu_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="torch CPU threads on a CPU (small tensors: 1 is fastest on a busy machine)",
    )
    texture_loss: TextureLoss = Field(
        "chamfer", description="texture terms: chamfer (the paper's pixel + feature Chamfer), or, for "
        "the ablation, l1 (pixel-aligned colours) or perceptual (pixel-aligned VGG features)",
    )  # fmt: skip
    mask_loss: MaskLoss = Field(
        "chamfer", description="mask term: chamfer (the paper's), or iou (1 - soft IoU, for the ablation)"
    )


@dataclass(frozen=True)
class InversionSettings:
    """The options with the device defaults resolved (module docstring)."""

    render_size: int
    random_z: int
    stage_iterations: int

    @staticmethod
    def of(options: MeshInversionOptions, device: torch.device) -> InversionSettings:
        defaults = CPU_DEFAULTS if device.type == "cpu" else GPU_DEFAULTS
        return InversionSettings(
            render_size=options.render_size or defaults["render_size"],
            random_z=options.random_z or defaults["random_z"],
            stage_iterations=options.stage_iterations,
        )


@dataclass(frozen=True)
class Rendered:
    """One batch of generated meshes seen by the camera: vertices (B, V, 3), renderings."""

    output: GeneratorOutput
    vertices: Tensor
    rgb: Tensor
    """(B, S, S, 3) in [0, 1], black background."""
    mask: Tensor
    """(B, S, S) bool hard coverage."""


class InversionProblem:
    """The inversion loss of a generator against one photo (module docstring): ``terms`` and ``total``."""

    def __init__(
        self,
        generator: MeshGenerator,
        vgg: VggFeatures | None,
        target: InversionTarget,
        options: MeshInversionOptions,
        seed: int,
    ) -> None:
        self.generator = generator
        self.vgg = vgg
        self.target = target
        self.options = options
        self.raster = RasterSettings(image_size=target.size, soft=False)
        self.adjacency: EdgeAdjacency = edge_adjacent_faces(generator.faces)
        self.points = torch.Generator().manual_seed(seed + 1)  # CPU: the same samples on every device
        self.soft = RasterSettings(image_size=target.size, soft=True, sigma=IOU_SIGMA)
        self.target_features: ColouredPoints | None = None
        self.target_feature_map: Tensor | None = None  # (1, C, S / 4, S / 4), the perceptual loss's
        if vgg is not None:
            with torch.no_grad():
                image = target.image.permute(2, 0, 1)[None]  # (1, 3, S, S)
                mask = target.mask.to(image.dtype)[None, None]
                self.target_feature_map = vgg(image, mask)
                self.target_features = feature_points(
                    self.target_feature_map, mask[:, 0], options.texture_points, self.points
                )

    def weights(self) -> dict[str, float]:
        """Each term's weight: "pixel_texture" is the Chamfer or L1 colour term (none for
        ``texture_loss="perceptual"``), "feature_texture" the Chamfer or perceptual feature term (none
        for "l1" or without VGG features), "mask" the Chamfer or IoU mask term."""
        opts = self.options
        pixels = opts.texture_loss in ("chamfer", "l1")
        features = opts.texture_loss in ("chamfer", "perceptual") and self.vgg is not None
        return {
            "mask": opts.mask_weight,
            "pixel_texture": opts.pixel_texture_weight if pixels else 0.0,
            "feature_texture": opts.feature_texture_weight if features else 0.0,
            "prior": opts.prior_weight,
            "smooth": opts.smooth_weight,
        }

    def render(self, z: Tensor, labels: Tensor | None, camera: Camera) -> Rendered:
        """The meshes of codes z (B, D) (labels (B,) or None) seen by B cameras."""
        output = self.generator(z, labels)
        vertices = self.generator.vertices(output.displacement)  # (B, V, 3)
        texture = output.texture.permute(0, 2, 3, 1)  # (B, T, T, 3), row 0 at v = 1 as the renderer's
        images = render(
            vertices, self.generator.faces, camera, self.raster,
            uvs=self.generator.uvs, face_uvs=self.generator.face_uvs, texture=texture,
        )  # fmt: skip
        return Rendered(output, vertices, images.rgb, images.mask[..., 0] > 0.5)

    def terms(self, z: Tensor, labels: Tensor | None, camera: Camera) -> tuple[dict[str, Tensor], Rendered]:
        """Each loss term (B,) of codes z (B, D) seen by B cameras; a term of weight 0 is zero (not
        computed)."""
        seen = self.render(z, labels, camera)
        weights, target, opts = self.weights(), self.target, self.options
        zero = z.new_zeros(z.shape[0])
        terms = dict.fromkeys(LOSS_TERMS, zero)
        if weights["mask"] and opts.mask_loss == "iou":
            alpha = render(seen.vertices, self.generator.faces, camera, self.soft).alpha[..., 0]  # (B, S, S)
            terms["mask"] = iou_mask_loss(alpha, target.mask)
        elif weights["mask"]:
            projected = camera.project(seen.vertices)[..., :2]  # (B, V, 2)
            terms["mask"] = chamfer_mask_loss(projected, target.distance, target.mask_points)
        if weights["pixel_texture"] and opts.texture_loss == "l1":
            terms["pixel_texture"] = pixel_l1_texture_loss(seen.rgb, seen.mask, target.image, target.mask)
        elif weights["pixel_texture"]:
            terms["pixel_texture"] = pixel_chamfer_texture_loss(
                seen.rgb, seen.mask, target.pixels, self.points, points=opts.texture_points
            )
        if weights["feature_texture"] and self.vgg is not None:
            mask = seen.mask.to(seen.rgb.dtype)
            features = self.vgg(seen.rgb.permute(0, 3, 1, 2), mask[:, None])
            if opts.texture_loss == "perceptual" and self.target_feature_map is not None:
                terms["feature_texture"] = perceptual_texture_loss(features, self.target_feature_map)
            elif self.target_features is not None:
                terms["feature_texture"] = feature_chamfer_texture_loss(
                    features, mask, self.target_features, self.points, points=opts.texture_points
                )
        if weights["prior"]:
            terms["prior"] = latent_prior(z)
        if weights["smooth"]:
            terms["smooth"] = normal_smoothness_loss(seen.vertices, self.generator.faces, self.adjacency)
        return terms, seen

    def total(self, terms: dict[str, Tensor]) -> Tensor:
        """(B,) the weighted sum of the terms."""
        weights = self.weights()
        return sum((weights[name] * terms[name] for name in LOSS_TERMS), terms["mask"].new_zeros(()))


@dataclass(frozen=True)
class StartPose:
    """Step 1's camera (batch of one, on the method's device), its hypothesis and pose-fit loss."""

    camera: Camera
    hypothesis: int
    final_loss: float


@dataclass(frozen=True)
class SearchResult:
    """The random-z search's choice: code (1, D), label (1,) or None, its loss, its index among the
    ``tried`` codes, and its silhouette IoU at the start camera."""

    z: Tensor
    labels: Tensor | None
    loss: float
    index: int
    tried: int
    iou: float


def _rounded(terms: dict[str, Tensor], index: int = 0) -> dict[str, float]:
    return {name: round(float(value[index]), 6) for name, value in terms.items()}


class MeshInversionMethod(CheckpointedMethod[MeshInversionOptions, MeshGenerator]):
    """The ``mesh-inversion`` method (module docstring); one instance per device and checkpoint."""

    name = "mesh-inversion"
    Options = MeshInversionOptions
    template = TEMPLATE_ID
    train_command = "mono2mesh-train mesh-inversion-gan"

    def __init__(self, device: torch.device | str = "cpu", checkpoint: str | None = None) -> None:
        super().__init__(device, checkpoint)
        self.network.requires_grad_(False)  # only z and the camera move
        self._vgg: dict[str | None, VggFeatures] = {}

    def build_network(self, settings: dict[str, Any]) -> MeshGenerator:
        return build_generator(settings)

    def feature_network(self, path: str | None) -> VggFeatures:
        """The VGG-19 features (loaded once per weights path; ``MethodError`` for a bad file)."""
        if path not in self._vgg:
            try:
                self._vgg[path] = load_vgg_features(self.device, path)
            except ValueError as error:
                raise MethodError(str(error)) from error
        return self._vgg[path]

    def labels_for(self, opts: MeshInversionOptions, count: int, generator: torch.Generator) -> Tensor | None:
        """Class labels (count,) for a class-conditional generator, else None (``MethodError`` for a
        label the generator cannot take)."""
        classes = self.network.config.num_classes
        if classes == 0:
            if opts.class_label is not None:
                raise MethodError("class_label given, but the checkpoint's generator is unconditional")
            return None
        if opts.class_label is not None:
            if opts.class_label >= classes:
                raise MethodError(f"class_label must be below the generator's {classes} classes")
            return torch.full((count,), opts.class_label, dtype=torch.int64, device=self.device)
        drawn = torch.randint(classes, (count,), generator=generator, device="cpu")
        return drawn.to(self.device)

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
        self.refuse_refinement(init_mesh, "searches the GAN's latent space")
        self.check_inputs(image, mask)
        settings = InversionSettings.of(opts, self.device)
        wants_features = opts.feature_texture_weight > 0 and opts.texture_loss != "l1"
        vgg = self.feature_network(opts.vgg_weights) if wants_features else None
        watch = Stopwatch()
        with self.threads(opts.cpu_threads):
            progress(0.0, "shape")
            with watch.stage("pose"):
                start = self.start_camera(opts, settings, mask, within(progress, 0.0, POSE_SHARE))
            draws = torch.Generator().manual_seed(opts.seed)
            target = InversionTarget.build(
                image, mask, settings.render_size, draws, self.device,
                mask_limit=opts.mask_points, texture_points=opts.texture_points,
            )  # fmt: skip
            problem = InversionProblem(self.network, vgg, target, opts, opts.seed)
            with watch.stage("z_search"):
                search = self.search(
                    problem, start, settings, mask, draws, within(progress, POSE_SHARE, SEARCH_SHARE)
                )
            z, camera, stage_losses, final_terms = self.optimise(
                problem, search, start, settings, watch,
                within(progress, POSE_SHARE + SEARCH_SHARE, 1 - POSE_SHARE - SEARCH_SHARE),
            )  # fmt: skip
            progress(1.0, "shape")
            with watch.stage("texture"):
                progress(0.0, "texture")
                with torch.no_grad():
                    output = self.network(z, search.labels)
                    mesh = self.network.mesh(output)
                texture = self.output_texture(mesh, camera, image, mask, opts)
                mesh = mesh.with_texture(texture)
                progress(1.0, "texture")
            iou = reprojection_iou(
                mesh.vertices.to(self.device), mesh.faces.to(self.device), camera.to(self.device), mask,
                opts.resolution,
            )  # fmt: skip
        extra = {
            "settings": {
                "render_size": settings.render_size,
                "random_z": settings.random_z,
                "stages": opts.stages,
                "stage_iterations": settings.stage_iterations,
            },
            "pose": {"hypothesis": start.hypothesis, "final_loss": round(start.final_loss, 5)},
            "z_search": {
                "tried": search.tried,
                "chosen": search.index,
                "loss": round(search.loss, 6),
                "silhouette_iou": round(search.iou, 4),
            },
            "chosen_z_loss": round(search.loss, 6),
            "stage_losses": [round(value, 6) for value in stage_losses],
            "final_terms": final_terms,
            "class_label": None if search.labels is None else int(search.labels[0]),
            "vgg_weights": vgg.weights if vgg is not None else None,
            "losses": {"texture": opts.texture_loss, "mask": opts.mask_loss},
            "texture": "generated+photo" if opts.blend_photo else "generated",
            "texture_size": int(mesh.texture.shape[0]),
        }
        return self.result(
            opts, mesh, camera, mask,
            timings=watch.timings, silhouette_iou=iou, template=TEMPLATE_ID, extra=extra,
        )  # fmt: skip

    def start_camera(
        self,
        opts: MeshInversionOptions,
        settings: InversionSettings,
        mask: np.ndarray,
        progress: ProgressCallback,
    ) -> StartPose:
        """Step 1: the weak-perspective camera of the mean shape (z = 0) fitted to the mask."""
        labels = self.labels_for(opts, 1, torch.Generator().manual_seed(opts.seed))
        with torch.no_grad():
            zero = torch.zeros(1, self.network.config.z_dim, device=self.device)
            vertices = self.network.vertices(self.network(zero, labels).displacement)[0].float()
        fit = FitSettings(
            iterations=opts.pose_iterations, resolution=max(settings.render_size, 32),
            hypotheses=opts.pose_hypotheses, seed=opts.seed,
        )  # fmt: skip
        fitted = fit_pose(vertices, self.network.faces, mask, fit, progress)
        return StartPose(fitted.camera.to(self.device), fitted.hypothesis, fitted.final_loss)

    @torch.no_grad()
    def search(
        self,
        problem: InversionProblem,
        start: StartPose,
        settings: InversionSettings,
        mask: np.ndarray,
        draws: torch.Generator,
        progress: ProgressCallback,
    ) -> SearchResult:
        """Step 2: the best of ``random_z`` random codes under the start camera."""
        opts = problem.options
        count = settings.random_z
        codes = torch.randn(count, self.network.config.z_dim, generator=draws, device="cpu").to(self.device)
        labels = self.labels_for(opts, count, draws)
        losses = []
        for first in range(0, count, opts.search_batch):
            part = slice(first, first + opts.search_batch)
            batch = codes[part]
            camera = start.camera[torch.zeros(batch.shape[0], dtype=torch.int64, device=self.device)]
            terms, _ = problem.terms(batch, None if labels is None else labels[part], camera)
            losses.append(problem.total(terms).float().cpu())
            progress(min(first + opts.search_batch, count) / count, "shape")
        index = int(torch.argmin(torch.cat(losses)))
        z = codes[index : index + 1].clone()
        label = None if labels is None else labels[index : index + 1].clone()
        vertices = self.network.vertices(self.network(z, label).displacement)[0]
        iou = reprojection_iou(vertices, self.network.faces, start.camera, mask, opts.resolution)
        return SearchResult(z, label, float(torch.cat(losses)[index]), index, count, iou)

    def optimise(
        self,
        problem: InversionProblem,
        search: SearchResult,
        start: StartPose,
        settings: InversionSettings,
        watch: Stopwatch,
        progress: ProgressCallback,
    ) -> tuple[Tensor, Camera, list[float], dict[str, float]]:
        """Step 3: z and the camera optimised jointly, stage by stage. Returns the final z (1, D), the
        detached camera, the loss at the end of each stage and the final loss terms."""
        opts = problem.options
        z = search.z.clone().requires_grad_(True)
        cameras = CameraVariables.from_camera(start.camera, self.device)
        z_optimiser = torch.optim.Adam([z], lr=opts.z_learning_rate, betas=ADAM_BETAS)
        pose_optimiser = None
        if opts.optimise_pose and opts.pose_learning_rate > 0:
            variables = cameras.tensors()
            for variable in variables:
                variable.requires_grad_(True)
            pose_optimiser = torch.optim.Adam(variables, lr=opts.pose_learning_rate, betas=ADAM_BETAS)
        steps = max(opts.stages * settings.stage_iterations, 1)
        done = 0
        stage_losses: list[float] = []
        for stage in range(opts.stages):
            factor = STAGE_FACTORS[min(stage, len(STAGE_FACTORS) - 1)]
            for group in z_optimiser.param_groups:
                group["lr"] = opts.z_learning_rate * factor
            if pose_optimiser is not None:
                for group in pose_optimiser.param_groups:
                    group["lr"] = opts.pose_learning_rate * factor
            last = float("nan")
            with watch.stage(f"stage_{stage + 1}"):
                for _ in range(settings.stage_iterations):
                    z_optimiser.zero_grad(set_to_none=True)
                    if pose_optimiser is not None:
                        pose_optimiser.zero_grad(set_to_none=True)
                    terms, _ = problem.terms(z, search.labels, cameras.camera())
                    loss = problem.total(terms).sum()
                    loss.backward()
                    z_optimiser.step()
                    if pose_optimiser is not None:
                        pose_optimiser.step()
                    last = float(loss.detach())
                    done += 1
                    progress(done / steps, "shape")
            stage_losses.append(last)
        camera = cameras.result()
        with torch.no_grad():
            terms, _ = problem.terms(z.detach(), search.labels, camera)
            final = {**_rounded(terms), "total": round(float(problem.total(terms)[0]), 6)}
        return z.detach(), camera, stage_losses, final

    def output_texture(
        self,
        mesh: TexturedMesh,
        camera: Camera,
        image: np.ndarray,
        mask: np.ndarray,
        opts: MeshInversionOptions,
    ) -> Tensor:
        """Step 4: the generated texture (T, T, 3), resized to ``texture_size``, the photo blended in when
        ``blend_photo``."""
        texture = mesh.texture
        size = opts.texture_size or int(texture.shape[0])
        if size != texture.shape[0]:
            channels_first = texture.permute(2, 0, 1)[None]  # (1, 3, T, T)
            resized = F.interpolate(channels_first, size=(size, size), mode="bilinear", align_corners=False)
            texture = resized[0].permute(1, 2, 0).clamp(0, 1).contiguous()
        if not opts.blend_photo:
            return texture
        colors, known = project_photo(
            mesh.vertices, mesh.faces, mesh.uvs, mesh.face_uvs, camera.to("cpu"), image, mask, (size, size)
        )
        weight = known.astype(np.float32)
        blur = max(1, round(BLEND_FEATHER * size)) * 2 + 1
        weight = cv2.GaussianBlur(weight, (blur, blur), 0) * weight  # fades out towards the unseen texels
        blended = weight[..., None] * colors + (1 - weight[..., None]) * texture.numpy()
        return torch.from_numpy(np.ascontiguousarray(blended, dtype=np.float32)).clamp(0, 1)


SPEC = MeshInversionMethod.spec(
    "MeshInversion: the latent code of a pre-trained 3-D GAN (ConvMesh generator, UV sphere) searched and "
    "optimised with Chamfer mask and texture losses; GAN texture (needs a trained checkpoint)"
)
