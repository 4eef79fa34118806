#!/usr/bin/env bash
# Faults on purpose against the cloud model cache (crates/dgzoo-cli/tests/cache_faults.rs):
# `dgzoo cache fetch` killed with SIGKILL at random points of download, extraction and
# install ITERATIONS times (default 100; the normal test run does 15), each followed by a
# clean `dgzoo cache verify`, an offline load that predicts what the first copy predicted,
# and a fetch that succeeds; then the full-disk, read-only and broken-hub cases.
# DGZOO_CACHE_FAULT_SEED=N repeats a run's kill points (each run prints its seed).
# Usage: scripts/cache-faults.sh [ITERATIONS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export DGZOO_RUNTIME_DIR="${DGZOO_RUNTIME_DIR:-$here/runtimes}"
export DGZOO_CACHE_FAULT_ITERATIONS="${1:-100}"
cargo test -p dgzoo-cli --test cache_faults -- --nocapture --test-threads=2
