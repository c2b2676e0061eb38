#!/usr/bin/env bash
# The main job: photo -> `fit` -> textured GLB (+ OBJ, preview, mask, report) for each photo.
#   bash scripts/main.sh                 the three real bird photos in ../shared/data/photos
#   bash scripts/main.sh A.jpg B.png     your own photos
# Results go to out/reconstruct/; the exit code is non-zero if any photo failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ "$#" -gt 0 ]; then
  images=("$@")
else
  shopt -s nullglob
  images=(../shared/data/photos/*.jpg)
  if [ "${#images[@]}" -eq 0 ]; then
    echo "no photos given and ../shared/data/photos has none: run  bash scripts/main.sh PHOTO..." >&2
    exit 2
  fi
fi
mkdir -p out/reconstruct
status=0
.venv/bin/mono2mesh reconstruct "${images[@]}" --out out/reconstruct || status=$?
echo "results: $(pwd)/out/reconstruct  (<stem>.glb, .obj/.mtl/_texture.png, _preview.png, _mask.png, .json)"
exit "$status"
