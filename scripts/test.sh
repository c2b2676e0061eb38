#!/usr/bin/env bash
# The whole test suite: lint, format, types, import rules, the main tests (.venv) and the Blender tests
# (.venv-blender, bpy). Creates both environments on first use. Extra arguments go to the main pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --blender
export PYTHONDONTWRITEBYTECODE=1

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import rules"
.venv/bin/lint-imports

echo "== pytest (main environment)"
.venv/bin/python -m pytest -p no:cacheprovider tests backend training "$@"

# tests that need bpy (tests/blender_addon, *_bpy.py elsewhere) run inside Blender's own Python
# environment; only their paths are given, so conftest files of torch-only folders are never imported
bpy_tests=()
[ -d tests/blender_addon ] && compgen -G "tests/blender_addon/test_*.py" >/dev/null && bpy_tests+=(tests/blender_addon)
while IFS= read -r path; do bpy_tests+=("$path"); done < <(find tests -name '*_bpy.py' -not -path 'tests/blender_addon/*')
if [ "${#bpy_tests[@]}" -gt 0 ]; then
  echo "== pytest (Blender environment)"
  .venv-blender/bin/python -m pytest -p no:cacheprovider "${bpy_tests[@]}" --blender-env
fi
