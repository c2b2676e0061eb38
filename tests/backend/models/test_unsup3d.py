"""Unsup3d's networks and image formation: output shapes and ranges, the reference's layer sizes, config
checks and the round trip through a dump; shading against the reference's formulas written out in its own
frame and against analytic normals; the warp against exact identities (identity view, 180-degree roll,
whole-pixel translations), against the reference's inverse warp, mirror equivariance, gradcheck; the two
branches of one step."""

from __future__ import annotations

import math

import pytest
import torch

from backend.config import ConfigError
from backend.models.unsup3d import (
    TEMPLATE_ID,
    Unsup3dModelConfig,
    Unsup3dNet,
    Unsup3dOutput,
    build_unsup3d,
    depth_normals,
    flip,
    reconstruct,
    shade,
    warp_to_view,
)
from tests.devices import DEVICES

FOV = 10.0


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _random_depth(batch: int, size: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Smooth depth maps (B, S, S) in [0.9, 1.1]: a few random waves."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.linspace(-1.0, 1.0, size, dtype=dtype)
    y, x = coords[:, None], coords[None, :]
    depth = torch.zeros(batch, size, size, dtype=dtype)
    for b in range(batch):
        a, bx, by, phase = torch.rand(4, generator=generator, dtype=dtype).tolist()
        depth[b] = 1.0 + 0.08 * a * torch.sin(3 * bx * x + 2 * by * y + 6 * phase) * torch.cos(2 * x * y)
    return depth


def _view(values: list[float], batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).expand(batch, 6).clone()


# --- config and networks -------------------------------------------------------------------------------


def test_config_defaults_are_the_reference_values() -> None:
    config = Unsup3dModelConfig()
    assert (config.image_size, config.nf, config.zdim, config.confidence_zdim, config.encoder_nf) == (
        64, 64, 256, 128, 32,
    )  # fmt: skip
    assert (config.depth_min, config.depth_max, config.fov) == (0.9, 1.1, 10.0)
    assert config.border_depth_value == pytest.approx(1.04)
    assert config.pivot_depth == pytest.approx(1.0) and config.background_depth == pytest.approx(1.2)
    assert (config.rotation_range, config.xy_translation_range, config.z_translation_range) == (
        60.0,
        0.1,
        0.1,
    )
    assert (config.ambient_min, config.ambient_max, config.diffuse_min, config.diffuse_max) == (0, 1, 0, 1)
    assert config.confidence and TEMPLATE_ID == "depthgrid-64"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 48}, "image_size must be a power of two >= 32"),
        ({"image_size": 16}, "image_size must be a power of two >= 32"),
        ({"nf": 24}, "nf must be a positive multiple of 16"),
        ({"zdim": 0}, "zdim must be positive"),
        ({"depth_min": 1.2}, "depth_min < depth_max"),
        ({"border_pixels": 17}, "border_pixels must lie in 0..16"),
        ({"border_depth": 1.5}, "border_depth must lie in"),
        ({"fov": 0.0}, "fov must lie in"),
        ({"z_translation_range": 0.95}, "must be smaller than model.depth_min"),
        ({"diffuse_min": 0.8, "diffuse_max": 0.5}, "diffuse_min <= diffuse_max"),
    ],
)
def test_config_checks_name_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Unsup3dModelConfig(**changes)  # type: ignore[arg-type]


def test_layer_sizes_are_the_reference_tables() -> None:
    """The report's table for the albedo network (12,982,848 parameters); the depth network differs only in
    its last convolution (1 output channel)."""
    net = Unsup3dNet(Unsup3dModelConfig())
    count = {name: sum(p.numel() for p in getattr(net, name).parameters()) for name in (
        "depth_net", "albedo_net", "light_net", "view_net", "confidence_net")}  # fmt: skip
    assert count["albedo_net"] == 12_982_848
    assert count["depth_net"] == 12_982_848 - 2 * 64 * 25
    # Encoder(nf 32): 3*32*16 + 32*64*16 + 64*128*16 + 128*256*16 + 256*256*16 + 256*c_out
    encoder = 16 * (3 * 32 + 32 * 64 + 64 * 128 + 128 * 256 + 256 * 256)
    assert count["light_net"] == encoder + 256 * 4 and count["view_net"] == encoder + 256 * 6


def test_outputs_have_the_documented_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    config = Unsup3dModelConfig()
    net = Unsup3dNet(config)
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64))
    assert out.canon_depth.shape == (2, 64, 64) and out.canon_albedo.shape == (2, 3, 64, 64)
    assert out.light.shape == (2, 4) and out.view.shape == (2, 6)
    assert out.ambient.shape == (2,) and out.diffuse.shape == (2,) and out.light_direction.shape == (2, 3)
    assert out.conf_photometric.shape == (2, 2, 64, 64) and out.conf_perceptual.shape == (2, 2, 16, 16)
    assert out.canon_depth.min() >= 0.9 and out.canon_depth.max() <= 1.1
    # the two leftmost and rightmost columns hold the border depth, the rest varies
    border = out.canon_depth[:, :, [0, 1, 62, 63]]
    assert torch.equal(border, torch.full_like(border, config.border_depth_value))
    assert out.canon_depth[:, :, 2:-2].std() > 0 and out.canon_depth[:, [0, 63], 2:-2].std() > 0
    assert out.canon_albedo.min() >= 0 and out.canon_albedo.max() <= 1
    assert (out.conf_photometric > 0).all() and (out.conf_perceptual > 0).all()
    assert (out.light.abs() <= 1).all() and (out.ambient >= 0).all() and (out.ambient <= 1).all()
    torch.testing.assert_close(out.ambient, (1 + out.light[:, 0]) / 2)
    torch.testing.assert_close(out.diffuse, (1 + out.light[:, 1]) / 2)
    expected = torch.stack([-out.light[:, 2], out.light[:, 3], torch.ones(2)], 1)
    torch.testing.assert_close(out.light_direction, expected / expected.norm(dim=1, keepdim=True))
    assert (out.view[:, :3].abs() <= 60).all() and (out.view[:, 3:].abs() <= 0.1).all()


def test_canonical_depth_is_the_mapped_centred_raw_depth() -> None:
    torch.manual_seed(1)
    config = Unsup3dModelConfig(image_size=32, nf=16, zdim=8, confidence_zdim=8, encoder_nf=4)
    net = Unsup3dNet(config)
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        raw = net.depth_net(images * 2 - 1)[:, 0]
        out = net(images)
    expected = 1.0 + 0.1 * torch.tanh(raw - raw.mean())  # (1 + x) / 2 * 1.1 + (1 - x) / 2 * 0.9
    torch.testing.assert_close(out.canon_depth[:, :, 2:-2], expected[:, :, 2:-2])


def test_smaller_images_and_the_rebuild_from_a_dump() -> None:
    config = Unsup3dModelConfig(
        image_size=32, nf=16, zdim=16, confidence_zdim=8, encoder_nf=8, confidence=False
    )
    net = Unsup3dNet(config).eval()
    dumped = config.model_dump(mode="json")
    rebuilt = build_unsup3d(dumped)
    assert rebuilt.config == config
    rebuilt.load_state_dict(net.state_dict())
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        first, second = net(images), rebuilt(images)
    assert first.conf_photometric.shape == (2, 2, 32, 32) and first.conf_perceptual.shape == (2, 2, 8, 8)
    for name in ("canon_depth", "canon_albedo", "view", "light_direction"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    with pytest.raises(ConfigError, match="unknown config key"):
        build_unsup3d({**dumped, "depth": 3})
    with pytest.raises(ValueError, match="images must have shape"):
        net(torch.rand(2, 3, 64, 64))


# --- flip and shading ----------------------------------------------------------------------------------


def test_flip_is_exact_and_involutive() -> None:
    tensor = torch.rand(2, 3, 4, 5)
    flipped = flip(tensor)
    for j in range(5):
        assert torch.equal(flipped[..., j], tensor[..., 4 - j])
    assert torch.equal(flip(flipped), tensor)


def _reference_shading(
    depth: list[list[float]], light: tuple[float, float, float, float], fov: float
) -> list:
    """The reference's shading in its own frame (x right, y down, z forward), with plain floats: grid
    points d K^-1 (j, i, 1), normal tu x tv (central differences; (0, 0, 1) on the border), light
    normalize(dx, dy, 1), ambient + diffuse * max(0, n . l)."""
    size = len(depth)
    focal = (size - 1) / 2 / math.tan(math.radians(fov) / 2)
    centre = (size - 1) / 2

    def point(i: int, j: int) -> tuple[float, float, float]:
        d = depth[i][j]
        return (d * (j - centre) / focal, d * (i - centre) / focal, d)

    ambient, diffuse, dx, dy = light
    norm = math.sqrt(dx * dx + dy * dy + 1)
    direction = (dx / norm, dy / norm, 1 / norm)
    result = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(size):
            normal = (0.0, 0.0, 1.0)
            if 0 < i < size - 1 and 0 < j < size - 1:
                tu = [a - b for a, b in zip(point(i, j + 1), point(i, j - 1), strict=True)]
                tv = [a - b for a, b in zip(point(i + 1, j), point(i - 1, j), strict=True)]
                cross = (
                    tu[1] * tv[2] - tu[2] * tv[1],
                    tu[2] * tv[0] - tu[0] * tv[2],
                    tu[0] * tv[1] - tu[1] * tv[0],
                )
                length = math.sqrt(sum(c * c for c in cross))
                normal = (cross[0] / length, cross[1] / length, cross[2] / length)
            cosine = max(0.0, sum(n * d for n, d in zip(normal, direction, strict=True)))
            result[i][j] = ambient + diffuse * cosine
    return result


def test_shading_matches_the_reference_formulas_in_its_frame() -> None:
    """Our light direction (-dx, dy, 1) in the project's frame gives the reference's (dx, dy, 1) shading."""
    depth = _random_depth(1, 7, seed=3, dtype=torch.float64) + 0.05 * torch.rand(1, 7, 7, dtype=torch.float64)
    for light in [(0.3, 0.6, 0.4, -0.7), (0.1, 0.9, -1.0, 0.2), (0.0, 1.0, 0.0, 0.0)]:
        ambient, diffuse, dx, dy = light
        direction = torch.tensor([[-dx, dy, 1.0]], dtype=torch.float64)
        direction = direction / direction.norm()
        albedo = torch.rand(1, 3, 7, 7, dtype=torch.float64)
        result = shade(albedo, depth, torch.tensor([ambient]), torch.tensor([diffuse]), direction, 20.0)
        expected = torch.tensor(_reference_shading(depth[0].tolist(), light, 20.0), dtype=torch.float64)
        torch.testing.assert_close(result.shading[0, 0], expected)
        torch.testing.assert_close(result.image, albedo * expected)


def test_flat_depth_lit_from_the_camera_gives_ambient_plus_diffuse() -> None:
    albedo = torch.rand(2, 3, 8, 8)
    result = shade(
        albedo, torch.full((2, 8, 8), 1.0), torch.tensor([0.2, 0.5]), torch.tensor([0.7, 0.25]),
        torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), FOV,
    )  # fmt: skip
    torch.testing.assert_close(
        result.normal, torch.tensor([0.0, 0.0, 1.0])[None, :, None, None].expand(2, 3, 8, 8)
    )
    expected = torch.tensor([0.9, 0.75])[:, None, None, None]
    torch.testing.assert_close(result.shading, expected.expand(2, 1, 8, 8))
    torch.testing.assert_close(result.image, albedo * expected)


def test_normals_of_a_tilted_plane_are_the_plane_normal() -> None:
    size, fov = 9, 30.0
    normal = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    normal = normal / normal.norm()
    focal = (size - 1) / 2 / math.tan(math.radians(fov) / 2)
    centre = (size - 1) / 2
    cols = torch.arange(size, dtype=torch.float64)
    ray_x = ((cols - centre) / focal)[None, :].expand(size, size)  # (S, S) view-space ray (x, y, -1)
    ray_y = (-(cols - centre) / focal)[:, None].expand(size, size)
    offset = -normal[2]  # the plane n . p = offset passes through (0, 0, -1)
    depth = offset / (normal[0] * ray_x + normal[1] * ray_y - normal[2])  # (S, S)
    normals = depth_normals(depth[None], fov)  # (1, 3, S, S)
    inner = normals[0, :, 1:-1, 1:-1].permute(1, 2, 0)
    torch.testing.assert_close(inner, normal.expand_as(inner))
    edge = normals[0, :, 0, :].T
    torch.testing.assert_close(edge, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(edge))


def test_shading_is_mirror_equivariant() -> None:
    """Flipping depth and albedo and mirroring the light (x -> -x) flips the shaded image."""
    depth = _random_depth(2, 10, seed=4, dtype=torch.float64)
    albedo = torch.rand(2, 3, 10, 10, dtype=torch.float64)
    light = torch.nn.functional.normalize(
        torch.tensor([[0.4, 0.3, 1.0], [-0.6, -0.1, 1.0]], dtype=torch.float64)
    )
    mirror = light * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    ambient, diffuse = torch.tensor([0.3, 0.1]), torch.tensor([0.6, 0.8])
    first = shade(albedo, depth, ambient, diffuse, light, FOV)
    second = shade(flip(albedo), flip(depth), ambient, diffuse, mirror, FOV)
    torch.testing.assert_close(second.image, flip(first.image))
    torch.testing.assert_close(
        second.normal, flip(first.normal) * torch.tensor([-1.0, 1.0, 1.0])[:, None, None]
    )


# --- the warp ------------------------------------------------------------------------------------------


def test_the_identity_view_reproduces_the_image_and_the_depth() -> None:
    torch.manual_seed(5)
    image = torch.rand(3, 3, 32, 32)
    depth = torch.cat([_random_depth(2, 32, seed=6), torch.full((1, 32, 32), 1.0)])
    warp = warp_to_view(image, depth, torch.zeros(3, 6), FOV)
    # the outline's pixel centres are covered on the right and bottom only (the tie-break offset)
    assert (warp.mask[:, :, 1:, 1:] == 1).all() and (warp.mask[:, :, 0, :] == 0).all()
    torch.testing.assert_close(warp.image[:, :, 1:, 1:], image[:, :, 1:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(warp.depth[:, 1:, 1:], depth[:, 1:, 1:], atol=1e-6, rtol=0)
    assert (warp.image[:, :, 0] == 0).all()


def test_a_half_turn_about_the_optical_axis_rotates_the_image() -> None:
    """A roll of 180 degrees about the pivot (on the optical axis) maps each ray to the opposite pixel, for
    any depth: the image and the depth turn by 180 degrees."""
    image = torch.rand(2, 3, 16, 16)
    depth = torch.cat([torch.full((1, 16, 16), 1.0), _random_depth(1, 16, seed=7)])
    warp = warp_to_view(image, depth, _view([0, 0, 180, 0, 0, 0], 2), FOV)
    turned = image.flip(-1).flip(-2)
    torch.testing.assert_close(warp.image[..., 1:-1, 1:-1], turned[..., 1:-1, 1:-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(warp.depth[:, 1:-1, 1:-1], depth.flip(-1).flip(-2)[:, 1:-1, 1:-1])


@pytest.mark.parametrize(("axis", "pixels"), [(0, 3), (1, 2), (0, -4)])
def test_whole_pixel_translations_shift_the_image(axis: int, pixels: int) -> None:
    """A flat depth d moved by k d / f along the reference's x (right) or y (DOWN) shifts the image by k
    pixels to the right or down."""
    size, depth_value = 16, 1.05
    focal = (size - 1) / 2 / math.tan(math.radians(FOV) / 2)
    view = torch.zeros(1, 6, dtype=torch.float64)
    view[0, 3 + axis] = pixels * depth_value / focal
    image = torch.rand(1, 3, size, size, dtype=torch.float64)
    warp = warp_to_view(image, torch.full((1, size, size), depth_value, dtype=torch.float64), view, FOV)
    dim = -1 if axis == 0 else -2
    shifted = image.roll(pixels, dims=dim)
    keep = slice(max(pixels, 0) + 1, size + min(pixels, 0) - 1)
    inner = (
        (slice(None), slice(None), slice(1, -1), keep)
        if axis == 0
        else (slice(None), slice(None), keep, slice(1, -1))
    )
    torch.testing.assert_close(warp.image[inner], shifted[inner])
    assert (warp.mask[inner] == 1).all()


def _rotation(angles_degrees: list[float]) -> list[list[float]]:
    """R_z R_y R_x of the reference (angles in degrees), plain floats."""
    ax, ay, az = (math.radians(a) for a in angles_degrees)
    rx = [[1.0, 0.0, 0.0], [0.0, math.cos(ax), -math.sin(ax)], [0.0, math.sin(ax), math.cos(ax)]]
    ry = [[math.cos(ay), 0.0, math.sin(ay)], [0.0, 1.0, 0.0], [-math.sin(ay), 0.0, math.cos(ay)]]
    rz = [[math.cos(az), -math.sin(az), 0.0], [math.sin(az), math.cos(az), 0.0], [0.0, 0.0, 1.0]]

    def mul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
        return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]

    return mul(rz, mul(ry, rx))


def test_the_sample_grid_is_the_reference_inverse_warp_of_the_view_depth() -> None:
    """For each covered pixel, the reference's ``get_inv_warped_2d_grid`` written out in its frame: the view
    depth D unprojected as D K^-1 (j, i, 1), translated by -t, rotated by R^T about (0, 0, pivot),
    projected by K and normalised by (S - 1) gives our sample position."""
    size, pivot = 12, 1.0
    depth = _random_depth(1, size, seed=8, dtype=torch.float64)
    angles, translation = [12.0, -25.0, 8.0], [0.01, -0.02, 0.07]
    view = torch.tensor([[*angles, *translation]], dtype=torch.float64)
    warp = warp_to_view(torch.rand(1, 3, size, size, dtype=torch.float64), depth, view, FOV, pivot)
    rotation = _rotation(angles)
    focal = (size - 1) / 2 / math.tan(math.radians(FOV) / 2)
    centre = (size - 1) / 2
    covered = 0
    for i in range(size):
        for j in range(size):
            if warp.mask[0, 0, i, j] == 0:
                continue
            covered += 1
            d = float(warp.depth[0, i, j])
            point = [
                d * (j - centre) / focal - translation[0],
                d * (i - centre) / focal - translation[1],
                d - translation[2],
            ]
            point[2] -= pivot
            back = [sum(rotation[k][m] * point[k] for k in range(3)) for m in range(3)]  # R^T p
            back[2] += pivot
            u, v = focal * back[0] / back[2] + centre, focal * back[1] / back[2] + centre
            expected = torch.tensor([u / (size - 1) * 2 - 1, v / (size - 1) * 2 - 1], dtype=torch.float64)
            torch.testing.assert_close(warp.grid[0, i, j], expected)
    assert covered > size * size // 2


def test_the_warp_is_mirror_equivariant() -> None:
    """Flipped canonical image and depth seen from the mirrored view (rx, -ry, -rz, -tx, ty, tz) give the
    flipped warp (the symmetric branch's geometry), away from the outline."""
    image = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    depth = _random_depth(2, 16, seed=9, dtype=torch.float64)
    view = torch.tensor(
        [[10.0, 20.0, -5.0, 0.02, -0.03, 0.05], [-15.0, -8.0, 12.0, -0.04, 0.01, -0.06]], dtype=torch.float64
    )
    mirrored = view * torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    first = warp_to_view(image, depth, view, FOV)
    second = warp_to_view(flip(image), flip(depth), mirrored, FOV)
    inner = first.mask * flip(second.mask)
    inner = inner * inner.roll(1, -1) * inner.roll(-1, -1) * inner.roll(1, -2) * inner.roll(-1, -2)  # eroded
    assert inner.sum() > 200
    torch.testing.assert_close(flip(second.image) * inner, first.image * inner, atol=1e-6, rtol=0)
    torch.testing.assert_close(flip(second.depth) * inner[:, 0], first.depth * inner[:, 0], atol=1e-6, rtol=0)


def test_gradients_reach_the_image_the_depth_and_the_view() -> None:
    """gradcheck in float64 on a 6 x 6 grid seen from a generic view."""
    image = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    depth = (_random_depth(1, 6, seed=10, dtype=torch.float64)).requires_grad_(True)
    view = torch.tensor([[7.0, -11.0, 4.0, 0.01, 0.02, -0.03]], dtype=torch.float64, requires_grad=True)

    def warped(
        image: torch.Tensor, depth: torch.Tensor, view: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        result = warp_to_view(image, depth, view, 30.0, background_depth=1.2)
        return result.image, result.depth

    assert torch.autograd.gradcheck(warped, (image, depth, view), eps=1e-6, atol=1e-5)
    result = warp_to_view(image, depth, view, 30.0)
    result.image.sum().backward()
    assert depth.grad is not None and depth.grad.abs().sum() > 0
    assert view.grad is not None and (view.grad.abs() > 0).all()


def test_half_precision_and_autocast_run_in_float32() -> None:
    image, depth = torch.rand(1, 3, 16, 16), _random_depth(1, 16, seed=11)
    view = _view([5.0, 10.0, -3.0, 0.01, 0.0, 0.02])
    full = warp_to_view(image, depth, view, FOV)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = warp_to_view(image, depth, view, FOV)
    assert mixed.image.dtype == torch.float32 and torch.equal(mixed.image, full.image)
    halved = warp_to_view(image.half(), depth, view, FOV)
    assert halved.image.dtype == torch.float32


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="square"):
        warp_to_view(torch.rand(1, 3, 8, 10), torch.ones(1, 8, 10), torch.zeros(1, 6), FOV)
    with pytest.raises(ValueError, match="view must have shape"):
        warp_to_view(torch.rand(1, 3, 8, 8), torch.ones(1, 8, 8), torch.zeros(1, 5), FOV)


# --- one step's image formation ------------------------------------------------------------------------


def _output(depth: torch.Tensor, albedo: torch.Tensor, view: torch.Tensor) -> Unsup3dOutput:
    batch, size = depth.shape[0], depth.shape[-1]
    light = torch.tensor([[0.2, 0.4, 0.3, -0.5]]).expand(batch, 4)
    direction = torch.nn.functional.normalize(torch.stack([-light[:, 2], light[:, 3], torch.ones(batch)], 1))
    return Unsup3dOutput(
        canon_depth=depth, canon_albedo=albedo, light=light, ambient=(1 + light[:, 0]) / 2,
        diffuse=(1 + light[:, 1]) / 2, light_direction=direction, view=view,
        conf_photometric=torch.ones(batch, 2, size, size),
        conf_perceptual=torch.ones(batch, 2, size // 4, size // 4),
    )  # fmt: skip


def test_reconstruct_is_both_branches_of_shade_then_warp() -> None:
    config = Unsup3dModelConfig(image_size=32, nf=16, zdim=8, confidence_zdim=8, encoder_nf=4)
    depth, albedo = _random_depth(2, 32, seed=12), torch.rand(2, 3, 32, 32)
    view = torch.tensor([[5.0, 20.0, 0.0, 0.02, 0.0, 0.0], [-10.0, -30.0, 5.0, 0.0, 0.03, 0.05]])
    out = _output(depth, albedo, view)
    result = reconstruct(out, config)
    for flipped, image, shading in (
        (False, result.image, result.canon_shading),
        (True, result.flip_image, result.flip_shading),
    ):
        d, a = (flip(depth), flip(albedo)) if flipped else (depth, albedo)
        expected_shading = shade(a, d, out.ambient, out.diffuse, out.light_direction, config.fov)
        torch.testing.assert_close(shading.image, expected_shading.image)
        warp = warp_to_view(expected_shading.image, d, view, config.fov, 1.0, background_depth=1.2)
        torch.testing.assert_close(image, warp.image * result.mask)
        assert ((result.mask == 1) <= (warp.mask == 1)).all()
    assert 0.5 < result.mask.mean() < 1 and not result.mask.requires_grad
    assert (result.depth[result.mask[:, 0] == 0] == 1.2).any()


def test_a_symmetric_object_gives_the_same_image_in_both_branches() -> None:
    config = Unsup3dModelConfig(image_size=32, nf=16, zdim=8, confidence_zdim=8, encoder_nf=4)
    depth = _random_depth(1, 32, seed=13)
    depth = (depth + flip(depth)) / 2
    albedo = torch.rand(1, 3, 32, 32)
    albedo = (albedo + flip(albedo)) / 2
    result = reconstruct(_output(depth, albedo, _view([10.0, 25.0, 5.0, 0.0, 0.02, 0.0])), config)
    torch.testing.assert_close(result.flip_image, result.image)


@pytest.mark.device
@pytest.mark.parametrize("device", DEVICES)
def test_networks_and_image_formation_run_on_the_device(device: str) -> None:
    config = Unsup3dModelConfig(image_size=32, nf=16, zdim=16, confidence_zdim=8, encoder_nf=8)
    net = Unsup3dNet(config).to(device)
    images = torch.rand(2, 3, 32, 32, device=device)
    result = reconstruct(net(images), config)
    assert result.image.device.type == torch.device(device).type
    (result.image.mean() + result.flip_image.mean()).backward()
    for name in ("depth_net", "albedo_net", "light_net", "view_net"):
        grads = [p.grad for p in getattr(net, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, name
