"""The synthetic generator: objects, the three layouts read back by their loaders, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from scipy.spatial import cKDTree

from backend.geometry import Camera, mask_iou
from backend.render import RasterSettings, render
from training.datasets import (
    CubDataset,
    ImageFolderDataset,
    MeshArchive,
    ShapeNetRenderings,
    SyntheticConfig,
    generate,
)
from training.datasets.synthetic import parse_split_fractions, split_counts
from training.datasets.synthetic_categories import keypoint_names, keypoint_permutation, part_names
from training.datasets.synthetic_object import make_object
from training.datasets.transforms import CUB_KEYPOINT_NAMES, CUB_KEYPOINT_PERMUTATION, mirror_camera

CUB_SPLITS = (("train", 0.5), ("test", 0.5))


@pytest.fixture(scope="module")
def shapenet_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("shapenet")
    generate(root, SyntheticConfig("car", n=3, layout="shapenet", splits=(("train", 2), ("val", 1))))
    return root


@pytest.fixture(scope="module")
def cub_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cub")
    generate(
        root,
        SyntheticConfig("bird", n=4, size=64, layout="cub", views=2, background="noise", splits=CUB_SPLITS),
    )
    return root


@pytest.mark.parametrize("category", ["bird", "car", "chair"])
def test_objects_are_mirror_symmetric_and_inside_the_unit_cube(category: str) -> None:
    obj = make_object(category, np.random.default_rng(5))
    vertices = obj.mesh.vertices.numpy()
    distance, _ = cKDTree(vertices).query(vertices * np.array([-1.0, 1.0, 1.0]))
    assert distance.max() < 1e-6
    assert np.abs(vertices).max() <= 0.5
    keypoints = obj.keypoints.numpy()
    permutation = list(keypoint_permutation(category))
    np.testing.assert_allclose(keypoints[permutation], keypoints * np.array([-1.0, 1.0, 1.0]), atol=1e-6)
    assert obj.face_parts.shape == (obj.mesh.num_faces,)
    assert set(obj.face_parts.tolist()) == set(range(len(part_names(category))))
    assert obj.voxels is not None and obj.voxels.sum() > 500


def test_texture_is_symmetric_in_render(tmp_path: Path) -> None:
    """Seen from straight ahead, an object's render is its own mirror image (shape and texture)."""
    obj = make_object("bird", np.random.default_rng(1), with_voxels=False)
    camera = Camera.look_at(2.5, 10.0, 180.0, 15.0)  # on +Z, looking at the front
    image = render(obj.mesh.vertices, obj.mesh.faces, camera, RasterSettings(image_size=64, soft=False),
                   uvs=obj.mesh.uvs, face_uvs=obj.mesh.face_uvs, texture=obj.mesh.texture).rgb[0]  # fmt: skip
    difference = (image - image.flip(1)).abs().mean(-1)
    assert float(difference.mean()) < 0.02


def test_bird_keypoints_are_cubs() -> None:
    assert keypoint_names("bird") == CUB_KEYPOINT_NAMES
    assert keypoint_permutation("bird") == CUB_KEYPOINT_PERMUTATION


def test_shapenet_layout_files_and_shapes(shapenet_set: Path) -> None:
    with np.load(shapenet_set / "car_train_images.npz") as data:
        assert list(data) == ["arr_0"] and data["arr_0"].shape == (2, 24, 4, 64, 64)
        assert data["arr_0"].dtype == np.uint8
    with np.load(shapenet_set / "car_val_voxels.npz") as data:
        assert data["arr_0"].shape == (1, 32, 32, 32)
    assert not (shapenet_set / "car_train_cameras.npz").exists()  # SoftRas's 24 cameras
    assert sorted(p.name for p in shapenet_set.iterdir() if p.name.startswith(".")) == []  # no scratch left
    metadata = json.loads((shapenet_set / "synthetic.json").read_text())
    assert metadata["cameras"] == "softras" and metadata["splits"] == {"train": 2, "val": 1}
    dataset = ShapeNetRenderings(shapenet_set, ["car"], "train", views_per_item=24)
    item = dataset[1]
    assert item["image"].shape == (24, 3, 64, 64) and item["voxels"].shape == (32, 32, 32)
    assert item["category"] == "car"
    np.testing.assert_allclose(item["azimuth"].numpy(), -15.0 * np.arange(24))


def test_shapenet_views_agree_with_look_at_renders_of_the_mesh(shapenet_set: Path) -> None:
    """The camera convention: loader views vs. Camera.look_at renders of the ground-truth mesh."""
    dataset = ShapeNetRenderings(shapenet_set, None, "train", views_per_item=24)
    for index in range(len(dataset)):
        item = dataset[index]
        mesh = dataset.ground_truth_mesh(index)
        assert mesh is not None
        camera = Camera.look_at(item["distance"], item["elevation"], item["azimuth"], 15.0)
        ours = render(mesh.vertices, mesh.faces, camera, RasterSettings(image_size=64, soft=False)).mask[
            ..., 0
        ]
        iou = mask_iou(ours, item["mask"][:, 0], soft=False)
        assert float(iou.min()) > 0.9
        # the images are stored mirrored: read without the loader's flip they disagree
        raw = torch.from_numpy(np.load(shapenet_set / "car_train_images.npz")["arr_0"][index, :, 3] / 255.0)
        assert float(mask_iou(ours, raw.float(), soft=False).mean()) < float(iou.mean()) - 0.05


def test_shapenet_voxels_hold_the_mesh_surface(shapenet_set: Path) -> None:
    dataset = ShapeNetRenderings(shapenet_set, None, "val", views_per_item=1)
    voxels = dataset[0]["voxels"]
    mesh = dataset.ground_truth_mesh(0)
    assert mesh is not None
    cells = torch.floor((mesh.vertices * 31 / 32 + 0.5) * 32).long()  # SoftRas's grid, [x, y, z]
    assert bool(voxels[cells[:, 0], cells[:, 1], cells[:, 2]].all())
    assert float(voxels.float().mean()) < 0.5


def test_masks_match_alpha_in_the_cub_layout(cub_set: Path) -> None:
    images = scipy.io.loadmat(
        str(cub_set / "data" / "train_cub_cleaned.mat"), struct_as_record=False, squeeze_me=True
    )["images"]
    assert len(images) == 4  # 2 objects x 2 views
    labels = np.asarray(Image.open(cub_set / "parts" / images[0].rel_path))
    np.testing.assert_array_equal(images[0].mask.astype(bool), labels > 0)  # same silhouette, two files
    assert images[0].parts.shape == (3, 15)
    dataset = CubDataset(cub_set, "train", image_size=64, augment=False, padding=0.0)
    item = dataset[0]
    assert set(item) == {"image", "mask", "keypoints", "camera", "parts", "index", "name"}
    assert item["parts"].shape == (1 + len(part_names("bird")), 64, 64)
    background = item["parts"][0].numpy() > 0.5
    assert float(np.mean(background == (item["mask"][0].numpy() < 0.5))) > 0.97


def test_cub_layout_camera_projects_the_objects_keypoints(cub_set: Path) -> None:
    dataset = CubDataset(cub_set, "test", image_size=64, augment=False)
    images = scipy.io.loadmat(
        str(cub_set / "data" / "test_cub_cleaned.mat"), struct_as_record=False, squeeze_me=True
    )["images"]
    for index in range(len(dataset)):
        item = dataset[index]
        obj = make_object(
            "bird", np.random.default_rng((0, 0, 2 + int(images[index].object), 0)), with_voxels=False
        )
        c = item["camera"][None]
        projected = Camera.weak_perspective(c[:, 0], c[:, 1:3], c[:, 3:7]).project(obj.keypoints)[0, :, :2]
        visible = item["keypoints"][:, 2] > 0
        assert visible.sum() >= 5
        np.testing.assert_allclose(
            projected[visible].numpy(), item["keypoints"][visible, :2].numpy(), atol=1e-4
        )
        # and the silhouette is where the camera puts the mesh
        camera = Camera.weak_perspective(c[:, 0], c[:, 1:3], c[:, 3:7])
        silhouette = render(
            obj.mesh.vertices, obj.mesh.faces, camera, RasterSettings(image_size=64, soft=False)
        )
        assert float(mask_iou(silhouette.mask[0, ..., 0], item["mask"][0])) > 0.85


def test_cub_layout_mirror_permutes_keypoints_and_parts(cub_set: Path) -> None:
    plain = CubDataset(cub_set, "train", image_size=64, augment=False)[1]
    dataset = CubDataset(cub_set, "train", image_size=64, jitter=0.0)
    names = part_names("bird")
    for epoch in range(10):
        dataset.set_epoch(epoch)
        item = dataset[1]
        if np.allclose(item["camera"][3:], mirror_camera(plain["camera"].numpy())[3:], atol=1e-5):
            expected = plain["keypoints"][list(CUB_KEYPOINT_PERMUTATION)].clone()
            expected[:, 0] = -expected[:, 0]
            np.testing.assert_allclose(item["keypoints"].numpy(), expected.numpy(), atol=1e-5)
            left, right = 1 + names.index("left_wing"), 1 + names.index("right_wing")
            np.testing.assert_allclose(
                item["parts"][left].numpy(), plain["parts"][right].flip(-1).numpy(), atol=1e-6
            )
            return
    pytest.fail("no item was mirrored in 10 epochs")


def test_folder_layout_masks_are_the_alpha(tmp_path: Path) -> None:
    generate(tmp_path, SyntheticConfig("chair", n=2, size=48, layout="folder", background="image",
                                       splits=(("train", 1.0),)))  # fmt: skip
    folder = tmp_path / "train"
    cameras = json.loads((folder / "cameras.json").read_text())
    assert sorted(cameras) == ["chair_train_000000_00.png", "chair_train_000001_00.png"]
    mask = np.asarray(Image.open(folder / "masks" / "chair_train_000000_00.png"))
    assert mask.dtype == np.uint8 and 0 < (mask > 127).mean() < 0.8
    dataset = ImageFolderDataset(folder, image_size=32)
    item = dataset[0]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    full = ImageFolderDataset(folder, image_size=48, crop=False)[0]
    np.testing.assert_allclose(full["mask"][0].numpy(), mask / 255.0, atol=1e-6)
    assert len(MeshArchive(tmp_path / "chair_train_meshes.npz")) == 2


def test_same_seed_same_arrays_other_seed_other_arrays(tmp_path: Path) -> None:
    def arrays(root: Path, seed: int) -> dict[str, np.ndarray]:
        generate(root, SyntheticConfig("bird", n=2, size=32, layout="shapenet", views=3, seed=seed,
                                       background="noise", splits=(("train", 1.0),)))  # fmt: skip
        found = {}
        for name in ("images", "voxels", "cameras", "meshes"):
            with np.load(root / f"bird_train_{name}.npz") as data:
                found.update({f"{name}/{key}": data[key] for key in data})
        return found

    first, second, other = arrays(tmp_path / "a", 0), arrays(tmp_path / "b", 0), arrays(tmp_path / "c", 1)
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].tobytes() == second[key].tobytes(), key
    assert not np.array_equal(first["images/arr_0"], other["images/arr_0"])
    assert first["cameras/azimuth"].shape == (2, 3)


def test_same_seed_same_files_in_the_cub_layout(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate(tmp_path / name, SyntheticConfig("car", n=1, size=32, layout="cub", splits=(("val", 1.0),)))
    for relative in ("images/car/car_val_000000_00.png", "parts/car/car_val_000000_00.png"):
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="unknown synthetic category 'plane'"):
        SyntheticConfig("plane")
    with pytest.raises(ValueError, match="unknown layout"):
        SyntheticConfig("bird", layout="voc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown background"):
        SyntheticConfig("bird", background="sky")
    with pytest.raises(ValueError, match="fractions must be >= 0"):
        SyntheticConfig("bird", splits=(("train", -1.0),))
    assert split_counts(7, [("train", 0.5), ("val", 0.25), ("test", 0.25)]) == [
        ("train", 5),
        ("val", 1),
        ("test", 1),
    ]
    assert parse_split_fractions("train=0.7,test=0.3") == (("train", 0.7), ("test", 0.3))
    with pytest.raises(ValueError, match="cannot read split fractions"):
        parse_split_fractions("0.5,x")
