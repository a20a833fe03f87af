#!/usr/bin/env bash
# Profiles fence-routerd and fence-hostd under callgrind while they work, and writes the order
# their release link lays their code out in (Deploy/build/*.order; Benchmarks/function-order.py
# says why). Run as root after changes that rename many functions; then measure memory with
# Benchmarks/run.sh and routed.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
command -v valgrind >/dev/null || { echo "function-order.sh: valgrind is missing: apt-get install valgrind" >&2; exit 1; }
source Deploy/build/release.sh
bin=$(release_build .build-static fence-routerd fence-hostd fencectl)
python3 Benchmarks/function-order.py "$bin" Deploy/build
# SwiftPM does not know the link reads the lists: the next release builds relink only without
# the binaries made before them.
rm -f "$bin"/fence-{routerd,hostd} .build/install/*/release/fence-{routerd,hostd}
