#!/usr/bin/env bash
# Routed fencing against the reference fence_virtd in one run (Benchmarks/routed.py): the
# multi-host lab with the real parts, then the router under 1,000 simulated hosts. Prints tables.
# Run as root. Options: --runs N (50), --migrations N (100), --sim-hosts N (1000),
# --sim-domains N (100), --skip-simulation.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
# Built as for production (Deploy/build/release.sh).
source Deploy/build/release.sh
bin=$(release_build .build-static fence-routerd fence-hostd fencectl fence-sim-hosts)
exec python3 Benchmarks/routed.py --bin "$bin" "$@"
