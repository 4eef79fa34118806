#!/usr/bin/env bash
# The main job on a fresh machine: install the runtimes, build dgzoo, and classify the demo
# image with the demo model (int8 EfficientNet-Lite0, TFLite) of the built-in demo zoo.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
bash scripts/bootstrap.sh
cargo build --release --bin dgzoo -q
# The runtimes bootstrap.sh installed (the binary has no build-machine path compiled in).
export DGZOO_RUNTIME_DIR="${DGZOO_RUNTIME_DIR:-$here/runtimes}"
export DGZOO_DEMO_ZOO="${DGZOO_DEMO_ZOO:-$here/demo/zoo}"
./target/release/dgzoo list
./target/release/dgzoo predict --props '{"output_top_k": 5}' "$@"
