#!/usr/bin/env bash
# Broker node failover (Deploy/lab/failover.py): the multi-host lab on a 3-node RabbitMQ cluster,
# two guests rebooting VMs without a pause, one node killed ten times (a different one each time):
# the time from each kill until fencing succeeds again (p50, max), false successes judged by
# libvirt, and the reboot round trip through the cluster against one broker. Prints a table.
# Run as root. Options: --kills N (10), --round-trips N (20), --json FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
Deploy/install-deps.sh
source Deploy/build/release.sh
bin=$(release_build .build-static fence-routerd fence-hostd fencectl)
exec python3 Deploy/lab/failover.py --bin "$bin" "$@"
