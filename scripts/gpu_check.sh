#!/usr/bin/env bash
# One command that proves the product on a CUDA machine: the device tests, every trainer for 20 steps in
# fp32/fp16/bf16, `mono2mesh reconstruct --device cuda` with each checkpoint, and the benchmarks; one JSON
# summary on stdout (progress on stderr). Without CUDA it says so and exits 0; --dry-run runs every part on
# the CPU. Options: --out DIR, --steps N, --photo P (repeatable), --only NAME, --json-out F (see --help).
#   bash scripts/gpu_check.sh                       # .venv/bin/python when the checkout has one
#   PYTHON=python3 bash scripts/gpu_check.sh        # e.g. on a GPU machine with wheels on PYTHONPATH
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m training.gpu_check "$@"
