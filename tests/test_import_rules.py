"""The dependency direction of DESIGN.md: backend never imports training; the Blender add-on imports
neither torch, numpy nor backend (it talks to the backend over HTTP and runs inside Blender's Python);
no module of backend or training imports another module's private (``_x``) names, nor a private module
from outside its package. The layers themselves are import-linter contracts (``pyproject.toml``)."""

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
    names = _imported_modules("backend")["backend/render/uv.py"]  # import torch; from backend... import
    assert {"torch", "backend", "__future__"} <= names


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_imports(root: Path, package: str) -> list[str]:
    """Imports in ``package`` (under ``root``) of another module's private names or of a private module
    from outside its parent package, as ``"module:line imports target"`` strings.

    A private name is ``_x`` (not a dunder such as ``__version__``); a private module is one whose own
    name is ``_x`` (``training.datasets._io``), which only modules of its parent package may import.
    Relative imports are resolved first. ``import a.b`` followed by ``b._x`` is not seen (no module here
    does that; ruff's SLF001 would).
    """
    found: list[str] = []
    for path in sorted((root / package).rglob("*.py")):
        module = _module_name(root, path)
        is_package = path.name == "__init__.py"
        here = module if is_package else module.rpartition(".")[0]

        def private_module_from_outside(target: str, module: str = module) -> bool:
            parts = target.split(".")
            for depth in range(1, len(parts)):
                if _is_private(parts[depth]):
                    parent = ".".join(parts[:depth])
                    if module != parent and not module.startswith(parent + "."):
                        return True
            return False

        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                found += [
                    f"{module}:{node.lineno} imports {target}"
                    for target in targets
                    if target.split(".")[0] == package and private_module_from_outside(target)
                ]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                if source.split(".")[0] != package:
                    continue
                if private_module_from_outside(source):
                    found.append(f"{module}:{node.lineno} imports {source}")
                    continue
                for alias in node.names:
                    if not _is_private(alias.name):
                        continue
                    target = f"{source}.{alias.name}"
                    submodule = root.joinpath(*target.split("."))
                    if submodule.with_suffix(".py").is_file() or (submodule / "__init__.py").is_file():
                        if private_module_from_outside(target):
                            found.append(f"{module}:{node.lineno} imports {target}")
                    elif source != module:
                        found.append(f"{module}:{node.lineno} imports {target}")
    return found


@pytest.mark.parametrize("package", ["backend", "training"])
def test_no_module_imports_another_modules_private_names(package: str) -> None:
    # import-linter checks modules, not names: a trainer reaching into another trainer's ``_helper``
    # couples them as much as a layer violation does; move the helper to a shared, public place instead
    offenders = _private_imports(ROOT, package)
    assert not offenders, f"private names imported across modules: {offenders}"


def test_the_private_rule_sees_names_modules_and_relative_imports(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "_helper = 1\n__version__ = '1'\n",
        "pkg/b.py": "from pkg.a import _helper, __version__\n",
        "pkg/c.py": "from .a import (\n    __version__,\n    _helper,\n)\n",
        "pkg/sub/__init__.py": "from pkg.sub import _io\n",
        "pkg/sub/_io.py": "",
        "pkg/sub/user.py": "from pkg.sub._io import x\nimport pkg.sub._io\n",
        "pkg/outside.py": "import pkg.sub._io\nfrom pkg.sub import _io\nfrom pkg.sub._io import y\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _private_imports(tmp_path, "pkg") == [
        "pkg.b:1 imports pkg.a._helper",
        "pkg.c:1 imports pkg.a._helper",
        "pkg.outside:1 imports pkg.sub._io",
        "pkg.outside:2 imports pkg.sub._io",
        "pkg.outside:3 imports pkg.sub._io",
    ]
