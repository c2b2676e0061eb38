"""The mono2mesh command line: argument checks and the render benchmark end to end (tiny case)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from backend.cli import main
from backend.render.cpu_raster import numba_problem


def test_bench_render_prints_a_json_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "bench",
                "render",
                "--sizes",
                "32",
                "--batches",
                "2",
                "--devices",
                "cpu",
                "--repeats",
                "1",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    rows = {row["renderer"]: row for row in report["results"]}
    assert report["workload"]["vertices"] == 642 and report["workload"]["faces"] == 1280
    assert rows["mono2mesh"]["size"] == 32 and rows["mono2mesh"]["ms_per_image"] > 0
    assert rows["deodr"]["ms_per_image"] > 0
    assert rows["mono2mesh"]["ratio_to_deodr"] == pytest.approx(
        rows["mono2mesh"]["ms_per_image"] / rows["deodr"]["ms_per_image"]
    )


def test_bench_render_table_without_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "bench",
                "render",
                "--sizes",
                "16",
                "--batches",
                "1",
                "--devices",
                "cpu",
                "--repeats",
                "1",
                "--no-deodr",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mono2mesh   cpu   16^2 batch  1" in out and "ms/image" in out


@pytest.mark.skipif(numba_problem() is not None, reason=f"numba: {numba_problem()}")
def test_bench_render_silhouette_rows_name_their_backend(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "render", "--sizes", "32", "--batches", "2", "--devices", "cpu", "--repeats", "1"]
    assert main([*args, "--backends", "torch,numba", "--silhouette", "--no-deodr", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    kinds = [(row["raster_backend"], row["step"]) for row in rows]
    assert kinds == [
        ("torch", "rgb+silhouette"), ("torch", "silhouette"),
        ("numba", "rgb+silhouette"), ("numba", "silhouette"),
    ]  # fmt: skip
    assert all(row["ms_per_image"] > 0 and "ratio_to_deodr" not in row for row in rows)


@pytest.mark.parametrize("value", ["0", "a,b", "-4", ""])
def test_bad_sizes_are_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "render", "--sizes", value]) == 2
    assert "mono2mesh bench render: error: sizes" in capsys.readouterr().err


def test_python_dash_m_backend_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("mono2mesh ")
