"""The ``unsup3d`` method: checkpoint loading through the registry, the photo pipeline on the face photos,
the relief's topology for each ``close`` and ``mask_cut``, the texture modes, the camera of a turned
view, options, errors, and the method lists of the command line and the server.

The network is tiny and untrained (random weights, ``nf`` 16): it exercises the plumbing. Where the
result must mean something, the method's ``predict`` is replaced by hand-made predictions (a smooth
symmetric dome of depth, a patterned albedo, a light and a view), and the photo is what Unsup3d's own
image formation makes of them (``shade`` + ``warp_to_view``), so the method has to invert it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from backend.checkpoints import CheckpointMeta, save_checkpoint
from backend.cli import main as cli_main
from backend.fitting.report import topology_id
from backend.geometry.camera import quaternion_to_matrix
from backend.geometry.depth_grid import depth_grid_faces, depth_grid_uvs, num_grid_vertices
from backend.geometry.io import load_glb, load_obj
from backend.geometry.templates import icosphere_template
from backend.imaging.errors import MaskError
from backend.methods.base import MethodError, no_progress
from backend.methods.pipeline import export, reconstruct_photo
from backend.methods.registry import create_method, method_info, parse_options
from backend.methods.unsup3d import Unsup3dMethod, Unsup3dOptions
from backend.methods.unsup3d_view import ViewProjection, rotation_quaternion
from backend.models.unsup3d import (
    TEMPLATE_ID,
    Unsup3dModelConfig,
    Unsup3dNet,
    Unsup3dOutput,
    shade,
    warp_to_view,
)
from backend.server.app import create_app
from tests.backend.server.support import TEST_PORT, TOKEN, make_config, png_bytes, submit, wait_for
from tests.devices import DEVICES

FACES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "faces"
HUMAN, CAT = FACES / "human_001_face.png", FACES / "cat_001_cat.png"
SIZE = 64
GRID_VERTICES, GRID_FACES = num_grid_vertices(SIZE, SIZE), 4 * (SIZE - 1) ** 2
SMALL = {"texture_size": 128, "resolution": 64}


pytestmark = pytest.mark.usefixtures("method_home")


def tiny_network() -> Unsup3dNet:
    torch.manual_seed(0)
    config = Unsup3dModelConfig(nf=16, zdim=8, confidence_zdim=8, encoder_nf=4)
    return Unsup3dNet(config).eval()


def write_checkpoint(
    stem: Path, network: Unsup3dNet, method: str = "unsup3d", template: str = TEMPLATE_ID
) -> Path:
    meta = CheckpointMeta(
        method=method, template=template, config={"model": network.config.model_dump(mode="json")}, step=1
    )
    return save_checkpoint(stem, network.state_dict(), meta)


@pytest.fixture
def checkpoint(tmp_path: Path) -> str:
    return str(write_checkpoint(tmp_path / "tiny", tiny_network()))


def photo(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"the photo {path} is missing")
    return path


# -- hand-made predictions --------------------------------------------------------------------------------


def prediction(view: tuple[float, ...] = (0.0,) * 6) -> Unsup3dOutput:
    """A symmetric dome of depth (0.93 in the middle, 1.07 at the corners), a smooth colour pattern
    symmetric about the middle column, light from the upper left, and ``view``."""
    line = torch.linspace(-1, 1, SIZE)
    rows, cols = torch.meshgrid(line, line, indexing="ij")
    depth = 0.93 + 0.07 * (rows**2 + cols**2)
    albedo = torch.stack(
        [0.55 + 0.35 * torch.cos(3 * cols), 0.5 + 0.3 * torch.sin(2.5 * rows), 0.35 + 0.3 * cols.abs()]
    )
    direction = F.normalize(torch.tensor([[-0.3, 0.4, 1.0]]), dim=1)
    return Unsup3dOutput(
        canon_depth=depth[None],
        canon_albedo=albedo[None],
        light=torch.zeros(1, 4),
        ambient=torch.tensor([0.45]),
        diffuse=torch.tensor([0.5]),
        light_direction=direction,
        view=torch.tensor([view]),
        conf_photometric=torch.full((1, 2, SIZE, SIZE), 0.5),
        conf_perceptual=torch.full((1, 2, SIZE // 4, SIZE // 4), 0.5),
    )


def shading(output: Unsup3dOutput) -> torch.Tensor:
    """(1, 1, S, S) the prediction's canonical shading."""
    return shade(output.canon_albedo, output.canon_depth, output.ambient, output.diffuse,
                 output.light_direction, 10.0).shading  # fmt: skip


def rendered(output: Unsup3dOutput) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """What the network's image formation makes of a prediction: the photo (S, S, 3), its mask (S, S)
    and the shaded canonical image (1, 3, S, S)."""
    canonical = output.canon_albedo * shading(output)
    warp = warp_to_view(canonical, output.canon_depth, output.view, 10.0, 1.0)
    image = warp.image[0].permute(1, 2, 0).numpy().astype(np.float32)
    return image, warp.mask[0, 0].numpy() > 0.5, canonical


def predicting(method: Unsup3dMethod, output: Unsup3dOutput) -> Unsup3dMethod:
    """``method`` with its network's predictions replaced by ``output``."""
    method.predict = lambda image: output  # type: ignore[method-assign]
    return method


def disc_mask(size: int, radius: float) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (rows - size / 2 + 0.5) ** 2 + (cols - size / 2 + 0.5) ** 2 <= radius**2


def edge_uses(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, undirected = torch.unique(edges.sort(dim=1).values, dim=0, return_counts=True)
    _, directed = torch.unique(edges, dim=0, return_counts=True)
    return undirected, directed


def watertight(faces: torch.Tensor) -> bool:
    undirected, directed = edge_uses(faces)
    return bool((undirected == 2).all()) and bool((directed == 1).all())


# -- registry, command line, server -----------------------------------------------------------------------


def test_unavailable_without_a_checkpoint_then_listed(
    method_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = {entry["name"]: entry for entry in method_info()}["unsup3d"]
    assert info["needs_checkpoint"] and not info["available"]
    assert "no unsup3d checkpoint installed" in info["reason"]
    assert "mono2mesh-train unsup3d" in info["reason"]
    with pytest.raises(MethodError, match="no unsup3d checkpoint installed"):
        create_method("unsup3d", "cpu")
    installed = write_checkpoint(method_home / "checkpoints" / "unsup3d" / "faces", tiny_network())
    method = create_method("unsup3d", "cpu")  # the newest installed checkpoint
    assert isinstance(method, Unsup3dMethod) and method.checkpoint_id == installed.name
    assert cli_main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "unsup3d" in out and f"checkpoint {installed} (default): step 1" in out
    assert cli_main(["methods", "--options"]) == 0
    assert "mask_cut" in capsys.readouterr().out
    with TestClient(
        create_app(make_config(tmp_path / "jobs")),
        base_url=f"http://127.0.0.1:{TEST_PORT}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        methods = {entry["name"]: entry for entry in client.get("/v1/methods").json()["methods"]}
        assert methods["unsup3d"]["available"] and methods["unsup3d"]["needs_checkpoint"]
        assert [entry["name"] for entry in methods["unsup3d"]["checkpoints"]] == ["faces"]
        assert "close" in methods["unsup3d"]["options_schema"]["properties"]
        # a job through the server: the face photo with no mask is taken whole
        response = submit(client, photo(HUMAN).read_bytes(), method="unsup3d", options={"texture_size": 64},
                          filename="face.png")  # fmt: skip
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"], timeout=120)
        assert job["status"] == "succeeded", job


# -- the photo pipeline -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [HUMAN, CAT], ids=["human", "cat"])
def test_face_photos_become_closed_textured_reliefs(tmp_path: Path, checkpoint: str, path: Path) -> None:
    method = create_method("unsup3d", "cpu", checkpoint=checkpoint)
    result = reconstruct_photo(method, photo(path), options=parse_options("unsup3d", {}))
    written = export(result, tmp_path / "out", path.stem)
    assert set(written) == {"glb", "obj", "mtl", "texture", "preview", "mask", "report"}
    report = json.loads(written["report"].read_text())
    # a tightly framed photo without a mask: taken whole (GrabCut finds nothing or an eye there)
    assert report["photo"]["mask_source"] == "whole" and result.crop.mask.all()
    assert report["method"] == "unsup3d" and report["template"] == TEMPLATE_ID == "depthgrid-64"
    assert report["checkpoint"] == Path(checkpoint).name
    assert set(report["timings"]) >= {"mask", "network", "mesh", "texture", "export", "total"}
    extra = report["extra"]
    assert 0.9 <= extra["depth"]["min"] < extra["depth"]["max"] <= 1.1
    assert (
        set(extra["light"]) == {"ambient", "diffuse", "direction"} and len(extra["light"]["direction"]) == 3
    )
    assert len(extra["view"]["rotation_degrees"]) == 3 and len(extra["view"]["translation"]) == 3
    assert extra["confidence"]["sigma_mean"] > 0 and extra["confidence"]["flip_sigma_mean"] > 0
    assert extra["camera_fit"]["mean_error_px"] < 2.0 and extra["texture"] == "photo"
    # the default: the whole grid (the mask is the whole crop), closed by a mirrored back
    rim = 2 * 4 * (SIZE - 1)
    assert (report["num_vertices"], report["num_faces"]) == (2 * GRID_VERTICES, 2 * GRID_FACES + rim)
    assert extra["mesh"] == {"close": "mirror", "mask_cut": True, "front_faces": GRID_FACES,
                             "rim_faces": rim, "front_vertices": GRID_VERTICES}  # fmt: skip
    assert report["silhouette_iou"] > 0.9
    mesh = result.mesh
    assert watertight(mesh.faces) and tuple(mesh.texture.shape) == (256, 256, 3)
    for loaded in (load_glb(written["glb"]), load_obj(written["obj"])):
        assert (loaded.num_vertices, loaded.num_faces) == (mesh.num_vertices, mesh.num_faces)
        assert tuple(loaded.texture.shape) == (256, 256, 3)
        torch.testing.assert_close(loaded.texture, mesh.texture, atol=0.5 / 255 + 1e-6, rtol=0)
        torch.testing.assert_close(loaded.uvs[loaded.face_uvs], mesh.uvs[mesh.face_uvs])
    # the "photo" texture of a near-frontal view is close to the crop itself
    crop = torch.from_numpy(result.crop.rgb)
    assert float((mesh.texture - crop).abs().mean()) < 0.05


def test_a_given_mask_frames_and_cuts(tmp_path: Path, checkpoint: str) -> None:
    method = create_method("unsup3d", "cpu", checkpoint=checkpoint)
    source = photo(HUMAN)
    mask = Image.new("L", Image.open(source).size, 0)
    ImageDraw.Draw(mask).ellipse((12, 8, 52, 58), fill=255)
    mask_path = tmp_path / "mask.png"
    mask.save(mask_path)
    result = reconstruct_photo(method, source, mask=mask_path, options=parse_options("unsup3d", SMALL))
    assert result.mask_source == "given"
    extra, report = result.reconstruction.report.extra, result.reconstruction.report
    assert 0.3 * GRID_FACES < extra["mesh"]["front_faces"] < 0.95 * GRID_FACES
    assert report.silhouette_iou is not None and report.silhouette_iou > 0.9
    assert watertight(result.mesh.faces)


# -- topology ---------------------------------------------------------------------------------------------


def test_without_the_cut_the_front_is_the_reference_grid(checkpoint: str) -> None:
    method = create_method("unsup3d", "cpu", checkpoint=checkpoint)
    image, mask, _ = rendered(prediction())
    options = parse_options("unsup3d", {**SMALL, "mask_cut": False, "close": "none"})
    result = method.reconstruct(image, disc_mask(SIZE, 12), options, no_progress)
    mesh = result.mesh
    assert (mesh.num_vertices, mesh.num_faces) == (GRID_VERTICES, GRID_FACES) == (8065, 15876)
    assert torch.equal(mesh.faces, depth_grid_faces(SIZE, SIZE, "cpu"))
    assert torch.equal(mesh.uvs, depth_grid_uvs(SIZE, SIZE, "cpu")) and torch.equal(mesh.face_uvs, mesh.faces)
    assert result.report.silhouette_iou is None  # the uncut grid fills the crop: no IoU to report
    # every result without the cut has this layout: textures move between them by copying
    other = method.reconstruct(image[::-1].copy(), mask, options, no_progress)
    assert topology_id(other.mesh) == topology_id(mesh)
    cut = method.reconstruct(image, disc_mask(SIZE, 12), parse_options("unsup3d", {**SMALL, "close": "none"}),
                             no_progress)  # fmt: skip
    assert topology_id(cut.mesh) != topology_id(mesh) and cut.mesh.num_faces < GRID_FACES


@pytest.mark.parametrize("close", ["none", "mirror", "plane"])
def test_each_close_mode_gives_its_documented_topology(checkpoint: str, close: str) -> None:
    method = predicting(create_method("unsup3d", "cpu", checkpoint=checkpoint), prediction())
    image, _, _ = rendered(prediction())
    mask = disc_mask(SIZE, 20)
    result = method.reconstruct(image, mask, parse_options("unsup3d", {**SMALL, "close": close}), no_progress)
    mesh, parts = result.mesh, result.report.extra["mesh"]
    front_vertices, front_faces, rim = parts["front_vertices"], parts["front_faces"], parts["rim_faces"]
    assert 0.3 * GRID_FACES < front_faces < 0.5 * GRID_FACES  # the disc covers about 0.31 pi of the crop
    assert result.report.silhouette_iou is not None and result.report.silhouette_iou > 0.9
    undirected, _ = edge_uses(mesh.faces)
    euler = mesh.num_vertices - undirected.numel() + mesh.num_faces
    if close == "none":
        assert (mesh.num_vertices, mesh.num_faces, rim) == (front_vertices, front_faces, 0)
        assert euler == 1 and not watertight(mesh.faces)  # a disc with one boundary
        return
    # twice the front and a rim of two triangles per boundary edge: closed, a sphere topologically
    assert (mesh.num_vertices, mesh.num_faces) == (2 * front_vertices, 2 * front_faces + rim)
    assert watertight(mesh.faces) and euler == 2
    front, back = mesh.vertices[:front_vertices], mesh.vertices[front_vertices:]
    torch.testing.assert_close(back[:, :2], front[:, :2])  # straight behind the front
    assert bool((back[:, 2] < front[:, 2]).all())
    if close == "plane":
        assert float(back[:, 2].max() - back[:, 2].min()) < 1e-5
    else:  # the relief mirrored about the plane behind the farthest point
        sums = front[:, 2] + back[:, 2]
        assert float(sums.max() - sums.min()) < 1e-4
        assert float(back[:, 2].std()) == pytest.approx(float(front[:, 2].std()), rel=1e-4)
    # the back shows the front's texture: each twin has its front vertex's UV
    torch.testing.assert_close(mesh.uvs[mesh.face_uvs[front_faces : 2 * front_faces]],
                               mesh.uvs[mesh.face_uvs[:front_faces]][:, [0, 2, 1]])  # fmt: skip


# -- textures and the camera ------------------------------------------------------------------------------


@pytest.mark.parametrize(("crop_size", "texture_size"), [(64, 128), (256, 128)])
def test_texture_modes_of_a_frontal_view(checkpoint: str, crop_size: int, texture_size: int) -> None:
    """ "photo" is the crop resized (at the texel centres); "delit" that divided by the shading;
    "albedo" the network's albedo upsampled."""
    output = prediction()
    method = predicting(create_method("unsup3d", "cpu", checkpoint=checkpoint), output)
    small, _, _ = rendered(output)
    crop = cv2_resize(small, crop_size)
    mask = np.ones((crop_size, crop_size), dtype=bool)
    textures = {}
    for mode in ("photo", "delit", "albedo"):
        options = parse_options("unsup3d", {**SMALL, "crop_size": crop_size, "texture_size": texture_size,
                                            "texture": mode, "close": "none"})  # fmt: skip
        result = method.reconstruct(crop, mask, options, no_progress)
        assert result.report.extra["texture"] == mode
        textures[mode] = result.mesh.texture
    channels_first = torch.from_numpy(crop).permute(2, 0, 1)[None]
    if crop_size < texture_size:
        resized = F.interpolate(channels_first, size=texture_size, mode="bilinear", align_corners=False)
    else:
        resized = F.interpolate(channels_first, size=texture_size, mode="area")
    torch.testing.assert_close(textures["photo"], resized[0].permute(1, 2, 0), atol=1e-5, rtol=0)
    at_texels = F.interpolate(shading(output), size=texture_size, mode="bilinear", align_corners=False)
    expected = (textures["photo"] / at_texels[0, 0, ..., None].clamp_min(0.05)).clamp(0, 1)
    torch.testing.assert_close(textures["delit"], expected)
    albedo = F.interpolate(output.canon_albedo, size=texture_size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(textures["albedo"], albedo[0].permute(1, 2, 0))
    # de-lighting brings the photo back to the albedo (not at the 1-px border, whose normal is frontal)
    inner = slice(texture_size // 16, -texture_size // 16)
    delit_error = (textures["delit"] - textures["albedo"])[inner, inner].abs().mean()
    photo_error = (textures["photo"] - textures["albedo"])[inner, inner].abs().mean()
    assert float(delit_error) < 0.02 < 0.1 < float(photo_error)


def cv2_resize(image: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) bilinear (or area, shrinking) resize of an (S, S, 3) image."""
    channels_first = torch.from_numpy(image).permute(2, 0, 1)[None]
    mode = "area" if size < image.shape[0] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    resized = F.interpolate(channels_first, size=size, mode=mode, **kwargs)
    return resized[0].permute(1, 2, 0).numpy().astype(np.float32)


def test_a_turned_view_is_undone(checkpoint: str) -> None:
    """The photo of the dome seen 20 degrees from the side: the camera carries the view's rotation and
    reprojects the relief onto the photo's silhouette; the "photo" texture undoes the warp (the shaded
    canonical image comes back where the view sees it), "delit" gives the albedo there, and texels the
    view hides take their mirror texel's colour."""
    output = prediction((5.0, 20.0, 3.0, 0.01, -0.01, 0.02))
    method = predicting(create_method("unsup3d", "cpu", checkpoint=checkpoint), output)
    image, mask, canonical = rendered(output)
    photo_options = parse_options("unsup3d", {**SMALL, "crop_size": SIZE, "texture_size": SIZE})
    result = method.reconstruct(image, mask, photo_options, no_progress)
    report = result.report
    assert report.silhouette_iou is not None and report.silhouette_iou > 0.93
    assert (
        report.extra["camera_fit"]["mean_error_px"] < 0.6 and report.extra["camera_fit"]["max_error_px"] < 2
    )
    assert report.extra["view"]["rotation_degrees"] == [5.0, 20.0, 3.0]
    projection = ViewProjection(output.view, SIZE, 10.0, 1.0)
    rotation = quaternion_to_matrix(result.camera.weak.rotation)
    torch.testing.assert_close(rotation, projection.rotation(), atol=1e-5, rtol=0)
    assert float(rotation[0, 2, 0]) > 0.3  # turned about y: the object's +x comes towards the camera
    assert watertight(result.mesh.faces) and report.extra["mesh"]["front_faces"] < GRID_FACES
    centre = slice(16, 48)
    recovered = (result.mesh.texture - canonical[0].permute(1, 2, 0))[centre, centre].abs().amax(-1)
    assert float(recovered.median()) < 0.01 and float((recovered < 0.05).float().mean()) > 0.95
    delit_options = parse_options(
        "unsup3d", {**SMALL, "crop_size": SIZE, "texture_size": SIZE, "texture": "delit"}
    )
    delit_texture = method.reconstruct(image, mask, delit_options, no_progress).mesh.texture
    albedo_error = (delit_texture - output.canon_albedo[0].permute(1, 2, 0))[centre, centre].abs().amax(-1)
    assert float(albedo_error.median()) < 0.02
    # hidden texels: the far side of the dome; filled from their mirror texels where those are seen
    extra = report.extra
    assert 0 < extra["filled_texels"] <= extra["hidden_texels"] < 0.2
    plain = method.reconstruct(
        image, mask, parse_options("unsup3d", {**SMALL, "crop_size": SIZE, "texture_size": SIZE,
                                               "symmetric_fill": False}), no_progress,
    )  # fmt: skip
    assert plain.report.extra["filled_texels"] == 0
    changed = (plain.mesh.texture - result.mesh.texture).abs().amax(-1) > 1e-6
    assert float(changed.float().mean()) == pytest.approx(extra["filled_texels"], abs=1e-3)


def test_rotation_quaternion_inverts_quaternion_to_matrix() -> None:
    generator = torch.Generator().manual_seed(3)
    quaternions = F.normalize(torch.randn(64, 4, generator=generator), dim=1)
    quaternions = torch.where(quaternions[:, :1] < 0, -quaternions, quaternions)
    torch.testing.assert_close(rotation_quaternion(quaternion_to_matrix(quaternions)), quaternions,
                               atol=1e-5, rtol=0)  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_each_device(checkpoint: str, device: str) -> None:
    """The whole method on ``device`` (CUDA: under scripts/gpu_check.sh): results come back on the CPU
    and match the CPU's."""
    image, mask, _ = rendered(prediction((0.0, 15.0, 0.0, 0.0, 0.0, 0.0)))
    options = parse_options("unsup3d", {**SMALL, "crop_size": SIZE})
    result = create_method("unsup3d", device, checkpoint=checkpoint).reconstruct(
        image, mask, options, no_progress
    )
    assert result.report.device.startswith(device) and result.camera.device.type == "cpu"
    assert result.mesh.vertices.device.type == "cpu" and result.mesh.texture.device.type == "cpu"
    on_cpu = create_method("unsup3d", "cpu", checkpoint=checkpoint).reconstruct(
        image, mask, options, no_progress
    )
    assert result.mesh.num_faces == on_cpu.mesh.num_faces
    torch.testing.assert_close(result.mesh.vertices, on_cpu.mesh.vertices, atol=1e-4, rtol=0)


# -- options and errors -----------------------------------------------------------------------------------


def test_defaults_and_option_bounds() -> None:
    defaults = Unsup3dOptions()
    assert (defaults.texture, defaults.close, defaults.mask_cut, defaults.symmetric_fill) == (
        "photo", "mirror", True, True,
    )  # fmt: skip
    assert (defaults.crop_size, defaults.texture_size) == (256, 256)
    for bad in (
        {"texture": "paint"}, {"close": "both"}, {"texture_size": 8}, {"texture_size": 5000},
        {"crop_size": 8}, {"resolution": 8}, {"cpu_threads": 0}, {"iterations": 10},
        {"mask_cut": "sometimes"},
    ):  # fmt: skip
        with pytest.raises(MethodError, match="invalid options for unsup3d"):
            parse_options("unsup3d", bad)


def test_errors_name_the_problem(tmp_path: Path, checkpoint: str) -> None:
    method = create_method("unsup3d", "cpu", checkpoint=checkpoint)
    image, mask, _ = rendered(prediction())
    options = parse_options("unsup3d", SMALL)
    with pytest.raises(
        MethodError, match=r"crop is 32 x 32 pixels, smaller than the unsup3d network's 64 x 64"
    ):
        method.reconstruct(image[::2, ::2].copy(), mask[::2, ::2].copy(), options, no_progress)
    with pytest.raises(MethodError, match="crop_size to at least 64"):
        reconstruct_photo(method, photo(HUMAN), options=parse_options("unsup3d", {"crop_size": 32}))
    with pytest.raises(MaskError, match="empty"):
        method.reconstruct(image, np.zeros_like(mask), options, no_progress)
    corner = np.zeros_like(mask)
    corner[0, 0] = True  # inside the crop but outside every face of the grid
    with pytest.raises(MethodError, match="no face of the depth grid falls inside the mask"):
        method.reconstruct(image, corner, options, no_progress)
    with pytest.raises(MethodError, match="cannot refine"):
        method.reconstruct(image, mask, options, no_progress, init_mesh=icosphere_template(2).mesh)
    with pytest.raises(MethodError, match="missing"):
        create_method("unsup3d", "cpu", checkpoint=str(tmp_path / "missing.safetensors"))
    other = write_checkpoint(tmp_path / "other", tiny_network(), method="softras", template="icosphere-642")
    with pytest.raises(MethodError, match="softras"):
        create_method("unsup3d", "cpu", checkpoint=str(other))
    bad_config = save_checkpoint(
        tmp_path / "bad", tiny_network().state_dict(),
        CheckpointMeta(method="unsup3d", template=TEMPLATE_ID, config={"model": {"nf": 32}}, step=1),
    )  # fmt: skip
    with pytest.raises(MethodError, match="usable unsup3d network"):
        create_method("unsup3d", "cpu", checkpoint=str(bad_config))


def test_the_photo_png_round_trip_keeps_an_alpha_mask(tmp_path: Path, checkpoint: str) -> None:
    """A photo with an alpha channel is masked by it (not taken whole): the background is cut away."""
    image, mask, _ = rendered(prediction())
    rgba = np.concatenate([image, mask[..., None].astype(np.float32)], axis=-1)
    disc = np.where(disc_mask(SIZE, 24)[..., None], rgba, 0.0)
    path = tmp_path / "alpha.png"
    path.write_bytes(png_bytes(Image.fromarray((disc * 255).round().astype(np.uint8), "RGBA")))
    method = create_method("unsup3d", "cpu", checkpoint=checkpoint)
    result = reconstruct_photo(method, path, options=parse_options("unsup3d", SMALL))
    assert result.mask_source == "alpha"
    assert result.reconstruction.report.extra["mesh"]["front_faces"] < 0.95 * GRID_FACES
