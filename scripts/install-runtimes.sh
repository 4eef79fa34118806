#!/usr/bin/env bash
# Install the inference engine libraries dgzoo loads at run time into a runtimes directory:
#   libonnxruntime.so.1.20.1  from the PyPI wheel onnxruntime==1.20.1   (ONNX/CPU)
#   libLiteRt.so              from the PyPI wheel ai-edge-litert==2.1.4  (TFLITE/CPU; 2.3.0 changed its ABI)
# Usage: scripts/install-runtimes.sh [DIR]   (default: <repo>/runtimes; idempotent)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$here/runtimes}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mkdir -p "$dest"
need_ort=1; need_litert=1
[ -e "$dest/libonnxruntime.so.1.20.1" ] && need_ort=0
[ -e "$dest/libLiteRt.so" ] && need_litert=0
if [ $need_ort = 1 ] || [ $need_litert = 1 ]; then
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  pkgs=()
  [ $need_ort = 1 ] && pkgs+=(onnxruntime==1.20.1)
  [ $need_litert = 1 ] && pkgs+=(ai-edge-litert==2.1.4)
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 -d "$tmp" "${pkgs[@]}"
  if [ $need_ort = 1 ]; then
    "$py" -m zipfile -e "$tmp"/onnxruntime-1.20.1-*.whl "$tmp/ort"
    cp "$tmp/ort/onnxruntime/capi/libonnxruntime.so.1.20.1" "$dest/"
  fi
  if [ $need_litert = 1 ]; then
    "$py" -m zipfile -e "$tmp"/ai_edge_litert-2.1.4-*.whl "$tmp/litert"
    cp "$tmp/litert/ai_edge_litert/libLiteRt.so" "$dest/"
  fi
fi
ln -sf libonnxruntime.so.1.20.1 "$dest/libonnxruntime.so.1"
ln -sf libonnxruntime.so.1.20.1 "$dest/libonnxruntime.so"
echo "runtimes in $dest: $(ls "$dest" | tr '\n' ' ')"
