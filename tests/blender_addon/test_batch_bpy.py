"""The headless batch script (``blender_addon/batch.py``) run as a separate process with the bpy module,
on the real bird photos, against the session's backend (``--url``) and a backend it starts itself."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.blender_addon.helpers import FAST_OPTIONS, MAIN_PYTHON, PHOTOS, REPO

BATCH = REPO / "blender_addon" / "batch.py"


def run_batch(*arguments: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    command = [sys.executable, str(BATCH), "--", *arguments, "--options", json.dumps(FAST_OPTIONS)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


@pytest.fixture
def birds() -> list[Path]:
    photos = sorted(PHOTOS.glob("bird_*.jpg"))
    if not photos:
        pytest.skip(f"no bird photos in {PHOTOS}")
    return photos


def test_batch_all_succeed(tmp_path: Path, backend: Any, birds: list[Path]) -> None:
    out = tmp_path / "out"
    result = run_batch(
        "--input", str(PHOTOS), "--out", str(out),
        "--url", backend.client.url, "--token", backend.client.token,
        "--blend", str(out / "scene.blend"), "--export", "glb", "--as-in-photo", tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ok ", "FAILED "))]
    assert [line.split()[1] for line in lines] == [photo.name for photo in birds]
    assert f"summary: {len(birds)} succeeded, 0 failed" in result.stdout
    assert (out / "batch.glb").is_file()
    for photo in birds:
        assert (out / photo.stem / f"{photo.stem}_texture.png").is_file()
        assert (out / photo.stem / f"{photo.stem}_mask.png").is_file()  # the mask the backend used
    assert all(", mask " in line for line in lines if line.startswith("ok "))
    # the saved scene: one object per photo, side by side along X, standing on the floor, welded,
    # its texture packed into the .blend (the UI's placement and weld)
    check = (
        "import bpy, bmesh, json\n"
        f"bpy.ops.wm.open_mainfile(filepath={str(out / 'scene.blend')!r})\n"
        "def info(o):\n"
        "    b = bmesh.new(); b.from_mesh(o.data)\n"
        "    boundary = sum(e.is_boundary for e in b.edges); b.free()\n"
        "    zs = [(o.matrix_world @ v.co).z for v in o.data.vertices]\n"
        "    image = o.active_material.node_tree.nodes['Image Texture'].image\n"
        "    return [list(o.location), o['mono2mesh_template'], min(zs), boundary,\n"
        "            len(o.data.vertices), image.packed_file is not None]\n"
        "print(json.dumps({o.name: info(o) for o in bpy.data.objects if o.type == 'MESH'}))\n"
        "print(json.dumps(sorted(o['mono2mesh_photo_camera_of'] for o in bpy.data.objects\n"
        "                        if o.type == 'CAMERA' and o.data.background_images)))\n"
        "print(json.dumps({o.name: [o['mono2mesh_mask_source'], o['mono2mesh_mask_image'].name,\n"
        "                           bpy.path.abspath(o['mono2mesh_mask_image'].filepath)]\n"
        "                  for o in bpy.data.objects if o.type == 'MESH'}))\n"
    )
    opened = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    objects = json.loads(opened.stdout.strip().splitlines()[-3])
    assert sorted(objects) == sorted(photo.stem for photo in birds)
    # --as-in-photo: one camera per photo, the photo behind it
    assert json.loads(opened.stdout.strip().splitlines()[-2]) == sorted(objects)
    # each object keeps the mask the backend used: its image refers to the file next to the result
    masks = json.loads(opened.stdout.strip().splitlines()[-1])
    for name, (source, image_name, path) in masks.items():
        assert source in ("given", "alpha", "salient", "grabcut", "whole")
        assert image_name == f"{name} mask" and Path(path) == out / name / f"{name}_mask.png"
    xs = sorted(values[0][0] for values in objects.values())
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(xs))
    for location, template, lowest, boundary, vertices, packed in objects.values():
        assert template == "icosphere-642" and vertices == 642 and boundary == 0 and packed
        assert location[2] == 0.0 and abs(lowest) < 1e-5


def test_batch_exit_code_when_a_photo_fails(tmp_path: Path, birds: list[Path]) -> None:
    if not MAIN_PYTHON.is_file():
        pytest.skip("no backend Python")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "out"
    # this run starts (and must stop) its own backend
    result = run_batch(
        "--input", str(birds[0]), str(broken), "--out", str(out), "--backend-python", str(MAIN_PYTHON),
        "--export", "obj", tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"ok {birds[0].name}" in result.stdout
    assert "FAILED broken.png" in result.stdout and "not an image" in result.stdout
    assert "summary: 1 succeeded, 1 failed, of 2" in result.stdout
    # the OBJ export holds the one imported object, its UVs and its material with the texture copied
    obj_text = (out / "batch.obj").read_text()
    assert obj_text.count("\no ") == 1 and "\nvt " in obj_text and "mtllib batch.mtl" in obj_text
    mtl = (out / "batch.mtl").read_text()
    texture = next(line.split()[-1] for line in mtl.splitlines() if line.startswith("map_Kd"))
    assert (out / texture).is_file() and texture.endswith("_texture.png")
    log = (out / ".backend" / "server.log").read_text()
    assert "listening" in log
    state = out / ".backend" / "server.json"
    assert not state.exists() or not _alive(json.loads(state.read_text())["pid"])


def test_batch_bad_arguments(tmp_path: Path) -> None:
    result = run_batch("--input", str(tmp_path), "--out", str(tmp_path / "o"), tmp_path=tmp_path)
    assert result.returncode == 2 and "exactly one of --backend-python and --url" in result.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
