"""The ``mono2mesh-train make-synthetic`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.cli import build_parser, main
from training.datasets import CubDataset


def test_make_synthetic_writes_a_readable_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "birds"
    status = main(
        ["make-synthetic", "--category", "bird", "--n", "3", "--size", "48", "--out", str(out),
         "--layout", "cub", "--views", "1", "--seed", "2", "--background", "image",
         "--split-fractions", "train=2,val=1"]
    )  # fmt: skip
    assert status == 0
    captured = capsys.readouterr()
    assert "wrote 3 bird objects (train 2, val 1) in the cub layout" in captured.out
    assert "3/3" in captured.err  # the tqdm progress bar
    metadata = json.loads((out / "synthetic.json").read_text())
    assert metadata["seed"] == 2 and metadata["layout"] == "cub" and metadata["size"] == 48
    assert len(CubDataset(out, "val", image_size=32)) == 1


def test_background_photos_are_used(tmp_path: Path) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(photos / "green.png")
    out = tmp_path / "set"
    args = ["make-synthetic", "--category", "car", "--n", "1", "--size", "32", "--out", str(out),
            "--layout", "folder", "--background", "image", "--background-dir", str(photos),
            "--split-fractions", "1"]  # fmt: skip
    assert main(args) == 0
    corner = Image.open(out / "train" / "images" / "car_train_000000_00.png").getpixel((0, 0))
    assert corner == (10, 200, 30)


def test_bad_arguments_exit_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["make-synthetic", "--category", "chair", "--out", str(tmp_path / "x")]
    assert main([*base, "--split-fractions", "0.5,abc"]) == 2
    assert "cannot read split fractions" in capsys.readouterr().err
    assert main([*base, "--background-dir", str(tmp_path / "absent")]) == 2
    with pytest.raises(SystemExit):
        main(["make-synthetic", "--category", "plane", "--out", str(tmp_path)])
    assert not (tmp_path / "x").exists()


def test_help_lists_the_subcommand() -> None:
    assert "make-synthetic" in build_parser().format_help()
    assert main([]) == 2
