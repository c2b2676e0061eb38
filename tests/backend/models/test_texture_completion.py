"""The texture generator, the PatchGAN and ``complete_texture``: shapes, the PatchGAN's receptive field
against a gradient oracle, mask-aware shrinking against a naive loop, and completion that keeps every known
texel bit for bit on small, non-square and large (real) textures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.checkpoints import CheckpointMeta, canonical_method, default_checkpoint, save_checkpoint
from backend.methods.checkpointed import load_method_network
from backend.models.texture_completion import (
    TEXTURE_METHOD,
    TEXTURE_TEMPLATE,
    PatchDiscriminator,
    TextureGenerator,
    TextureGeneratorConfig,
    build_texture_generator,
    complete_texture,
    downsample_known,
    working_shape,
)

SPOT_TEXTURE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "meshes" / "spot"
SMALL = TextureGeneratorConfig(image_size=32, base_channels=8, depth=3, working_size=64)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def small_generator(**changes: object) -> TextureGenerator:
    torch.manual_seed(0)
    settings = {**SMALL.model_dump(mode="json"), **changes}
    return TextureGenerator(TextureGeneratorConfig.model_validate(settings)).eval()


def test_names_and_config_round_trip() -> None:
    assert TEXTURE_METHOD == "texture-completion" and TEXTURE_TEMPLATE == "texture-atlas"
    config = TextureGeneratorConfig(image_size=64, base_channels=4, depth=2, norm="none", noise=True)
    assert TextureGeneratorConfig.model_validate(config.model_dump(mode="json")) == config
    assert config.in_channels == 5 and SMALL.in_channels == 4
    with pytest.raises(ValueError, match=r"unknown config key\(s\) colour for TextureGeneratorConfig"):
        TextureGeneratorConfig.model_validate({"colour": 3})
    with pytest.raises(ValueError, match="image_size >= 128"):
        TextureGeneratorConfig(image_size=64, depth=6)
    with pytest.raises(ValueError, match="norm"):
        TextureGeneratorConfig(norm="batch")  # type: ignore[arg-type]
    built = build_texture_generator(SMALL.model_dump(mode="json"))
    assert isinstance(built, TextureGenerator) and built.config == SMALL


@pytest.mark.parametrize(("height", "width"), [(32, 32), (40, 56), (7, 12)])
def test_generator_gives_colours_for_every_texel(height: int, width: int) -> None:
    generator = small_generator()
    colors = torch.rand(2, 3, height, width)
    known = (torch.rand(2, 1, height, width) > 0.5).float()
    output = generator(colors, known)
    assert output.shape == (2, 3, height, width)
    assert torch.isfinite(output).all() and output.min() >= 0 and output.max() <= 1
    # unknown colours are ignored: changing them changes nothing
    other = torch.where(known > 0, colors, torch.rand_like(colors))
    assert torch.equal(generator(other, known), output)


def test_generator_noise_channel() -> None:
    generator = small_generator(noise=True)
    colors, known = torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    with pytest.raises(ValueError, match="noise"):
        generator(colors, known)
    first = generator(colors, known, torch.randn(1, 1, 32, 32))
    second = generator(colors, known, torch.randn(1, 1, 32, 32))
    assert first.shape == (1, 3, 32, 32) and not torch.equal(first, second)
    with pytest.raises(ValueError, match="without a noise channel"):
        small_generator()(colors, known, torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="known must have shape"):
        small_generator()(colors, torch.ones(1, 1, 16, 32))


@pytest.mark.parametrize(("layers", "field"), [(1, 16), (2, 34), (3, 70)])
def test_patch_discriminator_shapes_and_receptive_field(layers: int, field: int) -> None:
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(3, 4, layers, norm="none").double()
    assert discriminator.receptive_field == field
    size = 128
    images = torch.rand(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    scores = discriminator(images)
    expected = size // 2**layers - 2
    assert scores.shape == (1, 1, expected, expected)
    # oracle: the input pixels a central logit depends on (instance norm would couple every pixel)
    centre = expected // 2
    (gradient,) = torch.autograd.grad(scores[0, 0, centre, centre], images)
    rows = gradient.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    columns = gradient.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
    assert int(rows.max() - rows.min()) + 1 == field
    assert int(columns.max() - columns.min()) + 1 == field
    with pytest.raises(ValueError, match="expected images"):
        discriminator(torch.rand(1, 3, 2 ** (layers + 2) - 1, 64, dtype=torch.float64))


def test_patch_discriminator_with_instance_norm_on_small_crops() -> None:
    discriminator = PatchDiscriminator(3, 8, 2)
    assert discriminator(torch.rand(3, 3, 32, 32)).shape == (3, 1, 6, 6)


def test_downsample_known_matches_a_naive_loop() -> None:
    rng = np.random.default_rng(1)
    colors = rng.random((2, 3, 12, 8)).astype(np.float32)
    known = rng.random((2, 1, 12, 8)) > 0.4
    small, small_known = downsample_known(torch.from_numpy(colors), torch.from_numpy(known).float(), (3, 2))
    assert small.shape == (2, 3, 3, 2) and small_known.shape == (2, 1, 3, 2)
    for b in range(2):
        for i in range(3):
            for j in range(2):
                block = known[b, 0, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
                values = colors[b, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4][:, block]  # (3, n)
                expected = values.mean(axis=1) if block.any() else np.zeros(3)
                np.testing.assert_allclose(small[b, :, i, j].numpy(), expected, rtol=1e-5, atol=1e-6)
                assert bool(small_known[b, 0, i, j]) == (block.mean() >= 0.5)


def test_working_shape_keeps_the_aspect_and_never_enlarges() -> None:
    assert working_shape(1024, 1024, 256) == (256, 256)
    assert working_shape(300, 500, 64) == (38, 64)
    assert working_shape(40, 20, 256) == (40, 20)


def _known_pattern(height: int, width: int, seed: int) -> np.ndarray:
    """Known texels as an atlas has them: a few rectangular charts, partly known."""
    rng = np.random.default_rng(seed)
    known = np.zeros((height, width), bool)
    for _ in range(6):
        top, left = rng.integers(0, height - height // 4), rng.integers(0, width - width // 4)
        known[top : top + height // 4, left : left + width // 4] = True
    return known & (rng.random((height, width)) > 0.1)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (300, 500), (130, 70)])
def test_complete_texture_keeps_known_texels_and_fills_the_rest(height: int, width: int) -> None:
    generator = small_generator()
    rng = np.random.default_rng(2)
    colors = rng.random((height, width, 3)).astype(np.float32)
    known = _known_pattern(height, width, 3)
    colors[~known] = np.nan  # whatever lies under unknown texels is ignored
    result = complete_texture(generator, colors, known, "cpu")
    assert result.shape == (height, width, 3) and result.dtype == np.float32
    assert np.array_equal(result[known], colors[known])  # bit for bit
    filled = result[~known]
    assert np.isfinite(filled).all() and filled.min() >= 0 and filled.max() <= 1


def test_complete_texture_at_working_size_is_the_generator_output() -> None:
    generator = small_generator()
    rng = np.random.default_rng(4)
    colors = rng.random((48, 40, 3)).astype(np.float32)
    known = rng.random((48, 40)) > 0.5
    result = complete_texture(generator, colors, known, "cpu")
    with torch.no_grad():
        direct = generator(
            torch.from_numpy(colors * known[..., None]).permute(2, 0, 1)[None],
            torch.from_numpy(known)[None, None].float(),
        )[0].permute(1, 2, 0).numpy()  # fmt: skip
    np.testing.assert_allclose(result[~known], direct[~known], atol=1e-6)


def test_complete_texture_edge_cases_and_errors() -> None:
    generator = small_generator(noise=True)
    colors = np.random.default_rng(5).random((20, 30, 3)).astype(np.float32)
    all_known = np.ones((20, 30), bool)
    assert np.array_equal(complete_texture(generator, colors, all_known, "cpu"), colors)
    nothing = np.zeros((20, 30), bool)
    empty = complete_texture(generator, colors, nothing, "cpu")
    assert np.isfinite(empty).all() and empty.min() >= 0 and empty.max() <= 1
    some = nothing.copy()
    some[5:10] = True
    first = complete_texture(generator, colors, some, "cpu", working_size=16)
    assert np.array_equal(first, complete_texture(generator, colors, some, "cpu", working_size=16))  # seeded
    with pytest.raises(TypeError, match="boolean"):
        complete_texture(generator, colors, some.astype(np.float32), "cpu")
    with pytest.raises(ValueError, match="known has shape"):
        complete_texture(generator, colors, some[:10], "cpu")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        complete_texture(generator, colors[..., :2], some, "cpu")
    bad = colors.copy()
    bad[6, 6] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        complete_texture(generator, bad, some, "cpu")


def test_complete_texture_on_a_real_1024_texture() -> None:
    """Spot's 1024 x 1024 texture (SoftRas's test data) with a third of it hidden, at working size 256."""
    files = sorted(SPOT_TEXTURE.glob("*.png")) if SPOT_TEXTURE.is_dir() else []
    if not files:
        pytest.skip(f"no real texture in {SPOT_TEXTURE}")
    colors = np.asarray(Image.open(files[0]).convert("RGB"), dtype=np.float32) / 255
    height, width = colors.shape[:2]
    known = np.ones((height, width), bool)
    known[:, width // 3 : 2 * width // 3] = False
    generator = small_generator(working_size=256)
    result = complete_texture(generator, colors, known, torch.device("cpu"))
    assert result.shape == colors.shape and np.array_equal(result[known], colors[known])
    assert np.isfinite(result).all() and result.min() >= 0 and result.max() <= 1


def test_checkpoints_of_the_former_method_id_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator saved as method "pointcloud-texture" in the old installed folder is found and loaded."""
    monkeypatch.setenv("MONO2MESH_HOME", str(tmp_path))
    assert canonical_method("pointcloud-texture") == TEXTURE_METHOD
    generator = small_generator()
    settings = SMALL.model_dump(mode="json")
    meta = CheckpointMeta("pointcloud-texture", TEXTURE_TEMPLATE, config={"model": settings})
    saved = save_checkpoint(
        tmp_path / "checkpoints" / "pointcloud-texture" / "old", generator.state_dict(), meta
    )
    assert default_checkpoint(TEXTURE_METHOD) == saved
    loaded, name = load_method_network(
        TEXTURE_METHOD, None, TEXTURE_TEMPLATE, torch.device("cpu"), build_texture_generator
    )
    assert name == "old.safetensors" and loaded.config == SMALL
    for key, value in generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
