"""ShapeNetRenderings on fixtures in the SoftRas/NMR npz layout, and on SoftRas's own renders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.geometry import Camera, icosphere_template, mask_iou
from backend.geometry.io import load_obj
from backend.render import RasterSettings, render
from training.datasets import (
    ShapeNetRenderings,
    voxelize_like_softras,
    voxels_from_softras,
    voxels_to_softras,
)

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "multiview"


def _lopsided_blob() -> tuple[torch.Tensor, torch.Tensor]:
    """A mesh that is not mirror symmetric in any axis, inside [-0.5, 0.5]^3."""
    sphere = icosphere_template(2).mesh
    v = sphere.vertices * torch.tensor([0.35, 0.2, 0.25])
    v = v + torch.stack(
        [0.1 * v[:, 1] ** 2 * 10, 0.15 * torch.relu(v[:, 0]), 0.2 * torch.relu(v[:, 2])], dim=1
    )
    return v, sphere.faces


def _softras_views(count: int = 24) -> Camera:
    k = torch.arange(count, dtype=torch.float32)
    return Camera.look_at(2.732, torch.full((count,), 30.0), -15.0 * k, 15.0)


def _write_set(root: Path, synset: str = "02958343", split: str = "val", objects: int = 2) -> np.ndarray:
    """Write SoftRas's files; returns our (N, 24, 64, 64) silhouettes."""
    vertices, faces = _lopsided_blob()
    silhouettes, images, voxels = [], [], []
    for n in range(objects):
        v = vertices * (1.0 - 0.2 * n)
        alpha = render(v, faces, _softras_views(), RasterSettings(image_size=64, soft=False)).mask[..., 0]
        rgba = torch.zeros(24, 4, 64, 64)
        rgba[:, 0] = 0.5 + 0.5 * torch.linspace(0, 1, 64)  # a horizontal ramp: shows the flip
        rgba[:, 3] = alpha
        images.append((rgba.flip(-1) * 255).round().to(torch.uint8).numpy())  # SoftRas's mirrored images
        silhouettes.append(alpha.numpy())
        ours = voxelize_like_softras(v, faces).numpy()
        voxels.append(ours.transpose(1, 0, 2)[:, :, ::-1])  # the inverse of evaluate_iou's transform
    np.savez_compressed(root / f"{synset}_{split}_images.npz", np.stack(images))
    np.savez_compressed(root / f"{synset}_{split}_voxels.npz", np.stack(voxels))
    return np.stack(silhouettes)


def test_items_match_our_camera_and_carry_the_documented_keys(tmp_path: Path) -> None:
    silhouettes = _write_set(tmp_path)
    dataset = ShapeNetRenderings(tmp_path, None, "val", views_per_item=24)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["image"].shape == (24, 3, 64, 64) and item["mask"].shape == (24, 1, 64, 64)
    assert item["view"].tolist() == list(range(24)) and item["category"] == "02958343" and item["name"] == "1"
    np.testing.assert_allclose(item["elevation"].numpy(), 30.0)
    np.testing.assert_allclose(item["distance"].numpy(), 2.732, rtol=1e-6)
    np.testing.assert_allclose(item["azimuth"].numpy(), -15.0 * np.arange(24))
    np.testing.assert_array_equal(item["mask"][:, 0].numpy(), silhouettes[1])
    assert item["image"][0, 0, 10, 60] > item["image"][0, 0, 10, 3]  # the ramp rises to the right again
    assert dataset.ground_truth_mesh(0) is None


def test_voxels_come_back_in_our_xyz_order(tmp_path: Path) -> None:
    _write_set(tmp_path)
    item = ShapeNetRenderings(tmp_path, ["02958343"], "val", views_per_item=1)[0]
    vertices, faces = _lopsided_blob()
    expected = voxelize_like_softras(vertices, faces)
    assert item["voxels"].dtype == torch.bool and torch.equal(item["voxels"], expected)
    # the blob leans to +x: our first index is x
    assert item["voxels"][20:].sum() > item["voxels"][:12].sum()
    grid = torch.rand(2, 5, 5, 5) > 0.5
    assert torch.equal(voxels_from_softras(voxels_to_softras(grid)), grid)


def test_views_are_drawn_per_item_and_epoch(tmp_path: Path) -> None:
    _write_set(tmp_path)
    dataset = ShapeNetRenderings(tmp_path, None, "val", views_per_item=2, seed=3)
    first = dataset[0]["view"]
    assert first.shape == (2,) and first[0] != first[1]
    assert torch.equal(dataset[0]["view"], first)
    draws = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        draws.add(tuple(dataset[0]["view"].tolist()))
    assert len(draws) > 1
    item = dataset[0]
    np.testing.assert_allclose(item["azimuth"].numpy(), -15.0 * item["view"].numpy())


def test_other_image_sizes_are_resized(tmp_path: Path) -> None:
    _write_set(tmp_path)
    item = ShapeNetRenderings(tmp_path, None, "val", views_per_item=3, image_size=32)[0]
    assert item["image"].shape == (3, 3, 32, 32) and item["mask"].shape == (3, 1, 32, 32)


def test_errors_name_the_file_and_the_expectation(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no <synset>_train_images\.npz"):
        ShapeNetRenderings(tmp_path)
    _write_set(tmp_path)
    with pytest.raises(ValueError, match=r"unknown category '03001627' .* expected one of \['02958343'\]"):
        ShapeNetRenderings(tmp_path, ["03001627"], "val")
    np.savez_compressed(tmp_path / "bad_val_images.npz", np.zeros((2, 24, 3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"bad_val_images.npz: arr_0 must be uint8 \(N, V, 4, H, H\)"):
        ShapeNetRenderings(tmp_path, ["bad"], "val")
    np.savez_compressed(tmp_path / "few_val_images.npz", np.zeros((2, 5, 4, 64, 64), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"few_val_cameras.npz"):
        ShapeNetRenderings(tmp_path, ["few"], "val")
    np.savez_compressed(tmp_path / "few_val_cameras.npz", distance=np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"distance must be a \(2, 5\) array"):
        ShapeNetRenderings(tmp_path, ["few"], "val")
    np.savez_compressed(tmp_path / "02958343_val_voxels.npz", np.zeros((3, 32, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"must be \(2, R, R, R\) voxels"):
        ShapeNetRenderings(tmp_path, ["02958343"], "val")


def test_softras_own_renders_match_our_camera_through_the_loader(tmp_path: Path) -> None:
    """SoftRas's 120 renders of its fitted airplane, stored as one object with a camera side file."""
    if not SHARED.is_dir():
        pytest.skip(f"real test data not found at {SHARED}")
    source = np.load(SHARED / "source.npy")  # (120, 4, 64, 64) uint8, SoftRas's convention
    cameras = np.load(SHARED / "camera.npy").astype(np.float32)  # (120, 3) distance, elevation, azimuth
    np.savez_compressed(tmp_path / "02691156_test_images.npz", source[None])
    np.savez_compressed(
        tmp_path / "02691156_test_cameras.npz",
        distance=cameras[None, :, 0], elevation=cameras[None, :, 1], azimuth=cameras[None, :, 2],
    )  # fmt: skip
    item = ShapeNetRenderings(tmp_path, None, "test", views_per_item=120)[0]
    mesh = load_obj(SHARED / "softras_fit_result_plane.obj")
    camera = Camera.look_at(item["distance"], item["elevation"], item["azimuth"], 15.0)
    ours = render(mesh.vertices, mesh.faces, camera, RasterSettings(image_size=64, soft=False)).mask[..., 0]
    iou = mask_iou(ours, item["mask"][:, 0] > 0.5, soft=False)
    assert abs(float(iou.mean()) - 0.779) < 0.005  # SoftRas's own fit reaches 0.779 on its views
