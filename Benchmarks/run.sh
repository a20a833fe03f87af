#!/usr/bin/env bash
# Side-by-side benchmark: the reference fence_virtd (Debian fence-virtd) and fence-routerd
# (release build) on the same simulated host, in the same network namespaces, one after the
# other in one run. Prints a table with ratios. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
# Built as for production: release, with Swift's libraries linked statically.
build=(swift build -c release --static-swift-stdlib --scratch-path .build-static --product fence-routerd)
echo "building fence-routerd (release, static Swift libraries)..." >&2
"${build[@]}" >/dev/null
exec python3 Benchmarks/bench.py --routerd "$("${build[@]}" --show-bin-path)/fence-routerd" "$@"
