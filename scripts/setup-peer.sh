#!/usr/bin/env bash
# Install the reference peers the interop tests talk to, all from PyPI, into one directory:
#   $DIR/venv        Python 3.11 venv with the real DeGirum PySDK (degirum==1.5.0)
#   $DIR/ort/        libonnxruntime.so.1 from the onnxruntime==1.20.1 wheel (PySDK's ONNX agent
#                    needs exactly VERS_1.20.1; put this directory on LD_LIBRARY_PATH)
#   $DIR/zoovenv     dg-zoo-server==0.3.0 (its own venv: its dependencies differ from PySDK's)
# Usage: scripts/setup-peer.sh [DIR]   (default: $DGZOO_PEER or <repo>/.peer; idempotent)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${DGZOO_PEER:-$here/.peer}}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mkdir -p "$dir"
cd "$dir"
[ -x venv/bin/degirum ] || { rm -rf venv; "$py" -m venv venv && venv/bin/pip install -q degirum==1.5.0 msgpack; }
if [ ! -e ort/libonnxruntime.so.1 ]; then
  # The runtimes directory of dgzoo holds the same library; reuse it when present.
  mkdir -p ort
  if [ -e "$here/runtimes/libonnxruntime.so.1.20.1" ]; then
    cp "$here/runtimes/libonnxruntime.so.1.20.1" ort/
  else
    tmp="$(mktemp -d)"
    venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 -d "$tmp" onnxruntime==1.20.1
    "$py" -m zipfile -e "$tmp"/onnxruntime-1.20.1-*.whl "$tmp/x"
    cp "$tmp/x/onnxruntime/capi/libonnxruntime.so.1.20.1" ort/
    rm -rf "$tmp"
  fi
  ln -sf libonnxruntime.so.1.20.1 ort/libonnxruntime.so.1
fi
[ -x zoovenv/bin/dg_zoo_server ] || { rm -rf zoovenv; "$py" -m venv zoovenv && zoovenv/bin/pip install -q dg-zoo-server==0.3.0; }
echo "peers in $dir: PySDK $(venv/bin/python -c 'import degirum; print(degirum.__version__)'), dg-zoo-server 0.3.0"
