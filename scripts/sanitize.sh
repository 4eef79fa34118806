#!/usr/bin/env bash
# The C examples and C-ABI tests (examples-c/, ctest) under
#   1. AddressSanitizer + UndefinedBehaviorSanitizer: the C side built with
#      -fsanitize=address,undefined (gcc's libasan/libubsan); libdgzoo (Rust) is linked
#      uninstrumented, so ASan sees its heap through the intercepted malloc/free (leaks,
#      double frees, use of freed memory by the C side) but not its internal accesses;
#   2. Valgrind memcheck on the normal build (every access, C and Rust and the runtimes).
# Both must report zero errors and zero definite leaks. Suppressions
# (scripts/sanitize/*.supp) cover only the inference runtimes' own one-time allocations, each
# commented with why. Usage: scripts/sanitize.sh [asan|valgrind|valgrind-all]... (default asan
# and valgrind). `valgrind` (CI) runs every C test except four under memcheck, the inference-heavy
# `async_batch` and `stream_folder` on BlazeFace instead of YOLOv8n (DGZOO_EXAMPLE_MODEL: the
# same C calls, a model ~17x cheaper); `valgrind-all` runs every test with its own models
# (detect_faces and classify_static included: over 10 minutes here).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
tdir="${CARGO_TARGET_DIR:-$here/target}"
export DGZOO_RUNTIME_DIR="${DGZOO_RUNTIME_DIR:-$here/runtimes}"
all_runtimes="$DGZOO_RUNTIME_DIR"
modes=("$@"); [ ${#modes[@]} -gt 0 ] || modes=(asan valgrind)
# The consumer test builds a separate project with its own flags: not part of this run.
exclude='consumer_find_package'
# Under memcheck in CI: all but detect_faces (YOLOv8n ONNX + TFLite, the same C calls as
# classify), classify_static (classify's code, linked statically), custom_postprocess (a
# dozen float EfficientNet frames: 12 minutes under memcheck here) and overlay_in_place (a
# YOLOv8n frame; its drawing code is Rust, checked by the Rust tests); ASan runs all four.
valgrind_skip='^(consumer_find_package|detect_faces|classify_static|custom_postprocess|overlay_in_place)$'
small_model='blazeface_short_range--128x128_float_tflite_cpu_1'
for mode in "${modes[@]}"; do
  case "$mode" in
    asan)
      # The runtimes without OpenVINO: its TBB dlopens libtbbbind with RTLD_DEEPBIND, which the
      # sanitizer runtime refuses (google/sanitizers#611). The Valgrind run below loads it.
      rt="$tdir/asan-runtimes"
      rm -rf "$rt" && mkdir -p "$rt"
      IFS=: read -r -a rtdirs <<<"$DGZOO_RUNTIME_DIR"
      for d in "${rtdirs[@]}"; do
        for f in "$d"/*; do [ "$(basename "$f")" = openvino ] || ln -sf "$(readlink -f "$f")" "$rt/$(basename "$f")"; done
      done
      # The C tests take DGZOO_RUNTIME_DIR at configure time (examples-c/CMakeLists.txt).
      export DGZOO_RUNTIME_DIR="$rt"
      flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
      cmake -S . -B "$tdir/build-asan" -DCMAKE_BUILD_TYPE=Debug -DDGZOO_CARGO_TARGET_DIR="$tdir" \
        -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
      cmake --build "$tdir/build-asan" -j2
      ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1" \
      LSAN_OPTIONS="suppressions=$here/scripts/sanitize/lsan.supp:print_suppressions=1" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        ctest --test-dir "$tdir/build-asan" -j2 -E "$exclude" --output-on-failure
      ;;
    valgrind|valgrind-all)
      command -v valgrind >/dev/null || bash "$here/scripts/bootstrap.sh" valgrind
      export DGZOO_RUNTIME_DIR="$all_runtimes"
      launcher="valgrind;--error-exitcode=99;--leak-check=full;--show-leak-kinds=definite;--errors-for-leak-kinds=definite"
      launcher="$launcher;--track-origins=no;--num-callers=30;--suppressions=$here/scripts/sanitize/valgrind.supp;--gen-suppressions=all"
      cmake -S . -B "$tdir/build-valgrind" -DCMAKE_BUILD_TYPE=Debug -DDGZOO_CARGO_TARGET_DIR="$tdir" \
        -DDGZOO_TEST_LAUNCHER="$launcher" -DDGZOO_TEST_TIMEOUT=1800 >/dev/null
      cmake --build "$tdir/build-valgrind" -j2
      if [ "$mode" = valgrind ]; then
        DGZOO_EXAMPLE_MODEL="$small_model" ctest --test-dir "$tdir/build-valgrind" -j2 -E "$valgrind_skip" --output-on-failure
      else
        ctest --test-dir "$tdir/build-valgrind" -j2 -E "$exclude" --output-on-failure
      fi
      ;;
    *) echo "sanitize.sh: unknown mode '$mode' (asan, valgrind, valgrind-all)" >&2; exit 2 ;;
  esac
done
echo "sanitize.sh: ${modes[*]}: no errors, no definite leaks"
