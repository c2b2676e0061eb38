"""Shared helpers of the add-on tests: paths, the fast job options, a synthetic photo, the client module.

The client module is loaded from its file (not through the ``blender_addon`` package), so the client
tests run without importing bpy.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
MAIN_PYTHON = Path(os.environ.get("MONO2MESH_BACKEND_PYTHON", REPO / ".venv" / "bin" / "python"))
PHOTOS = REPO.parent / "shared" / "data" / "photos"
# options of the default "fit" method that make a job take about two seconds on a CPU
FAST_OPTIONS = {"iterations": 10, "resolution": 32, "crop_size": 64, "texture_size": 32}


def load_client() -> ModuleType:
    """``blender_addon/client.py`` as a stand-alone module (its package, which needs bpy, is not run)."""
    name = "mono2mesh_client_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "blender_addon" / "client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_png(path: Path, size: int = 96) -> Path:
    """A synthetic photo: a red-and-blue disk on a light grey background, as an RGB PNG."""
    rows = []
    centre, radius = size / 2, size * 0.32
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            inside = (x - centre) ** 2 + (y - centre) ** 2 <= radius**2
            row += bytes(
                (200, 30, 30) if inside and y < centre else (30, 40, 200) if inside else (225, 225, 220)
            )
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )
    return path
