"""training.report: the JSON-lines history and the markdown + PNG evaluation report."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training import report
from training.report import History, plot_series, series_of, write_report


def _history(path: Path) -> History:
    history = History(path)
    for step in range(10, 110, 10):
        history.append("train", step, {"loss": 1.0 / step, "silhouette": 0.5 / step, "lr": 1e-4})
    history.append("eval", 50, {"iou": 0.4, "chamfer": 2.0})
    history.append("eval", 100, {"iou": 0.6, "chamfer": float("nan")})
    return history


def test_history_appends_reads_and_truncates(tmp_path: Path) -> None:
    history = _history(tmp_path / "history.jsonl")
    assert len(history.records("train")) == 10 and len(history.records("eval")) == 2
    assert history.records("eval")[1]["chamfer"] is None  # non-finite values are stored as null
    with (tmp_path / "history.jsonl").open("a") as handle:
        handle.write('{"kind": "train", "st')  # a writer killed mid-line
    assert len(history.records()) == 12
    history.truncate(50)
    assert [r["step"] for r in history.records()] == [10, 20, 30, 40, 50, 50]
    assert series_of(history.records("eval")) == {"iou": [(50.0, 0.4)], "chamfer": [(50.0, 2.0)]}


def test_the_report_has_tables_plots_and_images(tmp_path: Path) -> None:
    history = _history(tmp_path / "history.jsonl")
    grid = tmp_path / "images" / "step_100.png"
    grid.parent.mkdir()
    Image.new("RGB", (8, 8), "red").save(grid)
    path = write_report(
        tmp_path / "report", history.records(), title="softras on bird", summary={"steps": 100}, images=[grid]
    )
    text = path.read_text()
    assert text.startswith("# softras on bird\n\n- **steps**: 100")
    assert "| chamfer | 2 |" not in text and "| iou | 0.6 |" in text  # final metrics = the last evaluation
    assert "| step | chamfer | iou |\n|---|---|---|\n| 50 | 2 | 0.4 |\n| 100 | — | 0.6 |" in text
    assert "| loss | 0.1 | 0.01 | 0.01 | 10 |" in text
    assert "![training losses](loss_curves.png)" in text and "![step_100](../images/step_100.png)" in text
    for name in ("loss_curves.png", "metrics.png"):
        image = np.asarray(Image.open(tmp_path / "report" / name).convert("RGB"))
        assert image.shape[0] >= 300 and image.shape[1] >= 500
        assert (image != 255).any(axis=-1).mean() > 0.01  # something is drawn


def test_pil_plots_draw_each_series_in_its_colour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # force the PIL plotter
    path = plot_series(
        {"a": [(0, 1.0), (10, 0.5)], "b": [(0, 0.2), (10, 0.2)]}, tmp_path / "p.png", title="two lines"
    )
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    for colour in report._COLOURS[:2]:
        assert (pixels == colour).all(axis=1).sum() > 100
    empty = plot_series({}, tmp_path / "empty.png", title="nothing")
    assert Image.open(empty).size == (800, 480)
    constant = plot_series({"c": [(5, 3.0)]}, tmp_path / "constant.png", title="one point")
    assert Image.open(constant).size == (800, 480)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_matplotlib_plots_when_installed(tmp_path: Path) -> None:
    path = plot_series({"a": [(0, 1.0), (10, 0.5)]}, tmp_path / "m.png", title="matplotlib")
    assert Image.open(path).size == (800, 480)
