"""MeshInversion's generator and UV critic: shapes, the template at initialisation, symmetry, conditioning,
the mesh of a sample, config checks, rebuilding from a config dump, and devices."""

from __future__ import annotations

import pytest
import torch

from backend.config import ConfigError
from backend.geometry.templates import mirror_texture, uv_sphere_template
from backend.models.mesh_inversion import (
    TEMPLATE_ID,
    GeneratorOutput,
    MeshGenerator,
    MeshInversionModelConfig,
    UvDiscriminator,
    build_generator,
)
from tests.devices import DEVICES

SMALL = MeshInversionModelConfig(z_dim=8, mesh_size=16, texture_size=32, width=4)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _randomize_displacement_head(generator: MeshGenerator) -> None:
    torch.nn.init.normal_(generator.displacement_head.conv.weight, std=0.05)


def test_shapes_and_the_template_at_initialisation() -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL)
    output = generator(torch.randn(3, 8))
    assert isinstance(output, GeneratorOutput)
    assert output.displacement.shape == (3, 3, 16, 16) and output.texture.shape == (3, 3, 32, 32)
    assert (output.texture >= 0).all() and (output.texture <= 1).all()
    assert TEMPLATE_ID == "uvsphere-482"
    vertices = generator.vertices(output.displacement)
    template = uv_sphere_template()
    assert vertices.shape == (3, 482, 3)
    torch.testing.assert_close(vertices[1], template.mesh.vertices, atol=0, rtol=0)  # zero-initialised head
    assert torch.equal(generator.faces, template.mesh.faces) and generator.face_uvs.shape == (960, 3)
    assert generator.uvs.shape == (559, 2)
    # the template buffers are not weights
    assert not any(name in generator.state_dict() for name in ("faces", "uvs", "face_uvs"))


def test_every_parameter_gets_a_gradient_from_both_outputs() -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL)
    output = generator(torch.randn(2, 8))
    (generator.vertices(output.displacement).pow(2).sum() + output.texture.sum()).backward()
    missing = [
        name for name, p in generator.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_symmetric_outputs_are_mirror_images() -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL)
    _randomize_displacement_head(generator)
    output = generator(torch.randn(2, 8))
    texture = output.texture.permute(0, 2, 3, 1)  # (B, T, T, 3)
    torch.testing.assert_close(mirror_texture(texture), texture, atol=0, rtol=0)
    vertices = generator.vertices(output.displacement)  # (B, V, 3)
    assert output.displacement.abs().max() > 1e-3
    mirrored = vertices[:, generator.template.mirror_index] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirrored, vertices, atol=1e-5, rtol=0)


def test_an_asymmetric_generator_is_not_forced_symmetric() -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL.model_copy(update={"symmetric": False}))
    _randomize_displacement_head(generator)
    output = generator(torch.randn(2, 8))
    assert not torch.allclose(output.texture.flip(-1), output.texture)
    vertices = generator.vertices(output.displacement)
    mirrored = vertices[:, generator.template.mirror_index] * torch.tensor([-1.0, 1.0, 1.0])
    assert not torch.allclose(mirrored, vertices, atol=1e-4)


def test_class_conditional_generator_needs_labels_in_range() -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL.model_copy(update={"num_classes": 3})).eval()
    z = torch.randn(1, 8).expand(2, 8)
    output = generator(z, torch.tensor([0, 2]))
    assert not torch.allclose(output.texture[0], output.texture[1])
    with pytest.raises(ValueError, match="class-conditional"):
        generator(z)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2"):
        generator(z, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        MeshGenerator(SMALL)(z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 8\)"):
        generator(torch.randn(2, 5), torch.tensor([0, 1]))


def test_texture_as_large_as_the_mesh_map() -> None:
    generator = MeshGenerator(MeshInversionModelConfig(z_dim=4, mesh_size=8, texture_size=8, width=2))
    output = generator(torch.randn(2, 4))
    assert output.displacement.shape == (2, 3, 8, 8) and output.texture.shape == (2, 3, 8, 8)


def test_mesh_of_a_sample_is_a_cpu_textured_mesh() -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL).eval()
    _randomize_displacement_head(generator)
    output = generator(torch.randn(2, 8))
    mesh = generator.mesh(output, index=1)
    assert mesh.device == torch.device("cpu")
    assert mesh.num_vertices == 482 and mesh.num_faces == 960 and mesh.texture.shape == (32, 32, 3)
    torch.testing.assert_close(mesh.vertices, generator.vertices(output.displacement)[1].detach())
    torch.testing.assert_close(mesh.texture, output.texture[1].permute(1, 2, 0).detach())
    with pytest.raises(IndexError):
        generator.mesh(output, index=2)


@pytest.mark.parametrize(
    ("field", "value"),
    [("mesh_size", 12), ("mesh_size", 4), ("texture_size", 8), ("texture_size", 48), ("width", 0),
     ("z_dim", 0), ("num_classes", -1)],
)  # fmt: skip
def test_config_refuses_bad_sizes(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"model.{field}"):
        MeshInversionModelConfig.model_validate({"mesh_size": 16, field: value})


def test_build_generator_from_a_config_dump_loads_the_weights() -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL).eval()
    _randomize_displacement_head(generator)
    rebuilt = build_generator(SMALL.model_dump(mode="json"))
    rebuilt.load_state_dict(generator.state_dict())
    rebuilt.eval()
    z = torch.randn(2, 8)
    torch.testing.assert_close(rebuilt(z).texture, generator(z).texture)
    torch.testing.assert_close(rebuilt(z).displacement, generator(z).displacement)
    with pytest.raises(ConfigError, match="unknown config key"):
        build_generator({"depth": 3})


def test_uv_discriminator_scores_two_scales() -> None:
    torch.manual_seed(0)
    critic = UvDiscriminator(mesh_size=16, texture_size=64, base_channels=4)
    displacement, texture = torch.randn(2, 3, 16, 16), torch.rand(2, 3, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
    packed = critic.pack(displacement, texture, mask)
    assert packed.shape == (2, 7, 64, 64)
    torch.testing.assert_close(packed[:, :3], texture * mask)
    logits = critic(displacement, texture, mask)
    assert critic.num_scales == 2 and logits.shape[:2] == (2, 2)
    torch.testing.assert_close(logits, critic.score(packed))
    # unmasked texels do not change the scores
    changed = texture + (1 - mask) * torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(critic(displacement, changed, mask), logits)
    # gradients reach both generator outputs
    displacement.requires_grad_(True)
    texture.requires_grad_(True)
    critic(displacement, texture, mask).sum().backward()
    assert displacement.grad is not None and displacement.grad.abs().sum() > 0
    assert texture.grad is not None and texture.grad.abs().sum() > 0
    single = UvDiscriminator(mesh_size=16, texture_size=16, base_channels=4)
    assert single.num_scales == 1
    assert single(displacement[:, :, :, :], torch.rand(2, 3, 16, 16), torch.ones(2, 1, 16, 16)).shape[1] == 1
    with pytest.raises(ValueError, match="displacement must have shape"):
        critic(torch.randn(2, 3, 8, 8), texture, mask)
    with pytest.raises(ValueError, match="texture and mask must have shapes"):
        critic(displacement, texture, mask[:, :, :32])


@pytest.mark.device
@pytest.mark.parametrize("device", DEVICES)
def test_generator_runs_on_the_device(device: str) -> None:
    torch.manual_seed(0)
    generator = MeshGenerator(SMALL).to(device)
    _randomize_displacement_head(generator)
    z = generator.sample_latent(2)
    assert z.device.type == torch.device(device).type
    output = generator(z)
    vertices = generator.vertices(output.displacement)
    assert vertices.device.type == z.device.type and generator.faces.device.type == z.device.type
    assert generator.mesh(output).device == torch.device("cpu")
    critic = UvDiscriminator(16, 32, 4).to(device)
    assert (
        critic(output.displacement, output.texture, torch.ones(2, 1, 32, 32, device=device)).isfinite().all()
    )
