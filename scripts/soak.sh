#!/usr/bin/env bash
# The soak of issue #14 (crates/dgzoo-cli/tests/soak.rs): for SECONDS (default 600), 64
# inference streams on one AI server (dgzoo asio and WebSocket clients, and the real PySDK
# 1.5.0 client from the peer environment), 16 cloud-inference streams on one hub and 32
# clients downloading archives from it, all at once. Fails on any error, any result that
# differs from the same frame's result at the start, or resident memory of the server or the
# hub growing by more than 5% after the warm-up (the RSS series is printed).
# scripts/test.sh runs it for 60 s. Usage: scripts/soak.sh [SECONDS] [SAMPLE_SECONDS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export DGZOO_PEER="${DGZOO_PEER:-$here/.peer}"
export DGZOO_RUNTIME_DIR="${DGZOO_RUNTIME_DIR:-$here/runtimes}"
export DGZOO_SOAK_SECONDS="${1:-600}"
export DGZOO_SOAK_SAMPLE_SECONDS="${2:-${DGZOO_SOAK_SAMPLE_SECONDS:-2}}"
# The same cargo selection as scripts/test.sh's test line, filtered to the one ignored soak test:
# `-p dgzoo-cli --test soak` resolves features for that package alone and rebuilt every shared
# dependency (3.4 min of CI); this reuses the test build (each other test binary starts, matches
# nothing and exits).
cargo test --workspace --lib --bins --tests -- --ignored --exact soak_streams_cloud_inference_and_downloads --nocapture --test-threads=1
