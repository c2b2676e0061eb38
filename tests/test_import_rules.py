"""The dependency direction of DESIGN.md: backend never imports training; the Blender add-on imports
neither torch, numpy nor backend (it talks to the backend over HTTP and runs inside Blender's Python)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("backend", {"training", "blender_addon"}),
        ("blender_addon", {"torch", "numpy", "backend", "training"}),
    ],
)
def test_forbidden_imports(package: str, forbidden: set[str]) -> None:
    offenders = {
        path: names & forbidden for path, names in _imported_modules(package).items() if names & forbidden
    }
    assert not offenders, f"{package} must not import {sorted(forbidden)}: {offenders}"


def test_the_rule_sees_imports(tmp_path: Path) -> None:
    # the checker itself finds a plain and a from-import, so an empty result above means something
    names = _imported_modules("backend")["backend/cli.py"]
    assert {"torch", "argparse", "backend"} <= names
