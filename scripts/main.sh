#!/usr/bin/env bash
# The main job. Until the `fit` reconstruction method lands, it is the renderer benchmark:
# forward + backward per image on every available device, beside DEODR, written as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
mkdir -p out
.venv/bin/mono2mesh bench render --json "$@" > out/bench_render.json
.venv/bin/python - <<'PY'
import json
report = json.load(open("out/bench_render.json"))
for row in report["results"]:
    ratio = f"  ({row['ratio_to_deodr']:.1f}x DEODR)" if "ratio_to_deodr" in row else ""
    print(f"{row['renderer']:>9} {row['device']:>4} {row['size']:>4}^2 batch {row['batch']:>2}: "
          f"{row['ms_per_image']:8.2f} ms/image{ratio}")
PY
echo "results: $(pwd)/out/bench_render.json"
