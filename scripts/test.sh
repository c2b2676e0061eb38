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

# tests that need bpy (*_bpy.py, tests/blender_addon) run inside Blender's own Python environment
if compgen -G "tests/blender_addon/test_*.py" >/dev/null || [ -n "$(find tests -name '*_bpy.py' -print -quit)" ]; then
  echo "== pytest (Blender environment)"
  .venv-blender/bin/python -m pytest -p no:cacheprovider tests --blender-env
fi
