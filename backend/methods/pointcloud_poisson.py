"""The ``pointcloud-poisson`` method: a point cloud from one image, meshed by screened Poisson, textured.

The seed paper's pipeline ("An effective loss function for generating 3D models from single 2D image
without rendering"), stage by stage (each one timed in the report):

Progress: stage "shape" covers steps 1-4, stage "texture" step 5.

1. **network**: the crop and its mask, resized to the network's input (RGBA, RGB times
   the mask), give N points in the object's canonical frame and a pose: the student head's rotation
   (``backend.models.pointcloud``, DPC's architecture with an ensemble of pose candidates).
2. **camera**: ``fit_point_camera`` fits the scale, translation and a rotation correction (moments, then a
   2-D Chamfer fit of the projected points to the mask) from the student's rotation and, with
   ``pose_starts="all"``, from each candidate's too; the lowest Chamfer wins (``extra["pose_start"]``).
3. **meshing**: normals oriented away from the centroid (the cloud samples the whole closed object;
   orienting toward the camera would turn the back's normals inward), screened Poisson at ``depth``,
   low-density trimming, cleanup and decimation to ``face_budget`` faces (``backend.meshing``).
4. **unwrap**: an xatlas atlas.
5. **texture**: the photo is projected onto the visible surface, the hidden side takes
   the colour of its mirror point across the object's symmetry plane (x = 0 of the canonical frame) where
   that is visible; the rest is filled by the texture-completion network (a GAN-trained generator,
   ``backend.models.texture_completion``) when its checkpoint (method ``texture-completion``, formerly
   ``pointcloud-texture``) is installed or given and ``texture`` is not "bake", else by inpainting. The
   option value "gan" and the report's ``extra["texture"]`` ("gan" or "bake") name the completion
   network "gan" for compatibility.

Open3D's Poisson solver runs on several threads and is not bit-reproducible: two runs on one photo give
meshes that agree in shape but not vertex for vertex.

The mesh has its own topology and atlas (the report's template is its ``topology_id``): textures do not
move to other results by copying. Checkpoints are ``backend.checkpoints`` files of method
``pointcloud-poisson`` (``mono2mesh-train pointcloud-poisson``); without ``--checkpoint`` the newest
installed one is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic
import torch

from backend.checkpoints import default_checkpoint
from backend.fitting.point_camera import fit_point_camera
from backend.fitting.report import reprojection_iou, topology_id
from backend.geometry.mesh import PointCloud, TexturedMesh
from backend.meshing import MeshingError, MeshingOptions, bake_texture, mesh_point_cloud, unwrap_uvs
from backend.methods.base import MethodError, MethodOptions, ProgressCallback, Reconstruction, Stopwatch
from backend.methods.checkpointed import CheckpointedMethod, load_method_network, masked_crop_input
from backend.methods.spec import RequiredPackage
from backend.models.pointcloud import TEMPLATE_ID, PointCloudModel, PointCloudModelConfig
from backend.models.texture_completion import (
    TEXTURE_METHOD,
    TEXTURE_TEMPLATE,
    TextureGenerator,
    TextureGeneratorConfig,
    complete_texture,
)

Field = pydantic.Field
TextureChoice = Literal["auto", "gan", "bake"]


class PointCloudPoissonOptions(MethodOptions):
    """Options of the ``pointcloud-poisson`` method."""

    crop_size: int = Field(
        512, ge=64, le=2048, description="side of the photo crop the texture is baked from"
    )
    depth: int = Field(8, ge=4, le=12, description="screened Poisson octree depth")
    density_quantile: float = Field(
        0.02, ge=0.0, lt=1.0, description="trim Poisson vertices below this quantile of support density"
    )
    face_budget: int = Field(20000, ge=100, le=2_000_000, description="decimate to at most this many faces")
    normals: Literal["centroid", "tangent", "camera"] = Field(
        "centroid",
        description="normal orientation: away from the centroid (closed objects), consistent tangent planes "
        "(concave shapes), or toward the camera (only for clouds that sample the visible side alone)",
    )
    camera_iterations: int = Field(100, ge=0, le=5000, description="steps of the camera's 2-D Chamfer fit")
    pose_starts: Literal["all", "student"] = Field(
        "all",
        description="fit the camera from the student's and every candidate's rotation (all), keep the best",
    )
    texture_size: int = Field(1024, ge=64, le=4096, description="side of the square texture atlas")
    texture: TextureChoice = Field(
        "auto",
        description=(
            "hidden texels: texture-completion network if installed (auto), always (gan), inpainting (bake)"
        ),
    )
    texture_checkpoint: str | None = Field(
        None, description="texture-completion checkpoint; default: the newest installed"
    )
    time_limit: float = Field(
        120.0, gt=0.0, le=3600.0, description="seconds allowed for Poisson (checked when Open3D returns)"
    )
    resolution: int = Field(128, ge=16, le=1024, description="side of the silhouette the report's IoU uses")
    cpu_threads: int = Field(
        2, ge=1, le=256, description="torch CPU threads for the network and camera fits on a CPU"
    )


class PointCloudPoissonMethod(CheckpointedMethod[PointCloudPoissonOptions, PointCloudModel]):
    """The ``pointcloud-poisson`` method (module docstring); one instance per device and checkpoint."""

    name = "pointcloud-poisson"
    Options = PointCloudPoissonOptions
    template = TEMPLATE_ID
    train_command = "mono2mesh-train pointcloud-poisson"

    def __init__(self, device: torch.device | str = "cpu", checkpoint: str | Path | None = None) -> None:
        super().__init__(device, checkpoint)
        self._generators: dict[Path, tuple[TextureGenerator, str]] = {}

    def build_network(self, settings: dict[str, Any]) -> PointCloudModel:
        return PointCloudModel(PointCloudModelConfig.from_dict(settings))

    @torch.no_grad()
    def predict(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (N, 3) and rotations (1 + K, 4) (the student's, then the K candidates') from a crop
        (S, S, 3) in [0, 1] and its mask (S, S)."""
        prediction = self.network(masked_crop_input(image, mask, self.network.config.image_size, self.device))
        rotations = torch.cat([prediction.student, prediction.candidates[0]])  # (1 + K, 4)
        return prediction.points[0].float().cpu(), rotations.float().cpu()

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
        self.refuse_refinement(init_mesh, "predicts a new point cloud")
        self.check_inputs(image, mask)
        generator = self._texture_generator(opts)  # before the work: a bad path fails at once
        watch = Stopwatch()

        progress(0.0, "shape")
        with watch.stage("network"), self.threads(opts.cpu_threads):
            points, rotations = self.predict(image, mask)
        progress(0.1, "shape")

        with watch.stage("camera"), self.threads(opts.cpu_threads):
            starts = rotations if opts.pose_starts == "all" else rotations[:1]
            fits = [fit_point_camera(points, mask, rotation, opts.camera_iterations) for rotation in starts]
        start = min(range(len(fits)), key=lambda index: fits[index][1])
        camera, chamfer_2d = fits[start]
        progress(0.2, "shape")
        meshing_options = MeshingOptions(
            depth=opts.depth, orientation=opts.normals, density_quantile=opts.density_quantile,
            face_budget=opts.face_budget, time_limit=opts.time_limit,
        )  # fmt: skip
        try:
            meshed = mesh_point_cloud(PointCloud(points), meshing_options, eye=camera.eye()[0])
        except MeshingError as error:
            raise MethodError(f"meshing the predicted point cloud failed: {error}") from error
        watch.timings.update({f"mesh_{stage}": s for stage, s in meshed.timings.items() if stage != "total"})
        progress(0.9, "shape")
        with watch.stage("unwrap"):
            uvs, face_uvs = unwrap_uvs(meshed.vertices, meshed.faces)
        progress(1.0, "shape")

        progress(0.0, "texture")
        with watch.stage("texture"):
            size = (opts.texture_size, opts.texture_size)
            baked = bake_texture(meshed.vertices, meshed.faces, uvs, face_uvs, camera, image, mask, size)
            texture = baked.texture
            if generator is not None:
                texture = complete_texture(generator[0], baked.texture, baked.known, self.device)
        progress(1.0, "texture")

        mesh = TexturedMesh(
            vertices=meshed.vertices, faces=meshed.faces, uvs=uvs, face_uvs=face_uvs,
            texture=torch.from_numpy(np.ascontiguousarray(texture, dtype=np.float32)),
        )  # fmt: skip
        iou = reprojection_iou(
            mesh.vertices.to(self.device), mesh.faces.to(self.device), camera.to(self.device), mask,
            opts.resolution,
        )  # fmt: skip
        extra = {
            "points": int(points.shape[0]),
            "poisson_depth": opts.depth,
            "meshing": meshed.stats,
            "camera_chamfer_2d": round(chamfer_2d, 6),
            "pose_start": "student" if start == 0 else f"candidate {start - 1}",
            "texture": "gan" if generator is not None else "bake",
            "texture_checkpoint": generator[1] if generator is not None else None,
            "texture_photo_fraction": round(baked.photo_fraction, 4),
            "texture_mirrored_fraction": round(baked.mirrored_fraction, 4),
        }
        # its own atlas: the template is the id of its faces and UV layout
        return self.result(
            opts, mesh, camera, mask,
            timings=watch.timings, silhouette_iou=iou, template=topology_id(mesh), extra=extra,
        )  # fmt: skip

    def _texture_generator(self, opts: PointCloudPoissonOptions) -> tuple[TextureGenerator, str] | None:
        """The texture generator the options ask for (loaded once per file), or None for the bake.

        Raises:
            MethodError: ``texture="gan"`` with no generator installed, or a generator file that is not one.
        """
        if opts.texture == "bake":
            return None
        path = Path(opts.texture_checkpoint).expanduser() if opts.texture_checkpoint else None
        if path is None:
            path = default_checkpoint(TEXTURE_METHOD)
        if path is None:
            if opts.texture == "gan":
                raise MethodError(
                    f"texture=gan needs a {TEXTURE_METHOD} checkpoint: train one with "
                    f"`mono2mesh-train {TEXTURE_METHOD}` or pass texture_checkpoint"
                )
            return None
        if path not in self._generators:
            self._generators[path] = load_method_network(
                TEXTURE_METHOD, path, TEXTURE_TEMPLATE, self.device,
                lambda settings: TextureGenerator(TextureGeneratorConfig.from_dict(settings)),
            )  # fmt: skip
        return self._generators[path]


SPEC = PointCloudPoissonMethod.spec(
    "Point cloud from a DPC-style network trained with the effective (render-free) loss, meshed by "
    "screened Poisson, UV-unwrapped and textured from the photo (needs a trained checkpoint)",
    requires=(RequiredPackage("open3d", "pip install open3d"),),
)
