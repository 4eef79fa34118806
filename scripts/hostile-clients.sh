#!/usr/bin/env bash
# Slow and hostile clients (crates/dgzoo-cli/tests/hostile_clients.rs) for SECONDS (default
# 300; the normal test run: 12): 1,000 slowloris connections on each of the AI server's asio
# and HTTP ports and the hub's, reconnecting when dropped, plus clients that never read and
# clients that vanish mid-frame; normal clients' median latency must stay within 2x of the
# unloaded median, and every slowloris connection must be dropped by the timeouts.
# Usage: scripts/hostile-clients.sh [SECONDS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export DGZOO_RUNTIME_DIR="${DGZOO_RUNTIME_DIR:-$here/runtimes}"
export DGZOO_HOSTILE_SECONDS="${1:-300}"
cargo test -p dgzoo-cli --test hostile_clients -- --nocapture
