"""The synthetic faces: a mirror-symmetric canonical object, depths in Unsup3d's range, the nose nearer than
the cheeks, files identical for the same seed, loaders that read them back, and an image formation that
is the one ``backend.models.unsup3d`` inverts (its shading and warp reproduce the picture and depth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from scipy.ndimage import binary_erosion

from backend.models.unsup3d import shade, warp_to_view
from training.cli import main as train_main
from training.datasets import ImageFolderDataset
from training.datasets.synthetic_face_model import (
    MIN_DEPTH,
    canonical_depth,
    face_albedo,
    face_radius,
    sample_face,
)
from training.datasets.synthetic_face_render import FOV, ray_grid, render_face
from training.datasets.synthetic_faces import (
    GROUND_TRUTH_FILE,
    SyntheticFaces,
    SyntheticFacesConfig,
    generate_faces,
    is_synthetic_faces,
)

FRONTAL = np.zeros(6)
FRONT_LIGHT = np.array([0.4, 0.6, 0.0, 0.0])


@pytest.mark.parametrize("seed", range(12))
def test_the_canonical_face_is_mirror_symmetric(seed: int) -> None:
    face = sample_face(np.random.default_rng(seed))
    rays = ray_grid(65)
    assert np.array_equal(rays[::-1], -rays)
    u, v = np.meshgrid(rays, rays)
    depth = canonical_depth(face, u, v)
    assert np.array_equal(depth, depth[:, ::-1])  # bitwise
    albedo = face_albedo(face, u, v)
    inside = face_radius(face, u, v) < 1.0
    assert np.array_equal(inside, inside[:, ::-1])
    assert np.array_equal(albedo[inside], albedo[:, ::-1][inside])  # the background plane may differ
    assert depth[inside].min() >= MIN_DEPTH and depth.max() <= face.background_depth
    assert (depth[inside] < face.background_depth).mean() > 0.9  # a relief over the whole face


def _erode(mask: np.ndarray) -> np.ndarray:
    """The mask (H, W) without its outline (3 x 3 erosion, the image border counted as outside)."""
    return np.asarray(binary_erosion(mask, np.ones((3, 3)), border_value=0))


def _pixel(size: int, u: float, v: float) -> tuple[int, int]:
    """Row and column of the pixel whose centre is nearest the ray (u, v)."""
    return round((v + 1) * (size - 1) / 2), round((u + 1) * (size - 1) / 2)


@pytest.mark.parametrize("seed", range(4))
def test_in_a_frontal_view_the_nose_is_nearer_than_the_cheeks(seed: int) -> None:
    face = sample_face(np.random.default_rng(seed))
    size = 64
    rendered = render_face(face, FRONTAL, FRONT_LIGHT, size)
    nose = rendered.depth[_pixel(size, *face.nose_tip)]
    for side in (1.0, -1.0):
        cheek = _pixel(size, side * face.cheek[0], face.cheek[1])
        assert rendered.mask[cheek]
        assert nose < rendered.depth[cheek] - 0.01
    # frontal: the ground truth is the canonical depth at the pixel centres, the mask the face ellipse
    rays = ray_grid(size)
    u, v = np.meshgrid(rays, rays)
    inner = _erode(rendered.mask)
    assert np.abs(rendered.depth - canonical_depth(face, u, v))[inner].max() < 2e-3
    assert (rendered.mask != rendered.mask[:, ::-1]).sum() <= 4  # ties on the outline only


def test_the_images_and_depths_match_the_unsup3d_image_formation() -> None:
    """``shade`` of the canonical albedo and depth, ``warp_to_view`` to the stored view: the set's picture
    and ground-truth depth (the light converted to the project frame as ``backend.models.unsup3d`` says)."""
    size = 64
    for seed in range(3):
        face = sample_face(np.random.default_rng(seed))
        rng = np.random.default_rng(100 + seed)
        view = np.concatenate(
            [rng.uniform(-1, 1, 3) * [15.0, 20.0, 10.0], rng.uniform(-0.01, 0.01, 3) * [1, 1, 0]]
        )
        light = np.array([0.4, 0.5, *rng.uniform(-0.6, 0.6, 2)])
        rendered = render_face(face, view, light, size)
        rays = ray_grid(size)
        u, v = np.meshgrid(rays, rays)
        depth = torch.from_numpy(canonical_depth(face, u, v)).float()[None]  # (1, S, S)
        albedo = torch.from_numpy(face_albedo(face, u, v)).float().permute(2, 0, 1)[None]  # (1, 3, S, S)
        direction = torch.tensor([[-light[2], light[3], 1.0]], dtype=torch.float32)
        direction = direction / direction.norm()
        shading = shade(albedo, depth, torch.tensor([0.4]), torch.tensor([0.5]), direction, FOV)
        warp = warp_to_view(shading.image, depth, torch.from_numpy(view).float()[None], FOV, 1.0)
        both = (warp.mask[0, 0] > 0).numpy() & _erode(rendered.mask)
        assert both.sum() > 800
        depth_error = np.abs(warp.depth[0].numpy() - rendered.depth)[both]
        assert np.median(depth_error) < 1e-4 and depth_error.max() < 5e-3
        image_error = np.abs(warp.image[0].permute(1, 2, 0).numpy() - rendered.image)[both]
        assert np.median(image_error) < 3e-3 and np.percentile(image_error, 95) < 0.03


def _generate(root: Path, seed: int = 0, n: int = 6, size: int = 32) -> dict[str, object]:
    config = SyntheticFacesConfig(n=n, size=size, seed=seed, splits=(("train", 4), ("val", 1), ("test", 1)))
    return generate_faces(root, config)


def test_the_set_is_written_in_the_folder_layout_with_its_ground_truth(tmp_path: Path) -> None:
    data = _generate(tmp_path / "faces")
    root = tmp_path / "faces"
    assert data["splits"] == {"train": 4, "val": 1, "test": 1} and is_synthetic_faces(root)
    assert json.loads((root / "synthetic.json").read_text())["category"] == "face"
    truth = load_file(str(root / "train" / GROUND_TRUTH_FILE))
    assert truth["depth"].shape == (4, 32, 32) and truth["mask"].dtype == np.uint8
    assert truth["view"].shape == (4, 6) and truth["light"].shape == (4, 4)
    assert np.array_equal(truth["canonical_depth"], truth["canonical_depth"][:, :, ::-1])
    face = truth["depth"][truth["mask"] > 0]
    assert face.min() >= MIN_DEPTH - 0.02 and face.max() <= 1.1  # views move the surface a little
    assert np.abs(truth["view"][:, :3]).max() <= 20.0

    faces = SyntheticFaces(root, "train")
    item = faces[1]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert torch.equal(item["depth"], torch.from_numpy(truth["depth"][1]))
    assert item["name"] == "face_train_000001.png"
    folder = ImageFolderDataset(root / "train", image_size=32, crop=False)
    assert len(folder) == 4 and torch.allclose(folder[1]["image"], item["image"])

    mirrored = SyntheticFaces(root, "train", augment=True, seed=3)
    flips = [not torch.equal(mirrored[i]["image"], faces[i]["image"]) for i in range(4)]
    for i, flipped in enumerate(flips):
        if flipped:
            assert torch.equal(mirrored[i]["image"], faces[i]["image"].flip(-1))
            assert torch.equal(mirrored[i]["depth"], faces[i]["depth"].flip(-1))
    smaller = SyntheticFaces(root, "train", image_size=16)[1]
    assert smaller["image"].shape == (3, 16, 16) and smaller["depth"].shape == (16, 16)
    assert torch.allclose(smaller["depth"][0, 0], item["depth"][0, 0])  # corners are shared rays
    with pytest.raises(FileNotFoundError, match="ground truth"):
        SyntheticFaces(root, "absent")


def test_the_same_seed_gives_identical_files(tmp_path: Path) -> None:
    _generate(tmp_path / "a", seed=5)
    _generate(tmp_path / "b", seed=5)
    _generate(tmp_path / "c", seed=6)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 * 6 + 3 + 1
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    image = Path("train/images/face_train_000000.png")
    assert (tmp_path / "a" / image).read_bytes() != (tmp_path / "c" / image).read_bytes()


def test_make_synthetic_writes_faces_and_refuses_what_does_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "faces"
    args = ["make-synthetic", "--category", "face", "--n", "2", "--size", "16", "--out", str(out),
            "--split-fractions", "train=1,test=1"]  # fmt: skip
    assert train_main(args) == 0
    assert "wrote 2 face objects (train 1, test 1) in the folder layout" in capsys.readouterr().out
    assert len(SyntheticFaces(out, "test")) == 1
    assert train_main([*args, "--layout", "cub"]) == 2
    assert "--layout does not apply" in capsys.readouterr().err
    assert train_main([*args, "--views", "3"]) == 2
