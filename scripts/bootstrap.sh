#!/usr/bin/env bash
# Install what building and testing dgzoo needs on a fresh Debian machine (idempotent):
# system packages (cmake, pkg-config, a C/C++ compiler, nasm for libjpeg-turbo's SIMD code) and the
# inference runtimes. Extra tools named as arguments are installed too (`go`, `mcs`: the Go and
# C# bindings' tests; `chromium`: headless Chromium and its WebDriver, the hub page's browser test;
# `haproxy`: the load-balancer tests, crates/dgzoo-cli/tests/lb.rs).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
need=()
for p in cmake pkg-config g++ make nasm "$@"; do
  case "$p" in
    chromium) { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || need+=("$p") ;;
    *) command -v "$p" >/dev/null 2>&1 || need+=("$p") ;;
  esac
done
if [ ${#need[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  pkgs=()
  for p in "${need[@]}"; do
    case "$p" in
      go) pkgs+=(golang-go) ;;
      mcs) pkgs+=(mono-mcs mono-runtime libmono-system-web-extensions4.0-cil) ;;
      chromium) pkgs+=(chromium chromium-driver) ;;
      *) pkgs+=("$p") ;;
    esac
  done
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
bash "$here/scripts/install-runtimes.sh" "${DGZOO_RUNTIME_DIR:-$here/runtimes}"
