#!/usr/bin/env bash
# Side-by-side benchmark: the reference fence_virtd (Debian fence-virtd) and fence-routerd
# (release build) on the same simulated host, in the same network namespaces, one after the
# other in one run. Prints a table with ratios. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
# Built as for production (Deploy/build/release.sh).
source Deploy/build/release.sh
bin=$(release_build .build-static fence-routerd)
exec python3 Benchmarks/bench.py --routerd "$bin/fence-routerd" "$@"
