#!/usr/bin/env bash
# Seed corpora for the fuzz targets (fuzz/fuzz_targets/), from real data: the shared zoo's
# model JSON and images, real model archives packed from it, PySDK's own goldens, and AI-server
# traffic recorded between the real PySDK client and the real PySDK server
# (scripts/fuzz/record_asio.py; skipped with a note when the peer venv is missing).
# Usage: scripts/fuzz-seeds.sh [OUT_DIR]   (default fuzz/seeds; idempotent: files are named by content)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
zoo="$here/../shared/zoo"
out="${1:-$here/fuzz/seeds}"
peer="${DGZOO_PEER:-$here/.peer}"
[ -d "$zoo" ] || { echo "fuzz-seeds.sh: $zoo is missing" >&2; exit 1; }
put() { # put TARGET FILE: copy FILE into TARGET's seeds under its content hash
  mkdir -p "$out/$1"
  cp "$2" "$out/$1/$(sha1sum "$2" | cut -c1-40)"
}
put_text() { # put_text TARGET TEXT
  local t; t="$(mktemp)"; printf '%s' "$2" >"$t"; put "$1" "$t"; rm -f "$t"
}
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# Model JSON (the zoo's and PySDK's full forms), also as property objects and token files.
for j in "$zoo"/*/*.json "$zoo"/expected/model_info/*.json; do
  [ -f "$j" ] || continue
  case "$j" in */labels_*) put model_params "$j"; continue ;; esac
  put model_params "$j"
done
put_text model_property '{"output_top_k": 3, "input_pad_method": "letterbox", "input_crop_percentage": 0.5, "measure_time": true}'
put_text model_property '{"1": 5, "13": "crop-first", "9": 0.875, "26": [1, 2], "41": "x", "input_letterbox_fill_color": [1, 2, 3]}'
put_text model_property '{"output_class_set": ["cat"], "overlay_color": [[255, 0, 0]], "input_resize_method": "lanczos", "frame_queue_depth": 80}'
put_text tokens '{"abc": {"is_admin": true, "zoos": ["org/zoo"]}, "def": {"is_admin": false, "zoos": []}}'
put_text tokens '{"": {"is_admin": true, "zoos": []}}'

# Designators and zoo URLs (host, newline, zoo URL), as the C API takes them.
for pair in "@local
$zoo" "@cloud
https://hub.degirum.com/degirum/public" "@cloud
" "localhost:8778
" "http://127.0.0.1:8779
aiserver://" "asio://[::1]:8778/
degirum/public" "@local
file://$zoo/blazeface_short_range--128x128_float_tflite_cpu_1/blazeface_short_range--128x128_float_tflite_cpu_1.json" "host:99999
http://h/o/z?x#y"; do
  put_text address "$pair"
done

# Model archives: real zoo models packed as the cloud serves them, and a JSON-only one.
(cd "$zoo" && zip -q -r "$tmp/blazeface.zip" blazeface_short_range--128x128_float_tflite_cpu_1)
put zip_archive "$tmp/blazeface.zip"
mkdir -p "$tmp/m/m" && cp "$zoo/efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1/efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1.json" "$tmp/m/m/m.json"
cp "$zoo/efficientnet_lite0_imagenet--224x224_float_onnx_cpu_1/labels_ImageNet.json" "$tmp/m/m/"
(cd "$tmp/m" && zip -q -r "$tmp/m.zip" m && zip -q -r -0 "$tmp/m0.zip" m)
put zip_archive "$tmp/m.zip"; put zip_archive "$tmp/m0.zip"

# Images: the zoo's, as JPEG and re-encoded as PNG/BMP, behind a 12-byte parameter header
# (model 224x224, a pad and resize method, crop 1.0, fill, encoded).
hdr='\x00\xe0\x00\xe0\x01\x02\x01\x64\x00\x00\x00\x00'
conv="$tmp/conv.py"
cat >"$conv" <<'PY'
import sys
from PIL import Image
Image.open(sys.argv[1]).resize((48, 32)).save(sys.argv[2])
PY
py="$peer/venv/bin/python"
for img in "$zoo"/images/*.jpg; do
  { printf "$hdr"; cat "$img"; } >"$tmp/seed"; put image_preprocess "$tmp/seed"
  for ext in png bmp; do
    if [ -x "$py" ] && "$py" "$conv" "$img" "$tmp/small.$ext" 2>/dev/null; then
      { printf "$hdr"; cat "$tmp/small.$ext"; } >"$tmp/seed"; put image_preprocess "$tmp/seed"
    fi
  done
done

# Post-processing and result codec: PySDK's golden result JSON (msgpack'd by the recorder
# below) is used as-is by the cloud replies target; the post-processors start from a few
# structured blobs (the target decodes its settings and tensors from raw bytes).
for k in 2 5 6 10 11 12; do
  head -c 4096 /dev/urandom >"$tmp/pp"; printf "\\x$(printf %02x "$k")" | dd of="$tmp/pp" bs=1 seek=0 conv=notrunc status=none
  put postprocess "$tmp/pp"
done
for f in "$zoo"/expected/list_models.json "$zoo"/expected/model_info/*.json; do
  [ -f "$f" ] || continue
  { printf '\x00'; cat "$f"; } >"$tmp/reply"; put cloud_api "$tmp/reply"
done
put_text cloud_api $'\x04{"detail": "Model not found"}'
put_text cloud_api $'\x00{"status": true}'

# Real AI-server traffic (asio packets, msgpack results), and socket.io packets built with
# the peer's python-socketio msgpack packer.
if [ -x "$py" ] && "$py" -c 'import degirum' 2>/dev/null; then
  ld="$peer/ort"; [ -e "$peer/ort-1.20.1/lib/libonnxruntime.so.1" ] && ld="$peer/ort-1.20.1/lib"
  port=$(( 20000 + RANDOM % 20000 ))
  # PySDK's server scans a copy of the model folders: the zoo's expected/*.json are JSON too.
  mkdir -p "$tmp/peer-zoo" && for d in "$zoo"/*--*/; do cp -r "$d" "$tmp/peer-zoo/"; done
  LD_LIBRARY_PATH="$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 300 "$py" "$here/scripts/fuzz/record_asio.py" "$tmp/peer-zoo" "$zoo/images" "$out" "$port" \
    || echo "fuzz-seeds.sh: recording AI-server traffic failed (seeds from files only)" >&2
  "$py" - "$out/socketio" <<'PY' || echo "fuzz-seeds.sh: socket.io seeds skipped (no msgpack in the peer)" >&2
import hashlib, os, sys
import msgpack
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
pkts = [
    {"type": 0, "data": {"sid": "abc"}, "nsp": "/"},
    {"type": 2, "data": ["predict", {"data": [b"\x000\xff\xd8"]}], "nsp": "/"},
    {"type": 2, "data": ["predict_result", {"success": True, "result": [{"bbox": [1, 2, 3, 4], "score": 0.5}]}], "nsp": "/"},
    {"type": 3, "data": [{"success": False, "msg": "no"}], "nsp": "/", "id": 7},
    {"type": 4, "data": {"message": "Not authorized"}, "nsp": "/"},
]
for p in pkts:
    b = msgpack.packb(p, use_bin_type=True)
    open(os.path.join(out, hashlib.sha1(b).hexdigest()), "wb").write(b)
for t in [b'0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000}', b"2", b"3", b"40"]:
    open(os.path.join(out, hashlib.sha1(t).hexdigest()), "wb").write(t)
PY
else
  echo "fuzz-seeds.sh: no PySDK peer at $peer: AI-server traffic not recorded" >&2
fi
for t in asio_packet msgpack_results socketio postprocess; do mkdir -p "$out/$t"; done
# A minimal framed command, so asio_packet has a seed even without the peer.
printf '\x00\x00\x00\x00\x1c{"op":"sysinfo","VERSION":4}' >"$tmp/cmd"; put asio_packet "$tmp/cmd"
echo "fuzz-seeds.sh: seeds in $out: $(for d in "$out"/*/; do printf '%s=%s ' "$(basename "$d")" "$(ls "$d" | wc -l)"; done)"
