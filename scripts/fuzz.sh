#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_targets/) for SECONDS each (default 600) with libFuzzer,
# through cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP=1: cargo-fuzz needs -Z flags;
# fuzz/README.md says why this engine). Each run has a memory limit (-rss_limit_mb, and
# -malloc_limit_mb for any single allocation) and a per-input timeout, so a length or size
# that is trusted before allocation shows up as an out-of-memory crash.
#
# Corpora are kept in fuzz/corpus/TARGET (new inputs are added there; seeds in fuzz/seeds from
# scripts/fuzz-seeds.sh are read too). Crashes, timeouts and OOMs land in fuzz/artifacts/TARGET
# and make the script fail; reproduce one with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/crash-...)
# A summary (target, seconds, executions, corpus size, result) is printed and written to
# fuzz/last-run.tsv.
#
# DGZOO_FUZZ_PARALLEL=N runs N targets at a time (default 1; one core each: libFuzzer runs one
# process per target). DGZOO_FUZZ_NICE=N runs them under `nice -n N` (a long campaign beside
# other work).
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-600}"
shift || true
rss_mb="${DGZOO_FUZZ_RSS_MB:-2048}"
malloc_mb="${DGZOO_FUZZ_MALLOC_MB:-1024}"
export RUSTC_BOOTSTRAP=1
export DGZOO_RUNTIME_DIR="${DGZOO_RUNTIME_DIR:-$here/runtimes}"
export DGZOO_FUZZ_ZOO="${DGZOO_FUZZ_ZOO:-$here/../shared/zoo}"
# The inference runtimes' one-time allocations (commented there) are not leaks of ours.
export LSAN_OPTIONS="suppressions=$here/scripts/sanitize/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
[ -d "$here/fuzz/seeds" ] || bash "$here/scripts/fuzz-seeds.sh" "$here/fuzz/seeds"
tdir="${CARGO_TARGET_DIR:-$here/target}/fuzz"
cd "$here/fuzz"
# DGZOO_FUZZ_DEV=1 (scripts/test.sh's short CI runs) builds in cargo's dev profile: debug
# assertions and overflow checks on, and a much shorter build than the optimised default that
# long runs use (fewer executions per second, which a 10 s smoke run does not need).
build=()
[ "${DGZOO_FUZZ_DEV:-0}" = 1 ] && build=(--dev)
nice -n "${DGZOO_FUZZ_NICE:-0}" cargo fuzz build "${build[@]}" --target-dir "$tdir"
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
summary="$here/fuzz/last-run.tsv"
parallel="${DGZOO_FUZZ_PARALLEL:-1}"
nice_n="${DGZOO_FUZZ_NICE:-0}"
lines="$(mktemp -d)"
# One target: its run, then one summary line in $lines/TARGET (read in target order below).
run_one() {
  local t="$1" log rc=0 execs result
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  log="$(mktemp)"
  nice -n "$nice_n" cargo fuzz run "${build[@]}" --target-dir "$tdir" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$malloc_mb" -timeout=20 \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
  result=ok
  if [ "$rc" != 0 ]; then
    result="FAILED (rc $rc): $(grep -m1 -E 'ERROR: libFuzzer|panicked at|SUMMARY' "$log" | cut -c1-160)"
    tail -40 "$log" >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$secs" "${execs:-?}" "$(ls "corpus/$t" | wc -l)" "$result" >"$lines/$t"
  cat "$lines/$t"
  rm -f "$log"
}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  run_one "$t" &
done
wait
printf 'target\tseconds\texecutions\tcorpus\tresult\n' >"$summary"
failed=0
for t in "${targets[@]}"; do
  cat "$lines/$t" >>"$summary"
  grep -q $'\tok$' "$lines/$t" || failed=1
done
rm -rf "$lines"
exit "$failed"
