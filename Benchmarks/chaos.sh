#!/usr/bin/env bash
# Randomised faults against routed fencing, long (Deploy/lab/chaos.py): the real fence_xvm, the
# multi-host lab, agents, routers and the broker killed, frozen and cut off, libvirtd restarted
# with autostart, migrations; every answer judged by every host's libvirtd. Prints false
# successes, failures, timeouts and the time until service came back after each fault.
# Run as root. Options: --ops N (10000), --seed S (random, printed), and chaos.py's others.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
build=(swift build -c release --static-swift-stdlib --scratch-path .build-static)
echo "building fence-routerd, fence-hostd and fencectl (release)..." >&2
for product in fence-routerd fence-hostd fencectl; do "${build[@]}" --product "$product" >/dev/null; done
ops=(--ops 10000)
for argument in "$@"; do [[ $argument == --ops ]] && ops=(); done
exec python3 Deploy/lab/chaos.py --bin "$("${build[@]}" --show-bin-path)" "${ops[@]}" "$@"
