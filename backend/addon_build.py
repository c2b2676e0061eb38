"""``mono2mesh addon build --out DIR``: the installable Blender extension zip, validated.

The zip holds ``blender_manifest.toml`` (from the repository root) beside the files of
``blender_addon/`` (its ``__init__.py`` at the top level of the zip), minus what the manifest's
``[build] paths_exclude_pattern`` leaves out (caches, dot files, zips). It is written deterministically
(sorted names, fixed timestamps) as ``<id>-<version>.zip``, then checked with Blender's own validator,
``blender_ext.py validate`` from Blender's ``bl_pkg`` add-on (the same code as
``blender --command extension validate``). The validator is found, in order: ``--validator PATH``,
``$MONO2MESH_BLENDER_EXT``, the ``bpy`` module of this interpreter, the ``bpy`` wheel in the
repository's ``.venv-blender``, and a ``blender`` executable on PATH. It is a standard-library script
(Python >= 3.11 for ``tomllib``) and runs with this interpreter. Exit status: 0 valid, 1 the validator
rejected the zip (its message is printed), 2 no validator found or bad input.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_NAME = "blender_manifest.toml"
VALIDATOR_PARTS = ("scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")
VALIDATOR_ENV = "MONO2MESH_BLENDER_EXT"
DEFAULT_EXCLUDES = ("__pycache__/", ".*", "*.zip")
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """The zip could not be built or validated; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mono2mesh addon build``."""
    parser.add_argument("--out", type=Path, required=True, help="folder to write the zip into")
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO_ROOT,
        help="repository root (with blender_addon/ and the manifest)",
    )
    parser.add_argument(
        "--validator", type=Path, default=None, help="path of Blender's blender_ext.py (default: found)"
    )
    parser.add_argument("--no-validate", action="store_true", help="write the zip without validating it")


def main(args: argparse.Namespace) -> int:
    """Build (and validate) the zip; print its path. Returns the exit status (module docstring)."""
    try:
        archive = build_zip(args.source, args.out)
        if not args.no_validate:
            validate_zip(archive, find_validator(args.validator))
    except BuildError as error:
        print(f"mono2mesh addon build: {error}", file=sys.stderr)
        return 1 if isinstance(error, ValidationError) else 2
    print(archive)
    return 0


class ValidationError(BuildError):
    """Blender's validator rejected the zip."""


def read_manifest(source: Path) -> dict[str, object]:
    """The parsed manifest at ``source/blender_manifest.toml``."""
    path = source / MANIFEST_NAME
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise BuildError(f"cannot read {path}: {error}") from error


def _excluded(relative: str, is_dir: bool, patterns: list[str]) -> bool:
    name = relative.rsplit("/", 1)[-1]
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        core = pattern.rstrip("/")
        if directory_only and not is_dir:
            continue
        anchored = core.startswith("/")
        core = core.lstrip("/")
        if fnmatch.fnmatch(relative if anchored or "/" in core else name, core):
            return True
    return False


def addon_files(package: Path, patterns: list[str]) -> list[Path]:
    """Files of the add-on package to ship, sorted, skipping excluded files and folders."""
    files: list[Path] = []
    for folder, directories, names in os.walk(package):
        here = Path(folder)
        directories[:] = sorted(
            d
            for d in directories
            if not _excluded((here / d).relative_to(package).as_posix(), True, patterns)
        )
        for name in sorted(names):
            relative = (here / name).relative_to(package).as_posix()
            if not _excluded(relative, False, patterns):
                files.append(here / name)
    return sorted(files)


def build_zip(source: Path, out: Path) -> Path:
    """Write ``<out>/<id>-<version>.zip`` (module docstring); return its path."""
    manifest = read_manifest(source)
    package = source / "blender_addon"
    if not (package / "__init__.py").is_file():
        raise BuildError(f"{package}/__init__.py not found")
    build = manifest.get("build")
    patterns = list(DEFAULT_EXCLUDES)
    if isinstance(build, dict) and isinstance(build.get("paths_exclude_pattern"), list):
        patterns = [str(pattern) for pattern in build["paths_exclude_pattern"]]
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"{manifest.get('id')}-{manifest.get('version')}.zip"
    temporary = archive.with_name(f".{archive.name}.part")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        entries = [(MANIFEST_NAME, source / MANIFEST_NAME)]
        entries += [(path.relative_to(package).as_posix(), path) for path in addon_files(package, patterns)]
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, path.read_bytes())
    os.replace(temporary, archive)
    return archive


def _bpy_validator_in(site_packages: Path) -> Path | None:
    for candidate in sorted(site_packages.glob("bpy/*/" + "/".join(VALIDATOR_PARTS)), reverse=True):
        return candidate
    return None


def find_validator(explicit: Path | None = None) -> list[str]:
    """The command prefix that runs Blender's validator (``[python, blender_ext.py]`` or blender)."""
    chosen = explicit or (Path(os.environ[VALIDATOR_ENV]) if os.environ.get(VALIDATOR_ENV) else None)
    if chosen is not None:
        if not chosen.is_file():
            raise BuildError(f"validator not found: {chosen}")
        return [sys.executable, str(chosen)]
    spec = importlib.util.find_spec("bpy")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            found = _bpy_validator_in(Path(location).parent)
            if found is not None:
                return [sys.executable, str(found)]
    for site_packages in sorted((REPO_ROOT / ".venv-blender").glob("lib/python3*/site-packages")):
        found = _bpy_validator_in(site_packages)
        if found is not None:
            return [sys.executable, str(found)]
    blender = shutil.which("blender")
    if blender is not None:
        return [blender, "--factory-startup", "--command", "extension"]
    raise BuildError(
        "Blender's extension validator was not found: install the bpy wheel (bash scripts/bootstrap.sh "
        f"--blender makes .venv-blender), put blender on PATH, or pass --validator / ${VALIDATOR_ENV} "
        "with the path of bl_pkg/cli/blender_ext.py"
    )


def validate_zip(archive: Path, validator: list[str]) -> None:
    """Run ``<validator> validate <archive>``; raise ``ValidationError`` with its output if rejected."""
    if sys.version_info < (3, 11) and validator[0] == sys.executable:
        raise BuildError("Blender's validator needs Python 3.11 or newer (tomllib)")
    result = subprocess.run(
        [*validator, "validate", str(archive)], capture_output=True, text=True, timeout=120, check=False
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "error" in output.lower():
        raise ValidationError(f"Blender's validator rejected {archive}: {output or result.returncode}")
