"""The ``mesh-inversion`` method: checkpoint loading through the registry, the inversion of a photo
rendered from a generated sample, options, errors and the photo pipeline.

The generator is tiny and untrained. Fresh, its z hardly reaches the outputs (default initialisation
shrinks the signal layer by layer, and the displacement head starts at zero), so it is re-initialised
with Kaiming-normal convolutions and no biases, and its displacement head scaled so that codes give
visibly different, bumpy shapes and textures. Training is tested in tests/training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.cli import main as cli_main
from backend.fitting.report import reprojection_iou
from backend.geometry.camera import Camera, axis_angle_to_quaternion
from backend.geometry.io import load_glb
from backend.geometry.templates import icosphere_template
from backend.imaging.errors import MaskError
from backend.methods.base import MethodError, no_progress
from backend.methods.mesh_inversion import (
    CPU_DEFAULTS,
    GPU_DEFAULTS,
    InversionSettings,
    MeshInversionMethod,
    MeshInversionOptions,
)
from backend.methods.pipeline import export, reconstruct_photo
from backend.methods.registry import create_method, method_info, parse_options
from backend.models.mesh_inversion import TEMPLATE_ID, MeshGenerator, MeshInversionModelConfig
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from tests.devices import DEVICES

SMALL = {
    "crop_size": 64, "render_size": 64, "random_z": 8, "stages": 2, "stage_iterations": 20,
    "pose_iterations": 30, "resolution": 64, "texture_points": 2048, "cpu_threads": 1,
}  # fmt: skip
"""Sizes for tests: a 64 px crop, 8 random codes, 2 x 20 steps (the CPU default: 64 codes, 4 x 50)."""
FAST = {**SMALL, "random_z": 2, "stages": 1, "stage_iterations": 2, "pose_iterations": 4}
"""Even smaller, where only the plumbing matters."""


@pytest.fixture(autouse=True)
def _isolated_home(method_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``method_home``, and no VGG weights of the user's are seen (an empty hub cache)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return method_home


def tiny_generator(num_classes: int = 0, displacement_scale: float = 0.1) -> MeshGenerator:
    """An untrained generator whose codes give varied shapes and textures (module docstring)."""
    torch.manual_seed(0)
    config = MeshInversionModelConfig(width=4, texture_size=32, mesh_size=32, num_classes=num_classes)
    generator = MeshGenerator(config)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.kaiming_normal_(generator.fc.weight, nonlinearity="relu")
        generator.displacement_head.conv.weight.mul_(displacement_scale)
    return generator.eval()


def write_checkpoint(
    stem: Path, generator: MeshGenerator, method: str = "mesh-inversion", template: str = TEMPLATE_ID
) -> Path:
    meta = CheckpointMeta(
        method=method, template=template, config={"model": generator.config.model_dump(mode="json")}, step=1
    )
    return save_checkpoint(stem, generator.state_dict(), meta)


def generated_photo(
    generator: MeshGenerator, seed: int = 100, size: int = 64
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, Camera]:
    """A crop (S, S, 3) and mask (S, S) rendered from the sample of z* ~ N(0, I) (seeded), turned
    0.5 rad about y, off centre; and z* and the camera."""
    z = torch.randn(1, generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
    turn = axis_angle_to_quaternion(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0.5]))
    camera = Camera.weak_perspective(torch.tensor([0.6]), torch.tensor([[0.05, -0.03]]), turn)
    with torch.no_grad():
        output = generator(z)
        vertices = generator.vertices(output.displacement)
        seen = render(
            vertices, generator.faces, camera, RasterSettings(size, soft=False),
            uvs=generator.uvs, face_uvs=generator.face_uvs, texture=output.texture.permute(0, 2, 3, 1),
        )  # fmt: skip
    image = seen.rgb[0].numpy().astype(np.float32)
    return image, seen.mask[0, ..., 0].numpy() > 0.5, z, camera


def test_unavailable_without_a_checkpoint_then_listed(
    _isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = {entry["name"]: entry for entry in method_info()}["mesh-inversion"]
    assert info["needs_checkpoint"] and not info["available"]
    assert "no mesh-inversion checkpoint installed" in info["reason"]
    assert "mono2mesh-train mesh-inversion-gan" in info["reason"]
    with pytest.raises(MethodError, match="no mesh-inversion checkpoint installed"):
        create_method("mesh-inversion", "cpu")
    installed = write_checkpoint(
        _isolated_home / "checkpoints" / "mesh-inversion" / "birds", tiny_generator()
    )
    method = create_method("mesh-inversion", "cpu")  # the newest installed checkpoint
    assert isinstance(method, MeshInversionMethod) and method.checkpoint_id == installed.name
    assert {entry["name"]: entry for entry in method_info()}["mesh-inversion"]["available"]
    assert cli_main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "mesh-inversion" in out and f"checkpoint {installed} (default): step 1" in out
    assert cli_main(["methods", "--options"]) == 0
    assert "random_z" in capsys.readouterr().out


def test_inversion_recovers_the_silhouette_of_a_generated_sample(tmp_path: Path) -> None:
    generator = tiny_generator()
    path = write_checkpoint(tmp_path / "tiny", generator)
    method = create_method("mesh-inversion", "cpu", checkpoint=str(path))
    image, mask, z_true, camera_true = generated_photo(generator)
    faces = generator.faces
    with torch.no_grad():
        mean_shape = generator.vertices(generator(torch.zeros_like(z_true)).displacement)[0]
        true_shape = generator.vertices(generator(z_true).displacement)[0]
    assert reprojection_iou(true_shape, faces, camera_true, mask, 64) > 0.99
    # the shapes differ: the mean shape seen by the true camera does not explain the photo
    assert reprojection_iou(mean_shape, faces, camera_true, mask, 64) < 0.8

    calls: list[tuple[float, str]] = []
    result = method.reconstruct(
        image, mask, parse_options("mesh-inversion", SMALL), lambda f, s: calls.append((f, s))
    )
    report = result.report
    extra = report.extra
    assert report.silhouette_iou is not None and report.silhouette_iou >= 0.85
    assert extra["z_search"]["tried"] == 8 and extra["z_search"]["silhouette_iou"] < report.silhouette_iou
    assert len(extra["stage_losses"]) == 2 and extra["stage_losses"][-1] < extra["chosen_z_loss"]
    assert extra["final_terms"]["total"] <= extra["chosen_z_loss"]
    assert extra["vgg_weights"] == "random" and extra["texture"] == "generated"
    assert extra["settings"] == {"render_size": 64, "random_z": 8, "stages": 2, "stage_iterations": 20}
    assert set(report.timings) == {"pose", "z_search", "stage_1", "stage_2", "texture"}
    assert report.template == TEMPLATE_ID and report.checkpoint == path.name
    assert (result.mesh.num_vertices, result.mesh.num_faces) == (482, 960)
    assert tuple(result.mesh.texture.shape) == (32, 32, 3)
    shape = [fraction for fraction, stage in calls if stage == "shape"]
    assert shape[0] == 0.0 and shape[-1] == 1.0 and shape == sorted(shape) and len(shape) > 40
    assert [fraction for fraction, stage in calls if stage == "texture"] == [0.0, 1.0]
    # the same seed gives the same search
    again = method.reconstruct(image, mask, parse_options("mesh-inversion", FAST), no_progress)
    once_more = method.reconstruct(image, mask, parse_options("mesh-inversion", FAST), no_progress)
    assert again.report.extra["z_search"] == once_more.report.extra["z_search"]


@pytest.mark.parametrize(
    ("losses", "terms"),
    [
        ({"texture_loss": "l1"}, {"mask", "pixel_texture"}),
        ({"texture_loss": "perceptual"}, {"mask", "feature_texture"}),
        ({"mask_loss": "iou"}, {"mask", "pixel_texture", "feature_texture"}),
    ],
)
def test_ablation_losses_replace_the_chamfer_terms(
    tmp_path: Path, losses: dict[str, str], terms: set[str]
) -> None:
    """The Table 3 variants invert with the conventional term in place of the Chamfer one: the report
    names it, only its terms are non-zero (prior and smoothness aside), and the loss still falls."""
    generator = tiny_generator()
    path = str(write_checkpoint(tmp_path / "g", generator))
    image, mask, _, _ = generated_photo(generator)
    options = parse_options("mesh-inversion", {**FAST, **losses})
    result = create_method("mesh-inversion", "cpu", checkpoint=path).reconstruct(
        image, mask, options, no_progress
    )
    extra = result.report.extra
    assert extra["losses"] == {
        "texture": "chamfer",
        "mask": "chamfer",
        **{key.removesuffix("_loss"): value for key, value in losses.items()},
    }
    texture_terms = {"mask", "pixel_texture", "feature_texture"}
    non_zero = {name for name in texture_terms if extra["final_terms"][name] != 0.0}
    assert non_zero == terms
    assert extra["stage_losses"][-1] < extra["chosen_z_loss"]
    assert result.report.silhouette_iou is not None and result.report.silhouette_iou > 0.5


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_each_device(tmp_path: Path, device: str) -> None:
    """The whole inversion on ``device`` (CUDA: under scripts/gpu_check.sh), its settings the device's
    defaults but for the sizes; the same search as on the CPU (codes and points are drawn on the CPU)."""
    generator = tiny_generator()
    path = str(write_checkpoint(tmp_path / "g", generator))
    image, mask, _, _ = generated_photo(generator)
    options = parse_options("mesh-inversion", {**FAST, "random_z": 6, "search_batch": 4})
    result = create_method("mesh-inversion", device, checkpoint=path).reconstruct(
        image, mask, options, no_progress
    )
    assert result.report.device.startswith(device) and result.camera.device.type == "cpu"
    assert result.mesh.vertices.device.type == "cpu" and result.mesh.texture.device.type == "cpu"
    assert result.report.silhouette_iou is not None and result.report.silhouette_iou > 0.5
    on_cpu = create_method("mesh-inversion", "cpu", checkpoint=path).reconstruct(
        image, mask, options, no_progress
    )
    assert result.report.extra["z_search"]["chosen"] == on_cpu.report.extra["z_search"]["chosen"]


def test_device_defaults_and_option_bounds() -> None:
    defaults = MeshInversionOptions()
    cpu = InversionSettings.of(defaults, torch.device("cpu"))
    gpu = InversionSettings.of(defaults, torch.device("cuda"))
    assert CPU_DEFAULTS == {"render_size": 64, "random_z": 64}
    assert GPU_DEFAULTS == {"render_size": 256, "random_z": 500}
    assert (cpu.render_size, cpu.random_z, cpu.stage_iterations) == (64, 64, 50)
    assert (gpu.render_size, gpu.random_z, gpu.stage_iterations) == (256, 500, 50)
    given = MeshInversionOptions(render_size=96, random_z=7, stage_iterations=0)
    assert InversionSettings.of(given, torch.device("cuda")) == InversionSettings(96, 7, 0)
    assert defaults.stages == 4 and defaults.mask_weight == 10.0 and defaults.feature_texture_weight == 0.04
    assert defaults.prior_weight == 0.05 and defaults.texture_points == 8096 and not defaults.blend_photo
    for bad in (
        {"render_size": 30}, {"render_size": 66}, {"random_z": 0}, {"stages": 9}, {"z_learning_rate": 0},
        {"mask_weight": -1}, {"mask_weight": math.inf}, {"iterations": 10},
    ):  # fmt: skip
        with pytest.raises(MethodError, match="invalid options for mesh-inversion"):
            parse_options("mesh-inversion", bad)


def test_blend_photo_and_texture_size(tmp_path: Path) -> None:
    generator = tiny_generator()
    method = create_method(
        "mesh-inversion", "cpu", checkpoint=str(write_checkpoint(tmp_path / "g", generator))
    )
    image, mask, _, _ = generated_photo(generator)
    plain = method.reconstruct(
        image, mask, parse_options("mesh-inversion", {**FAST, "texture_size": 48}), no_progress
    )
    blended = method.reconstruct(
        image, mask, parse_options("mesh-inversion", {**FAST, "texture_size": 48, "blend_photo": True}),
        no_progress,
    )  # fmt: skip
    assert tuple(plain.mesh.texture.shape) == tuple(blended.mesh.texture.shape) == (48, 48, 3)
    assert blended.report.extra["texture"] == "generated+photo"
    changed = (plain.mesh.texture - blended.mesh.texture).abs().amax(-1) > 1e-4
    assert 0.02 < float(changed.float().mean()) < 0.7  # the visible part only
    torch.testing.assert_close(plain.mesh.vertices, blended.mesh.vertices)


def test_class_conditional_generator(tmp_path: Path) -> None:
    generator = tiny_generator(num_classes=3)
    method = create_method(
        "mesh-inversion", "cpu", checkpoint=str(write_checkpoint(tmp_path / "c", generator))
    )
    image, mask, _, _ = generated_photo(tiny_generator())
    chosen = method.reconstruct(
        image, mask, parse_options("mesh-inversion", {**FAST, "class_label": 2}), no_progress
    )
    assert chosen.report.extra["class_label"] == 2
    searched = method.reconstruct(image, mask, parse_options("mesh-inversion", FAST), no_progress)
    assert searched.report.extra["class_label"] in (0, 1, 2)
    with pytest.raises(MethodError, match="below the generator's 3 classes"):
        method.reconstruct(
            image, mask, parse_options("mesh-inversion", {**FAST, "class_label": 3}), no_progress
        )


def test_errors_name_the_problem(tmp_path: Path) -> None:
    generator = tiny_generator()
    path = write_checkpoint(tmp_path / "g", generator)
    method = create_method("mesh-inversion", "cpu", checkpoint=str(path))
    image, mask, _, _ = generated_photo(generator)
    options = parse_options("mesh-inversion", FAST)
    with pytest.raises(MaskError, match="empty"):
        method.reconstruct(image, np.zeros_like(mask), options, no_progress)
    with pytest.raises(ValueError, match=r"\(S, S, 3\)"):
        method.reconstruct(image[:, :32], mask, options, no_progress)
    with pytest.raises(MethodError, match="cannot refine"):
        method.reconstruct(image, mask, options, no_progress, init_mesh=icosphere_template(2).mesh)
    with pytest.raises(MethodError, match="unconditional"):
        method.reconstruct(
            image, mask, parse_options("mesh-inversion", {**FAST, "class_label": 1}), no_progress
        )
    with pytest.raises(MethodError, match="no VGG-19 weights"):
        method.reconstruct(
            image, mask, parse_options("mesh-inversion", {**FAST, "vgg_weights": str(tmp_path / "no")}),
            no_progress,
        )  # fmt: skip
    with pytest.raises(MethodError, match="missing"):
        create_method("mesh-inversion", "cpu", checkpoint=str(tmp_path / "missing.safetensors"))
    other = write_checkpoint(tmp_path / "other", generator, method="softras", template="icosphere-642")
    with pytest.raises(MethodError, match="softras"):
        create_method("mesh-inversion", "cpu", checkpoint=str(other))
    bad_config = save_checkpoint(
        tmp_path / "bad",
        generator.state_dict(),
        CheckpointMeta(method="mesh-inversion", template=TEMPLATE_ID, config={"model": {"width": 8}}, step=1),
    )
    with pytest.raises(MethodError, match="usable mesh-inversion network"):
        create_method("mesh-inversion", "cpu", checkpoint=str(bad_config))


def test_photo_pipeline_writes_the_usual_files(tmp_path: Path) -> None:
    generator = tiny_generator()
    method = create_method(
        "mesh-inversion", "cpu", checkpoint=str(write_checkpoint(tmp_path / "g", generator))
    )
    image, mask, _, _ = generated_photo(generator, size=96)
    background = np.where(mask[..., None], image, 1.0)
    rgba = np.concatenate([background, mask[..., None].astype(np.float32)], axis=-1)
    photo = tmp_path / "photo.png"
    Image.fromarray((rgba * 255).round().astype(np.uint8)).save(photo)
    reconstruction = reconstruct_photo(method, photo, options=parse_options("mesh-inversion", FAST))
    written = export(reconstruction, tmp_path / "out", "photo")
    assert set(written) == {"glb", "obj", "mtl", "texture", "preview", "mask", "report"}
    assert all(path.is_file() for path in written.values())
    loaded = load_glb(written["glb"])
    assert loaded.num_faces == 960 and tuple(loaded.texture.shape) == (32, 32, 3)
    report = json.loads(written["report"].read_text())
    assert report["method"] == "mesh-inversion" and report["template"] == TEMPLATE_ID
    assert report["extra"]["vgg_weights"] == "random"
