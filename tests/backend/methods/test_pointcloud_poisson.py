"""The ``pointcloud-poisson`` method: checkpoint through the registry, network -> camera -> Poisson mesh
-> atlas -> baked (or GAN-completed) texture, the report, the GLB, and its errors.

The network's point layer and student head are set by hand so that it predicts a known ellipsoid
surface and pose whatever the image (zero weights, chosen biases): what is tested is the method's
pipeline, not training (tests/training/test_pointcloud_training.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.fitting.report import topology_id
from backend.geometry.camera import Camera, axis_angle_to_quaternion
from backend.geometry.io import load_glb
from backend.geometry.templates import icosphere_template
from backend.methods import pointcloud_poisson
from backend.methods.base import MethodError, no_progress
from backend.methods.pipeline import export, reconstruct_photo
from backend.methods.pointcloud_poisson import PointCloudPoissonMethod, PointCloudPoissonOptions
from backend.methods.registry import create_method, method_info, parse_options
from backend.models.pointcloud import TEMPLATE_ID, PointCloudModel, PointCloudModelConfig
from backend.models.texture_completion import (
    TEXTURE_METHOD,
    TEXTURE_TEMPLATE,
    TextureGenerator,
    TextureGeneratorConfig,
    complete_texture,
)
from backend.render.renderer import render
from backend.render.settings import RasterSettings

CONFIG = PointCloudModelConfig(image_size=32, num_points=2000, channels=4, z_dim=32, hidden=32)
AXES = torch.tensor([0.25, 0.3, 0.45])
SIDE = axis_angle_to_quaternion(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([math.pi / 2]))[0]  # (4,)
OPTIONS = {"crop_size": 96, "texture_size": 128, "resolution": 64, "depth": 6, "camera_iterations": 30}


pytestmark = pytest.mark.usefixtures("method_home")


def ellipsoid_points(count: int, flat: bool = False) -> torch.Tensor:
    """(count, 3) points on an ellipsoid's surface (a flat disc with ``flat``), inside the box."""
    generator = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(count, 3, generator=generator), dim=1)
    points = directions * AXES
    if flat:
        points[:, 2] = 0.0
    return points


def network(points: torch.Tensor) -> PointCloudModel:
    """A network that predicts ``points`` (N, 3) and the side view ``SIDE`` for every image."""
    torch.manual_seed(0)
    model = PointCloudModel(CONFIG).eval()
    with torch.no_grad():
        model.point_head.weight.zero_()
        model.point_head.bias.copy_(torch.atanh(2 * points.clamp(-0.49, 0.49)).reshape(-1))
        last = model.student_head[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.copy_(SIDE)
    return model


def write_checkpoint(stem: Path, model: torch.nn.Module, method: str, template: str) -> Path:
    config = model.config.model_dump(mode="json")  # type: ignore[union-attr,operator]
    meta = CheckpointMeta(method=method, template=template, config={"model": config}, step=1)
    return save_checkpoint(stem, model.state_dict(), meta)


def photo(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """The ellipsoid seen from the side (the pose the network predicts), left half red, right half blue."""
    template = icosphere_template(3).mesh
    vertices = template.vertices * AXES
    camera = Camera.weak_perspective(torch.tensor([1.6]), torch.tensor([[0.05, -0.03]]), SIDE[None])
    mask = render(vertices, template.faces, camera, RasterSettings(size, soft=False)).alpha[0, ..., 0]
    mask_np = mask.numpy() > 0.5
    image = np.ones((size, size, 3), np.float32)
    left = np.arange(size)[None, :] < size // 2
    image[mask_np & left] = [0.9, 0.1, 0.1]
    image[mask_np & ~left] = [0.1, 0.1, 0.9]
    return image, mask_np


def ellipsoid_method(tmp_path: Path) -> PointCloudPoissonMethod:
    path = write_checkpoint(
        tmp_path / "pc", network(ellipsoid_points(2000)), "pointcloud-poisson", TEMPLATE_ID
    )
    method = create_method("pointcloud-poisson", "cpu", checkpoint=str(path))
    assert isinstance(method, PointCloudPoissonMethod)
    return method


def test_unavailable_until_a_checkpoint_is_installed(method_home: Path) -> None:
    info = {entry["name"]: entry for entry in method_info()}["pointcloud-poisson"]
    assert info["needs_checkpoint"] and not info["available"]
    assert "mono2mesh-train pointcloud-poisson" in info["reason"]
    with pytest.raises(MethodError, match="no pointcloud-poisson checkpoint"):
        create_method("pointcloud-poisson", "cpu")
    model = network(ellipsoid_points(2000))
    write_checkpoint(method_home / "checkpoints" / "birds", model, "pointcloud-poisson", TEMPLATE_ID)
    assert {entry["name"]: entry for entry in method_info()}["pointcloud-poisson"]["available"]


def test_the_photo_becomes_a_textured_poisson_mesh(tmp_path: Path) -> None:
    method = ellipsoid_method(tmp_path)
    image, mask = photo()
    stages: list[str] = []
    result = method.reconstruct(
        image, mask, parse_options("pointcloud-poisson", OPTIONS), lambda f, stage: stages.append(stage)
    )
    mesh, report = result.mesh, result.report
    # the Poisson surface lies on the ellipsoid the points came from
    radius = (mesh.vertices / AXES).norm(dim=1)
    assert (radius - 1).abs().median() < 0.05
    assert mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1
    assert tuple(mesh.texture.shape) == (128, 128, 3) and torch.isfinite(mesh.texture).all()
    # the camera explains the mask, and the photo's colours land on the matching sides of the mesh
    assert report.silhouette_iou is not None and report.silhouette_iou > 0.85
    assert set(stages) == {"shape", "texture"}
    extra = report.extra
    assert extra["points"] == 2000 and extra["poisson_depth"] == 6 and extra["texture"] == "bake"
    assert extra["pose_start"] == "student" or extra["pose_start"].startswith("candidate")
    assert extra["texture_checkpoint"] is None and 0.2 < extra["texture_photo_fraction"] <= 1
    assert extra["meshing"]["faces"] == mesh.num_faces == report.num_faces
    for stage in ("network", "camera", "unwrap", "texture"):
        assert report.timings[stage] >= 0
    assert any(name.startswith("mesh_") for name in report.timings)
    # its own atlas: the report names the mesh's own faces and UV layout, not the checkpoint's template
    assert report.template == topology_id(mesh) != TEMPLATE_ID and report.checkpoint == "pc.safetensors"


def test_the_face_budget_is_kept(tmp_path: Path) -> None:
    method = ellipsoid_method(tmp_path)
    image, mask = photo()
    options = parse_options("pointcloud-poisson", {**OPTIONS, "face_budget": 300})
    assert method.reconstruct(image, mask, options, no_progress).mesh.num_faces <= 300


def test_a_texture_generator_fills_the_hidden_texels(
    tmp_path: Path, method_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    method = ellipsoid_method(tmp_path)
    image, mask = photo()
    gan_options = parse_options("pointcloud-poisson", {**OPTIONS, "texture": "gan"})
    with pytest.raises(MethodError, match="texture-completion"):
        method.reconstruct(image, mask, gan_options, no_progress)

    calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def spy(
        generator: TextureGenerator, colors: np.ndarray, known: np.ndarray, device: torch.device
    ) -> np.ndarray:
        completed = complete_texture(generator, colors, known, device)
        calls.append((colors, known, completed))
        return completed

    monkeypatch.setattr(pointcloud_poisson, "complete_texture", spy)
    torch.manual_seed(0)
    generator = TextureGenerator(
        TextureGeneratorConfig(image_size=64, base_channels=8, depth=3, working_size=64)
    )
    write_checkpoint(method_home / "checkpoints" / "tex", generator, TEXTURE_METHOD, TEXTURE_TEMPLATE)
    gan = method.reconstruct(image, mask, parse_options("pointcloud-poisson", OPTIONS), no_progress)
    assert gan.report.extra["texture"] == "gan"
    assert gan.report.extra["texture_checkpoint"] == "tex.safetensors"
    ((colors, known, completed),) = calls
    assert 0 < known.mean() < 1
    assert np.array_equal(completed[known], colors[known])  # photo and mirrored texels are kept exactly
    assert not np.allclose(completed[~known], colors[~known], atol=1e-3)  # the rest is the generator's
    assert torch.equal(gan.mesh.texture, torch.from_numpy(completed))

    bake = method.reconstruct(
        image, mask, parse_options("pointcloud-poisson", {**OPTIONS, "texture": "bake"}), no_progress
    )
    assert bake.report.extra["texture"] == "bake" and len(calls) == 1


def test_checkpoint_to_glb_through_the_photo_pipeline(tmp_path: Path) -> None:
    method = ellipsoid_method(tmp_path)
    image, mask = photo(128)
    rgba = np.concatenate([image, mask[..., None].astype(np.float32)], axis=-1)
    path = tmp_path / "photo.png"
    Image.fromarray((rgba * 255).round().astype(np.uint8)).save(path)
    reconstruction = reconstruct_photo(method, path, options=parse_options("pointcloud-poisson", OPTIONS))
    written = export(reconstruction, tmp_path / "out", "photo")
    loaded = load_glb(written["glb"])
    assert loaded.num_faces == reconstruction.reconstruction.mesh.num_faces
    assert tuple(loaded.texture.shape) == (128, 128, 3)
    assert reconstruction.report()["method"] == "pointcloud-poisson"


def test_errors_name_the_problem(tmp_path: Path) -> None:
    method = ellipsoid_method(tmp_path)
    image, mask = photo()
    options = parse_options("pointcloud-poisson", OPTIONS)
    with pytest.raises(ValueError, match="empty"):
        method.reconstruct(image, np.zeros_like(mask), options, no_progress)
    with pytest.raises(MethodError, match="cannot refine"):
        method.reconstruct(image, mask, options, no_progress, init_mesh=icosphere_template(2).mesh)
    with pytest.raises(MethodError, match="iterations"):
        parse_options("pointcloud-poisson", {"iterations": 3})
    flat = write_checkpoint(
        tmp_path / "flat", network(ellipsoid_points(2000, flat=True)), "pointcloud-poisson", TEMPLATE_ID
    )
    with pytest.raises(MethodError, match="meshing the predicted point cloud failed"):
        create_method("pointcloud-poisson", "cpu", checkpoint=str(flat)).reconstruct(
            image, mask, options, no_progress
        )
    assert isinstance(options, PointCloudPoissonOptions)
