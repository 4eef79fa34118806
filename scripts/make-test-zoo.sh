#!/usr/bin/env bash
# scripts/make-test-zoo.sh DIR — builds the extended test zoo (small deterministic models, ONNX and
# TFLite, for each PySDK post-processing family, scripts/test-zoo/build_zoo.py) into DIR, then runs the real
# PySDK 1.5.0 on every model with the shared images (../shared/zoo/images) and writes its golden
# results into DIR/expected/. Only pinned PyPI wheels are used: a venv under
# ${XDG_CACHE_HOME:-~/.cache}/dgzoo/ keyed by the hash of this script and scripts/test-zoo/*.
# An existing DIR built from the same script content is reused as it is.
# Needs the PySDK peer ($DGZOO_PEER, scripts/setup-peer.sh) with its ONNX Runtime 1.20.1.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:?usage: make-test-zoo.sh DIR}"
peer="${DGZOO_PEER:-$here/.peer}"
images="${DGZOO_TEST_IMAGES:-$here/../shared/zoo/images}"
key="$(cat "$0" "$here"/scripts/test-zoo/* | sha256sum | cut -c1-16)"
if [ -f "$dir/.key" ] && [ "$(cat "$dir/.key")" = "$key" ]; then
  echo "make-test-zoo.sh: $dir is up to date"
  exit 0
fi
venv="${XDG_CACHE_HOME:-$HOME/.cache}/dgzoo/test-zoo-venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.done" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check onnx==1.17.0 numpy==2.1.3 protobuf==5.29.3 \
    tflite==2.18.0 flatbuffers==25.12.19
  touch "$venv/.done"
fi
[ -x "$peer/venv/bin/python" ] || { echo "make-test-zoo.sh: no PySDK peer at $peer (scripts/setup-peer.sh)" >&2; exit 1; }
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
"$venv/bin/python" "$here/scripts/test-zoo/build_zoo.py" "$tmp"
LD_LIBRARY_PATH="$peer/ort${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$peer/venv/bin/python" "$here/scripts/test-zoo/goldens.py" "$tmp" "$images"
cp "$here/scripts/test-zoo/README.md" "$tmp/README.md"
echo "$key" > "$tmp/.key"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "make-test-zoo.sh: $dir ($(ls "$dir" | grep -c -- '--') models)"
