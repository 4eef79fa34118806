#!/usr/bin/env bash
# Make the real PySDK 1.5.0's OPENVINO/CPU agent loadable, for golden results (see
# ../shared/spec/openvino-peer.md): PySDK's agent needs an OpenVINO 2025.3 built with the new C++
# string ABI, which the `openvino` wheel is not; the onnxruntime-openvino==1.23.0 wheel bundles one.
# Extracted from that wheel, never installed:
#   $DIR/ov-2025.3/       OpenVINO's default precision (bf16 on CPUs with bf16 units)
#   $DIR/ov-2025.3-f32/   the same files (hard links) plus a plugins.xml forcing f32 on the CPU plugin
#   $DIR/ovvenv/          Python 3.11 venv with the `openvino` wheel dgzoo pins (its converter makes
#                         OpenVINO IR from ONNX for the tests) with ONNX Runtime 1.20.1's quantiser, onnx and
#                         pillow (int8 QDQ test models, scripts/make_qdq_model.py); never used next to PySDK
# Run PySDK with LD_LIBRARY_PATH=$DIR/ov-2025.3[-f32]:$DIR/ort and a scratch HOME.
# Usage: scripts/setup-openvino-peer.sh [DIR]   (default: $DGZOO_PEER or <repo>/.peer; idempotent;
# needs scripts/setup-peer.sh first)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${DGZOO_PEER:-$here/.peer}}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
[ -x "$dir/venv/bin/python" ] || { echo "setup-openvino-peer.sh: run scripts/setup-peer.sh $dir first" >&2; exit 1; }
ov="$dir/ov-2025.3"
if [ ! -e "$ov/libopenvino.so.2530" ]; then
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  "$dir/venv/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d "$tmp" onnxruntime-openvino==1.23.0
  "$py" -m zipfile -e "$tmp"/onnxruntime_openvino-1.23.0-*.whl "$tmp/x"
  mkdir -p "$ov.part"
  for f in libopenvino.so.2530 libopenvino_intel_cpu_plugin.so libopenvino_onnx_frontend.so.2530 libtbb.so.2 libtbbmalloc.so.2; do
    cp "$tmp/x/onnxruntime/capi/$f" "$ov.part/"
  done
  rm -rf "$ov"; mv "$ov.part" "$ov"
fi
if [ ! -e "$ov-f32/plugins.xml" ]; then
  rm -rf "$ov-f32"; mkdir -p "$ov-f32"
  cp -l "$ov"/* "$ov-f32/" 2>/dev/null || cp "$ov"/* "$ov-f32/"
  cat > "$ov-f32/plugins.xml" <<'XML'
<ie>
    <plugins>
        <plugin name="CPU" location="libopenvino_intel_cpu_plugin.so">
            <properties>
                <property key="INFERENCE_PRECISION_HINT" value="f32"/>
            </properties>
        </plugin>
    </plugins>
</ie>
XML
fi
[ -x "$dir/ovvenv/bin/ovc" ] && "$dir/ovvenv/bin/python" -c "import onnxruntime, onnx, PIL" 2>/dev/null || { rm -rf "$dir/ovvenv"; "$py" -m venv "$dir/ovvenv" && "$dir/ovvenv/bin/pip" install -q openvino==2025.3.0 onnxruntime==1.20.1 onnx pillow; }
for v in "$ov" "$ov-f32"; do
  echo "$v: $(LD_LIBRARY_PATH="$v:$dir/ort" HOME="$(mktemp -d)" "$dir/venv/bin/degirum" sys-info | grep -E '^  [A-Z0-9]+/[A-Z]+:' | tr -d ' \n')"
done
