"""The photo pipeline end to end on small real files: decode, mask, crop, fit, export, re-import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.geometry.io import load_glb, load_obj
from backend.imaging import MaskError, UnsupportedImageError
from backend.methods.base import Cancelled
from backend.methods.pipeline import STAGE_SPANS, StagedProgress, export, reconstruct_photo
from backend.methods.registry import create_method, parse_options

FAST = {"iterations": 20, "resolution": 48, "hypotheses": 2, "crop_size": 96, "texture_size": 32}


def disc_photo(path: Path, *, alpha: bool, size: tuple[int, int] = (120, 90)) -> Path:
    """An orange disc on a blue background (RGB), or on transparency (RGBA)."""
    width, height = size
    yy, xx = np.mgrid[:height, :width]
    inside = (xx - width * 0.55) ** 2 + (yy - height * 0.5) ** 2 < (0.3 * height) ** 2
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[...] = (40, 60, 200)
    rgb[inside] = (240, 140, 30)
    if alpha:
        rgba = np.dstack([rgb, np.where(inside, 255, 0).astype(np.uint8)])
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        Image.fromarray(rgb).save(path)
    return path


def test_photo_to_files_and_back(tmp_path: Path) -> None:
    photo = disc_photo(tmp_path / "disc.png", alpha=True)
    method = create_method("fit", "cpu")
    calls: list[tuple[float, str]] = []
    result = reconstruct_photo(
        method, photo, options=parse_options("fit", FAST), progress=lambda f, s: calls.append((f, s))
    )
    assert result.mask_source == "alpha"
    assert result.photo_mask.shape == (90, 120) and result.photo_mask.dtype == np.bool_
    paths = export(result, tmp_path / "out", "disc", progress=lambda f, s: calls.append((f, s)))
    assert set(paths) == {"glb", "obj", "mtl", "texture", "preview", "mask", "report"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [
            "disc.glb",
            "disc.obj",
            "disc.mtl",
            "disc_texture.png",
            "disc_preview.png",
            "disc_mask.png",
            "disc.json",
        ]
    )
    glb, obj = load_glb(paths["glb"]), load_obj(paths["obj"])
    for mesh in (glb, obj):
        assert mesh.num_faces == 1280
        np.testing.assert_allclose(mesh.vertices.numpy(), result.mesh.vertices.numpy(), atol=1e-5)
        assert mesh.texture.shape == (32, 64, 3)
    preview = np.asarray(Image.open(paths["preview"]))
    assert preview.shape == (256, 6 * 256, 3)
    mask = np.asarray(Image.open(paths["mask"]))
    assert mask.shape == (90, 120) and set(np.unique(mask)) <= {0, 255}
    assert (mask > 0).sum() == result.photo_mask.sum()
    report = json.loads(paths["report"].read_text())
    assert report["method"] == "fit" and report["device"] == "cpu"
    assert set(report["timings"]) >= {"mask", "shape", "texture", "export", "total"}
    assert report["num_vertices"] == 642 and report["num_faces"] == 1280
    assert 0.8 < report["silhouette_iou"] <= 1.0
    assert report["camera"]["kind"] == "weak_perspective" and len(report["camera"]["rotation"][0]) == 4
    assert report["photo"] == {"width": 120, "height": 90, "format": "PNG", "mask_source": "alpha"}
    assert report["options"]["iterations"] == 20
    # Whole-job progress never goes back, visits the stages in order and ends at 1.
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = [s for _, s in calls]
    firsts = [stages.index(stage) for stage in STAGE_SPANS]
    assert firsts == sorted(firsts)


def test_given_mask_wins_and_grabcut_without_one(tmp_path: Path) -> None:
    photo = disc_photo(tmp_path / "disc.jpg", alpha=False)
    method = create_method("fit", "cpu")
    options = parse_options("fit", {**FAST, "iterations": 2})
    automatic = reconstruct_photo(method, photo, options=options)
    assert automatic.mask_source == "grabcut"
    given_mask = np.zeros((90, 120), np.uint8)
    given_mask[20:70, 30:100] = 255
    Image.fromarray(given_mask).save(tmp_path / "mask.png")
    given = reconstruct_photo(method, photo, mask=tmp_path / "mask.png", options=options)
    assert given.mask_source == "given"
    np.testing.assert_array_equal(given.photo_mask, given_mask > 0)


def test_bad_inputs_raise_image_errors(tmp_path: Path) -> None:
    method = create_method("fit", "cpu")
    options = parse_options("fit", FAST)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UnsupportedImageError):
        reconstruct_photo(method, tmp_path / "notes.txt", options=options)
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "white.png")
    photo = disc_photo(tmp_path / "disc.png", alpha=False, size=(40, 40))
    with pytest.raises(MaskError, match=r"covers 100\.0% of the image"):
        reconstruct_photo(method, photo, mask=tmp_path / "white.png", options=options)


def test_cancel_propagates(tmp_path: Path) -> None:
    photo = disc_photo(tmp_path / "disc.png", alpha=True)

    def progress(fraction: float, stage: str) -> None:
        if stage == "shape" and fraction > 0.2:
            raise Cancelled

    with pytest.raises(Cancelled):
        reconstruct_photo(
            create_method("fit", "cpu"), photo, options=parse_options("fit", FAST), progress=progress
        )


def test_staged_progress_maps_stage_fractions() -> None:
    seen: list[tuple[float, str]] = []
    staged = StagedProgress(lambda f, s: seen.append((round(f, 6), s)))
    staged(0.0, "mask")
    staged(1.0, "mask")
    staged(0.5, "shape")
    staged(0.2, "mask")  # late report of an earlier stage: the bar does not go back
    staged(1.0, "export")
    assert seen == [(0.0, "mask"), (0.05, "mask"), (0.425, "shape"), (0.425, "mask"), (1.0, "export")]
