#!/usr/bin/env bash
# Routed fencing against the reference fence_virtd in one run (Benchmarks/routed.py): the
# multi-host lab with the real parts, then the router under 1,000 simulated hosts. Prints tables.
# Run as root. Options: --runs N (50), --migrations N (100), --sim-hosts N (1000),
# --sim-domains N (100), --skip-simulation.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
# Built as for production: release, with Swift's libraries linked statically.
build=(swift build -c release --static-swift-stdlib --scratch-path .build-static)
echo "building fence-routerd, fence-hostd, fencectl and fence-sim-hosts (release)..." >&2
for product in fence-routerd fence-hostd fencectl fence-sim-hosts; do "${build[@]}" --product "$product" >/dev/null; done
exec python3 Benchmarks/routed.py --bin "$("${build[@]}" --show-bin-path)" "$@"
