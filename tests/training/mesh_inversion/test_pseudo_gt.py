"""The pseudo ground truth of a tiny synthetic CUB-layout bird set: meshes that re-render to the masks,
textures of the visible side, a cache that is reused, resumed and rebuilt."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backend.geometry.camera import Camera
from backend.geometry.metrics import mask_iou
from backend.geometry.templates import uv_sphere_template
from backend.geometry.uv_displacement import UvDisplacement
from backend.render.renderer import render
from backend.render.settings import RasterSettings
from backend.render.uv import texel_surface, uv_rasterize
from training.datasets.cub import CubDataset
from training.datasets.synthetic import SyntheticConfig, generate
from training.mesh_inversion import pseudo_gt
from training.mesh_inversion.pseudo_gt import (
    PseudoGroundTruth,
    PseudoGtSettings,
    build_pseudo_ground_truth,
)

SIZE = 64
TINY = PseudoGtSettings(texture_size=32, fit_iterations=40, fit_resolution=64, erode_pixels=1)


@pytest.fixture(scope="module")
def birds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("birds")
    generate(
        root,
        SyntheticConfig(
            category="bird",
            n=3,
            layout="cub",
            size=SIZE,
            seed=5,
            background="noise",
            splits=(("train", 1.0),),
        ),
    )
    return root


@pytest.fixture(scope="module")
def dataset(birds: Path) -> CubDataset:
    return CubDataset(birds, "train", image_size=SIZE, augment=False)


@pytest.fixture(scope="module")
def built(dataset: CubDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    saved = torch.get_num_threads()  # module fixtures run before conftest's one-thread fixture
    torch.set_num_threads(1)
    try:
        return build_pseudo_ground_truth(dataset, tmp_path_factory.mktemp("pgt"), TINY)
    finally:
        torch.set_num_threads(saved)


def _camera(vector: torch.Tensor) -> Camera:
    return Camera.weak_perspective(vector[:1], vector[None, 1:3], vector[None, 3:7])


def test_files_hold_the_documented_tensors(built: Path, dataset: CubDataset) -> None:
    index = json.loads((built / "index.json").read_text())
    assert index["count"] == len(dataset) == 3 and index["settings"] == TINY.to_json()
    assert index["dataset"]["class"] == "CubDataset" and index["world_scale"] > 0
    raw = load_file(str(built / "0.safetensors"))
    assert raw["displacement"].dtype == torch.float32 and raw["texture"].dtype == torch.float16
    items = PseudoGroundTruth(built)
    assert len(items) == 3 and items.settings == TINY
    item = items[1]
    shapes = {key: tuple(value.shape) for key, value in item.items()}
    assert shapes == {
        "displacement": (3, 32, 32), "texture": (3, 32, 32), "texture_mask": (1, 32, 32), "camera": (7,),
        "image": (3, SIZE, SIZE), "mask": (1, SIZE, SIZE),
    }  # fmt: skip
    assert all(value.dtype == torch.float32 for value in item.values())
    assert 0 <= float(item["texture"].min()) and float(item["texture"].max()) <= 1
    assert set(item["texture_mask"].unique().tolist()) <= {0.0, 1.0}
    assert float(item["texture"][:, item["texture_mask"][0] == 0].abs().max()) == 0  # unknown texels are 0
    torch.testing.assert_close(item["mask"], dataset[1]["mask"], atol=1e-3, rtol=0)
    torch.testing.assert_close(item["camera"][3:].norm(), torch.tensor(1.0))


def test_meshes_rerender_to_the_masks(built: Path) -> None:
    items = PseudoGroundTruth(built)
    mapping = UvDisplacement(uv_sphere_template())
    for item in (items[i] for i in range(len(items))):
        vertices = mapping.vertices(item["displacement"][None])[0]
        alpha = render(
            vertices, mapping.template.mesh.faces, _camera(item["camera"]), RasterSettings(SIZE, soft=False)
        )
        iou = float(mask_iou(alpha.alpha[0, ..., 0], (item["mask"][0] > 0.5).float(), soft=False))
        assert iou >= 0.8, iou
        # the map is mirror-symmetric, as the GAN's are
        torch.testing.assert_close(mapping.symmetrize(item["displacement"][None])[0], item["displacement"])
    assert items.mean_iou >= 0.8


def test_texture_mask_covers_the_visible_side(built: Path) -> None:
    mesh = uv_sphere_template().mesh
    mapping = UvDisplacement(uv_sphere_template())
    texel_face, texel_bary = uv_rasterize(mesh.uvs, mesh.face_uvs, 32, 32)
    items = PseudoGroundTruth(built)
    for item in (items[i] for i in range(len(items))):
        known = item["texture_mask"][0] > 0
        vertices = mapping.vertices(item["displacement"][None])[0]
        index, _, normals = texel_surface(vertices, mesh.faces, texel_face, texel_bary)
        rotation, _ = _camera(item["camera"]).view_transform()
        facing = torch.zeros(32, 32, dtype=torch.bool)
        facing[index[:, 0], index[:, 1]] = (normals @ rotation[0].T)[:, 2] > 0
        assert not bool((known & ~facing).any())  # only texels facing the camera are known
        facing_share, share = float(facing.float().mean()), float(known.float().mean())
        assert 0.35 <= facing_share <= 0.65, facing_share  # the camera faces about half the surface
        # of which the photo sees a good part: less the occluded texels, grazing ones and the outline
        assert 0.12 <= share <= facing_share and share >= 0.3 * facing_share, (share, facing_share)
        # photo colours of the object, not zeros or background
        object_colour = item["image"][:, item["mask"][0] > 0.5].mean(dim=1)  # (3,)
        assert float((item["texture"][:, known].mean(dim=1) - object_colour).abs().max()) < 0.1


def test_the_cache_is_reused_resumed_and_rebuilt(
    built: Path, dataset: CubDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = pseudo_gt.optimise

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pseudo_gt, "optimise", counting)
    stamps = [(built / f"{i}.safetensors").stat().st_mtime_ns for i in range(3)]
    assert build_pseudo_ground_truth(dataset, built, TINY) == built
    assert calls == [] and stamps == [(built / f"{i}.safetensors").stat().st_mtime_ns for i in range(3)]

    # an interrupted build (no index.json yet) keeps what it wrote
    out = tmp_path / "resumed"
    faster = dataclasses.replace(TINY, fit_iterations=5)
    build_pseudo_ground_truth(dataset, out, faster)
    calls.clear()
    (out / "2.safetensors").unlink()
    index = (out / "index.json").read_text()
    (out / "index.json").unlink()
    (out / "building.json").write_text(
        json.dumps({k: v for k, v in json.loads(index).items() if k != "count"})
    )
    build_pseudo_ground_truth(dataset, out, faster)
    assert len(calls) == 1 and len(PseudoGroundTruth(out)) == 3

    # other settings: everything is rebuilt
    calls.clear()
    other = dataclasses.replace(faster, texture_size=16)
    build_pseudo_ground_truth(dataset, out, other)
    assert len(calls) == 3
    items = PseudoGroundTruth(out)
    assert items.settings == other and items[0]["texture"].shape == (3, 16, 16)
    assert not (out / "building.json").exists()


def test_bad_inputs_are_refused(birds: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="augment"):
        build_pseudo_ground_truth(CubDataset(birds, "train", image_size=SIZE, augment=True), tmp_path, TINY)
    with pytest.raises(ValueError, match="camera"):
        build_pseudo_ground_truth(_NoCameras(), tmp_path / "x", TINY)
    with pytest.raises(ValueError, match="storage_dtype"):
        PseudoGtSettings(storage_dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown pseudo ground truth settings"):
        PseudoGtSettings.from_json({"map_size": 32, "colour": 1})
    with pytest.raises(FileNotFoundError, match=r"index\.json"):
        PseudoGroundTruth(tmp_path / "nothing")


class _NoCameras(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        mask = torch.from_numpy(np.pad(np.ones((8, 8), np.float32), 4))[None]
        return {"image": torch.zeros(3, 16, 16), "mask": mask}
