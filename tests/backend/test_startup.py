"""Light start-up: what ``mono2mesh`` imports before it runs a command, and the backend without Open3D.

Import checks run in fresh interpreters (``python -c``), where ``sys.modules`` shows exactly what a
command loaded. No timings are asserted here; the figures are in the start-up notes of issue 14.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from backend.cli import main
from backend.methods.registry import method_names, method_spec

ROOT = Path(__file__).resolve().parents[2]

HEAVY = (
    "torch",
    "torchvision",
    "open3d",
    "fastapi",
    "uvicorn",
    "starlette",
    "trimesh",
    "xatlas",
    "cv2",
    "backend.models",
    "backend.meshing",
    "backend.geometry",
    "backend.render",
    "backend.methods.base",
    "backend.methods.fit",
    "backend.server.app",
)
"""Packages and modules (with their submodules) no command may import before it runs."""

METHODS = ["fit", "adaptive-flow", "mesh-inversion", "pointcloud-poisson", "softras", "unsup3d"]


def run_python(code: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in the repository root; fails the test, with its output, on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def test_parsing_any_light_command_imports_nothing_heavy() -> None:
    result = run_python(
        f"""
        import contextlib, io, json, sys

        import backend.cli
        from backend.methods.registry import DEFAULT_METHOD, method_names

        parser = backend.cli.build_parser()
        for argv in (
            ["reconstruct", "photo.jpg", "--out", "out", "-o", "iterations=5"],
            ["serve", "--port", "0"],
            ["methods", "--json"],
            ["addon", "build", "--out", "dist"],
            ["bench", "render", "--sizes", "32"],
            ["bench", "reconstruct"],
            ["bench", "blender"],
        ):
            parser.parse_args(argv)
        for argv in (["--version"], ["--help"], ["reconstruct", "--help"], ["bench", "render", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                backend.cli.main(argv)
        assert DEFAULT_METHOD in method_names()
        heavy = {HEAVY!r}
        loaded = [m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)]
        print(json.dumps(sorted(loaded)))
        """
    )
    assert json.loads(result.stdout) == []


def test_bench_render_devices_default_to_every_available_device() -> None:
    from backend.bench.render_command import RenderBenchOptions, available_devices
    from backend.cli import build_parser
    from backend.config_cli import config_from_args

    options = config_from_args(RenderBenchOptions, build_parser().parse_args(["bench", "render"]))
    assert options.devices is None  # resolved when the command runs, not when the parser is built
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize(
    "command",
    [
        ["reconstruct"],
        ["serve"],
        ["addon", "build"],
        ["methods"],
        ["bench", "render"],
        ["bench", "reconstruct"],
        ["bench", "serve"],
        ["bench", "fit-multiview"],
        ["bench", "blender"],
        ["bench", "meshing"],
        ["mask-model", "status"],
        ["mask-model", "download"],
    ],
)
def test_every_subcommand_builds_its_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mono2mesh {' '.join(command)}") and "--help" in out


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name, summary in [
        ("reconstruct", "photos -> textured meshes"),
        ("serve", "local backend server"),
        ("addon", "Blender add-on"),
        ("methods", "reconstruction methods"),
        ("bench", "run a benchmark"),
    ]:
        assert name in out and summary in out


def test_registry_names_match_their_classes() -> None:
    assert method_names()[0] == "fit" and sorted(method_names()) == sorted(METHODS)
    for name in method_names():
        assert method_spec(name).name == name


def test_methods_json_lists_every_method() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend", "methods", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    info = json.loads(result.stdout)
    assert [entry["name"] for entry in info] == method_names()
    assert all("properties" in entry["options_schema"] for entry in info)


def test_without_open3d_only_meshing_fails(tmp_path: Path) -> None:
    """Open3D made unimportable before anything loads: the meshing stages raise ``MeshingError`` naming
    the package and its install command; the registry, the server and a ``fit`` reconstruction run."""
    run_python(
        f"""
        import sys
        from pathlib import Path

        sys.modules["open3d"] = None  # `import open3d` now raises ImportError

        import numpy as np
        import torch
        from PIL import Image

        from backend.geometry.mesh import PointCloud
        from backend.meshing import MeshingError, estimate_normals, mesh_point_cloud, poisson_reconstruct
        from backend.meshing.cleanup import decimate
        from backend.geometry.templates import icosphere_template

        generator = torch.Generator().manual_seed(0)
        points = torch.nn.functional.normalize(torch.randn(500, 3, generator=generator))  # on a sphere
        array = points.double().numpy()
        template = icosphere_template().mesh
        calls = [
            lambda: mesh_point_cloud(PointCloud(points)),
            lambda: estimate_normals(array),
            lambda: poisson_reconstruct(array, array),
            lambda: decimate(template.vertices.double().numpy(), template.faces.numpy(), 100),
        ]
        for call in calls:
            try:
                call()
            except MeshingError as error:
                assert "open3d" in str(error) and "pip install open3d" in str(error), str(error)
            else:
                raise AssertionError("no MeshingError without Open3D")

        from backend.methods import registry

        available, reason = registry.availability("pointcloud-poisson")
        assert not available and "open3d" in reason and "pip install open3d" in reason, reason
        assert [entry["name"] for entry in registry.method_info()] == registry.method_names()
        assert registry.availability("fit") == (True, None)

        from fastapi.testclient import TestClient

        from backend.server.app import create_app
        from backend.server.config import ServerConfig

        config = ServerConfig(jobs_dir=Path(r"{tmp_path / "jobs"}"), token="t" * 20, port=48214, device="cpu")
        with TestClient(
            create_app(config),
            base_url="http://127.0.0.1:48214",
            headers={{"Authorization": "Bearer " + "t" * 20}},
        ) as client:
            assert client.get("/v1/health").json()["status"] == "ok"
            methods = {{entry["name"]: entry for entry in client.get("/v1/methods").json()["methods"]}}
            assert sorted(methods) == sorted(registry.method_names())
            assert not methods["pointcloud-poisson"]["available"]

        yy, xx = np.mgrid[:64, :64]
        rgba = np.zeros((64, 64, 4), np.uint8)
        rgba[(xx - 32) ** 2 + (yy - 32) ** 2 < 18**2] = (200, 50, 50, 255)
        Image.fromarray(rgba, "RGBA").save(r"{tmp_path / "disc.png"}")
        from backend.cli import main

        options = ["iterations=5", "resolution=32", "hypotheses=1", "crop_size=64", "texture_size=16"]
        argv = ["reconstruct", r"{tmp_path / "disc.png"}", "--out", r"{tmp_path / "out"}", "--quiet"]
        assert main(argv + [item for option in options for item in ("-o", option)]) == 0
        assert sys.modules["open3d"] is None
        """
    )
    assert (tmp_path / "out" / "disc.glb").is_file()
