#!/usr/bin/env bash
# The main job. Until the `fit` reconstruction method lands, it is the renderer benchmark:
# forward + backward per image on every available device, beside DEODR, written as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
mkdir -p out
.venv/bin/mono2mesh bench render --json "$@" > out/bench_render.json
.venv/bin/python -c "import json; from backend.bench.render import format_table; print(format_table(json.load(open('out/bench_render.json'))))"
echo "results: $(pwd)/out/bench_render.json"
