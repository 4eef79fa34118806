#!/usr/bin/env bash
# Install the inference engine libraries dgzoo loads at run time into a runtimes directory:
#   libonnxruntime.so.1.20.1  from the PyPI wheel onnxruntime==1.20.1   (ONNX/CPU)
#   libLiteRt.so              from the PyPI wheel ai-edge-litert==2.1.4  (TFLITE/CPU; 2.3.0 changed its ABI)
#   openvino/libopenvino_c.so.2530 and what it loads (core, CPU/GPU/NPU/AUTO/HETERO plugins, ONNX and
#                             IR frontends, TBB, hwloc) from the PyPI wheel openvino==2025.3.0 (OPENVINO/*).
#                             2025.3.0: the version PySDK 1.5.0's newest OpenVINO agent is built for (so
#                             both run the same CPU kernels), and its C API (ov_*) is the one dgzoo binds.
# Usage: scripts/install-runtimes.sh [DIR]   (default: <repo>/runtimes; idempotent)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$here/runtimes}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mkdir -p "$dest"
need_ort=1; need_litert=1; need_ov=1
[ -e "$dest/libonnxruntime.so.1.20.1" ] && need_ort=0
[ -e "$dest/libLiteRt.so" ] && need_litert=0
[ -e "$dest/openvino/libopenvino_c.so.2530" ] && need_ov=0
if [ $need_ort = 1 ] || [ $need_litert = 1 ] || [ $need_ov = 1 ]; then
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  pkgs=()
  [ $need_ort = 1 ] && pkgs+=(onnxruntime==1.20.1)
  [ $need_litert = 1 ] && pkgs+=(ai-edge-litert==2.1.4)
  [ $need_ov = 1 ] && pkgs+=(openvino==2025.3.0)
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
      -d "$tmp" "${pkgs[@]}"
  if [ $need_ort = 1 ]; then
    "$py" -m zipfile -e "$tmp"/onnxruntime-1.20.1-*.whl "$tmp/ort"
    cp "$tmp/ort/onnxruntime/capi/libonnxruntime.so.1.20.1" "$dest/"
  fi
  if [ $need_litert = 1 ]; then
    "$py" -m zipfile -e "$tmp"/ai_edge_litert-2.1.4-*.whl "$tmp/litert"
    cp "$tmp/litert/ai_edge_litert/libLiteRt.so" "$dest/"
  fi
  if [ $need_ov = 1 ]; then
    # Into a folder of its own: OpenVINO finds its plugins and frontends beside libopenvino.so.
    "$py" -m zipfile -e "$tmp"/openvino-2025.3.0-*.whl "$tmp/ov"
    rm -rf "$dest/openvino.part"; mkdir -p "$dest/openvino.part"
    for f in libopenvino.so.2530 libopenvino_intel_cpu_plugin.so libopenvino_intel_gpu_plugin.so \
        libopenvino_intel_npu_plugin.so libopenvino_auto_plugin.so libopenvino_auto_batch_plugin.so \
        libopenvino_hetero_plugin.so libopenvino_ir_frontend.so.2530 libopenvino_onnx_frontend.so.2530 \
        libtbb.so.12 libtbbmalloc.so.2 libtbbbind_2_5.so.3 libhwloc.so.15 libopenvino_c.so.2530; do
      cp "$tmp/ov/openvino/libs/$f" "$dest/openvino.part/"
    done
    rm -rf "$dest/openvino"; mv "$dest/openvino.part" "$dest/openvino"
  fi
fi
ln -sf libonnxruntime.so.1.20.1 "$dest/libonnxruntime.so.1"
ln -sf libonnxruntime.so.1.20.1 "$dest/libonnxruntime.so"
echo "runtimes in $dest: $(ls "$dest" | tr '\n' ' ')"
