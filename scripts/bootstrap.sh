#!/usr/bin/env bash
# Create (or reuse) the virtual environments in the checkout.
#   scripts/bootstrap.sh            the main environment .venv (backend, training, dev tools, deodr)
#   scripts/bootstrap.sh --blender  also .venv-blender (bpy 5.0.x + pytest; bpy needs numpy < 2)
# Re-installs only when pyproject.toml changed. Installs Debian's libusb-1.0-0 (Open3D needs it) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing libusb-1.0-0 (needed by Open3D)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "Open3D needs libusb-1.0: run 'sudo apt-get install libusb-1.0-0' (Debian/Ubuntu) and retry" >&2
    exit 1
  fi
fi

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
stamp=".venv/.stamp-$(stamp_of pyproject.toml)"
if [ ! -f "$stamp" ]; then
  echo "installing mono2mesh into .venv (first time: torch is a large download)"
  quiet_pip .venv/bin/python -m pip install -q --upgrade pip
  quiet_pip .venv/bin/python -m pip install -q -e '.[dev,bench]'
  rm -f .venv/.stamp-* && touch "$stamp"
fi

if [ "${1:-}" = "--blender" ]; then
  if [ ! -x .venv-blender/bin/python ]; then "$PYTHON" -m venv .venv-blender; fi
  stamp=".venv-blender/.stamp-$(stamp_of scripts/bootstrap.sh)"
  if [ ! -f "$stamp" ]; then
    echo "installing bpy 5.0.x into .venv-blender"
    quiet_pip .venv-blender/bin/python -m pip install -q "bpy==5.0.*" "numpy<2" "pytest>=8"
    rm -f .venv-blender/.stamp-* && touch "$stamp"
  fi
fi
